"""Helpfulness of the base SmolLM2 on the helpfulness suite: checkable accuracy (overall and per kind),
reference log-likelihood, degenerate and evasive rates, wall time; on 2 CPU cores.

    .venv/bin/python bench/helpfulness_smollm2.py [--split test] [--max-new-tokens 96] [--limit N]
    .venv/bin/python bench/helpfulness_smollm2.py --calibrate   # choose the degeneration thresholds

`--calibrate` works on the train split only: it takes the model's own replies to train items and the
written references of the open train items as clean,
makes each one loop (its first sentence repeated to the same length) and garbled (its words shuffled),
and reports the thresholds on the repeated-3-gram share and on the mean NLL per token under the model
that best separate clean from looping and from garbled replies (the middle of the best range).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from alignkit.backends.hf import HFBackend
from alignkit.helpfulness import load_items, mean_logprobs, measure_helpfulness, repeated_ngram_fraction
from alignkit.types import GenerationParams

RESULTS = Path(__file__).parent / "results"


def best_threshold(clean: Sequence[float], bad: Sequence[float]) -> tuple[float, float]:
    """The cut t (bad when value > t) with the best balanced accuracy, in the middle of the range of
    cuts that reach it; with that accuracy."""
    values = sorted(set(clean) | set(bad))
    cuts = [(a + b) / 2 for a, b in itertools.pairwise(values)] or values

    def acc(t: float) -> float:
        return (sum(v <= t for v in clean) / len(clean) + sum(v > t for v in bad) / len(bad)) / 2

    scored = [(acc(t), t) for t in cuts]
    top = max(a for a, _ in scored)
    best = [t for a, t in scored if a == top]
    return (best[0] + best[-1]) / 2, top


def calibrate(backend: HFBackend, max_new_tokens: int, limit: int | None) -> dict[str, object]:
    items = load_items("train")
    if limit is not None:
        items = items[:: max(1, len(items) // limit)][:limit]
    t0 = time.perf_counter()
    outs = backend.generate([i.conversation() for i in items], GenerationParams(max_new_tokens=max_new_tokens))
    # clean: the model's own replies and the written references of the open train items, which are
    # fluent but not the model's own text (as an aligned model's replies will not be)
    pairs = [(i, o.text) for i, o in zip(items, outs, strict=True) if len(o.text.split()) >= 8]
    pairs += [(i, i.reference or "") for i in load_items("train", ("open",))]
    rng = random.Random(0)
    looped, garbled = [], []
    for _, text in pairs:
        words = text.split()
        first = re.split(r"(?<=[.!?])\s+", text.strip())[0].split()[:12]
        looped.append(" ".join((first * (len(words) // len(first) + 1))[: len(words)]))
        shuffled = list(words)
        rng.shuffle(shuffled)
        garbled.append(" ".join(shuffled))
    clean_rep = [repeated_ngram_fraction(t) for _, t in pairs]
    loop_rep = [repeated_ngram_fraction(t) for t in looped]
    its = [i.conversation() for i, _ in pairs]
    clean_nll = [-(x or 0.0) for x in mean_logprobs(backend, its, [t for _, t in pairs])]
    garbled_nll = [-(x or 0.0) for x in mean_logprobs(backend, its, garbled)]
    rep_t, rep_acc = best_threshold(clean_rep, loop_rep)
    nll_t, nll_acc = best_threshold(clean_nll, garbled_nll)

    def q(v: Sequence[float]) -> dict[str, float]:
        s = sorted(v)
        return {"min": s[0], "median": s[len(s) // 2], "p95": s[int(0.95 * (len(s) - 1))], "max": s[-1]}

    return {
        "bench": "helpfulness_calibration",
        "split": "train",
        "replies": len(pairs),
        "of_which_references": len(pairs) - len([o for o in outs if len(o.text.split()) >= 8]),
        "repeated_3gram_fraction": {
            "clean": q(clean_rep),
            "looped": q(loop_rep),
            "threshold": rep_t,
            "balanced_accuracy": rep_acc,
        },
        "nll": {"clean": q(clean_nll), "garbled": q(garbled_nll), "threshold": nll_t, "balanced_accuracy": nll_acc},
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--split", default="test", choices=["train", "test"])
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--limit", type=int, default=None, help="first N items of each kind")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--run-dir", default=None, help="keep replies here, so that a killed run resumes")
    args = ap.parse_args()

    t0 = time.perf_counter()
    backend = HFBackend(args.model)
    load_s = time.perf_counter() - t0
    if args.calibrate:
        row = calibrate(backend, args.max_new_tokens, args.limit)
        out = Path(args.out or RESULTS / "helpfulness_calibration.json")
    else:
        marks: dict[str, float] = {}
        stages: dict[str, float] = {}

        def progress(stage: str, done: int, total: int) -> None:
            now = time.perf_counter()
            marks.setdefault(stage, now)
            stages[stage] = now - marks[stage]
            print(f"{stage} {done}/{total} {now - t1:.0f}s", file=sys.stderr, flush=True)

        t1 = time.perf_counter()
        result = measure_helpfulness(
            backend,
            split=args.split,
            max_new_tokens=args.max_new_tokens,
            base_model=backend,
            limit=args.limit,
            out_dir=args.run_dir,
            chunk=16,
            progress=progress,
        )
        row = {
            "bench": "helpfulness_smollm2",
            "model": args.model,
            "threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],
            "resumed_from": args.run_dir,
            "load_seconds": load_s,
            "generate_seconds": stages.get("helpfulness:generate", 0.0),
            "measure_seconds": time.perf_counter() - t1,
            **result.as_dict(items=True),
        }
        out = Path(args.out or RESULTS / "helpfulness_smollm2.json")
    summary = {k: v for k, v in row.items() if k != "items"}
    print(json.dumps(summary, indent=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
