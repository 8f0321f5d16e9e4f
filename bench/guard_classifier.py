"""The prompt classifier rail: blocked rates on the suite's test split, on validation, and its cost.

Trains the classifier once (or loads it from $ALIGNKIT_HOME/guard), then reports, each with a Wilson 95%
interval:

- test split (never trained on, nor used for the threshold): harmful prompts blocked, benign look-alikes
  blocked, the suite's ordinary prompts blocked, and the test half of the packaged everyday requests;
- validation (carved from the train prompts by a hash of the text, where the threshold was chosen): the
  classifier alone, the topic rail alone and the two joined (blocked when either blocks), on the validation
  prompts that are not among the topic rail's own exemplars (broad train prompts and everyday anchors).
  This is what decides whether the default config keeps the topic rail beside the classifier;
- milliseconds per prompt, one prompt at a time (no cache), and the train (or load) time.

    OMP_NUM_THREADS=2 .venv/bin/python bench/guard_classifier.py
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from alignkit.metrics import wilson


def rate(blocked: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(blocked, n)
    return {
        "blocked": blocked,
        "n": n,
        "rate": round(blocked / n, 4) if n else 0.0,
        "ci95": [round(lo, 4), round(hi, 4)],
    }


def show(name: str, r: dict[str, Any]) -> None:
    print(f"  {name:<34} {r['blocked']:>4}/{r['n']:<4} = {r['rate']:.3f}  [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/guard_classifier.json")
    parser.add_argument("--no-topic", action="store_true", help="skip the topic rail comparison on validation")
    args = parser.parse_args()

    from alignkit.guard.config import default_config
    from alignkit.guard.rails.classifier import labelled_prompts, trained_classifier
    from alignkit.guard.rails.topic import ordinary_requests
    from alignkit.suites import load_suite, select_split

    start = time.perf_counter()
    model = trained_classifier(log=print)
    ready_s = time.perf_counter() - start
    th = model.threshold

    def blocked(texts: list[str]) -> dict[str, Any]:
        return rate(sum(h > th for h in model.harm(texts)), len(texts))

    test = [p for p in select_split(load_suite("default"), "test") if p.text]
    harmful = [str(p.text) for p in test if p.label == "harmful"]
    lookalike = [str(p.text) for p in test if p.label == "benign" and p.category != "ordinary"]
    ordinary = [str(p.text) for p in test if p.label == "benign" and p.category == "ordinary"]
    everyday = ordinary_requests("test")
    rates = {
        "harmful_test": blocked(harmful),
        "lookalike_test": blocked(lookalike),
        "ordinary_test": blocked(ordinary),
        "benign_test": blocked(lookalike + ordinary),
        "everyday_test": blocked(everyday),
    }
    per_category = {
        c: blocked([str(p.text) for p in test if p.label == "harmful" and p.category == c])
        for c in sorted({str(p.category) for p in test if p.label == "harmful"})
    }
    r = model.report
    validation = {
        "harmful": rate(r.val_harmful_blocked, r.val_harmful),
        "benign": rate(r.val_benign_blocked, r.val_benign),
    }

    # One prompt at a time, nothing cached: what a request waits for.
    model._cache.clear()
    sample = (harmful + lookalike + ordinary)[:120]
    t0 = time.perf_counter()
    for text in sample:
        model.harm([text])
    ms_per_prompt = (time.perf_counter() - t0) * 1000 / len(sample)

    comparison: dict[str, Any] = {}
    if not args.no_topic:
        from alignkit.guard.engine import build_rails
        from alignkit.guard.rails.topic import TopicRail

        cfg = default_config()
        cfg.classifier.enabled = False
        topic = next(rail for rail in build_rails(cfg, "input") if isinstance(rail, TopicRail))
        val = [p for p in labelled_prompts() if p.split == "val" and p.source in ("broad", "anchors")]
        texts = [p.text for p in val]
        by_classifier = [h > th for h in model.harm(texts)]
        by_topic = (topic.over(texts) > 0).tolist()
        for name, hits in (
            ("classifier", by_classifier),
            ("topic", by_topic),
            ("joined", [a or b for a, b in zip(by_classifier, by_topic, strict=True)]),
        ):
            harmful_hits = sum(h for h, p in zip(hits, val, strict=True) if p.harmful)
            benign_hits = sum(h for h, p in zip(hits, val, strict=True) if not p.harmful)
            comparison[name] = {
                "harmful": rate(harmful_hits, sum(p.harmful for p in val)),
                "benign": rate(benign_hits, sum(not p.harmful for p in val)),
            }

    result = {
        "threshold": th,
        "settings": asdict(model.settings),
        "train_seconds": r.train_seconds,
        "ready_seconds": round(ready_s, 1),
        "train_prompts": r.train_prompts,
        "test": rates,
        "harmful_test_by_category": per_category,
        "validation": validation,
        "validation_topic_comparison": comparison,
        "ms_per_prompt": round(ms_per_prompt, 2),
        "device": str(model.device),
    }
    print(
        f"threshold {th:.4f}; trained in {r.train_seconds:.0f}s; ready in {ready_s:.1f}s; {ms_per_prompt:.1f} ms/prompt"
    )
    print("test split:")
    for name, v in rates.items():
        show(name, v)
    print("validation (threshold chosen here):")
    for name, v in validation.items():
        show(name, v)
    for rail, v in comparison.items():
        print(f"validation, broad + anchors, {rail}:")
        show("harmful", v["harmful"])
        show("benign", v["benign"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
