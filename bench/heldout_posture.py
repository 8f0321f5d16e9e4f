"""The sweep's recipes on prompts no recipe was chosen on: the judge corpus's test prompts.

A recipe picked on the default suite's test split may fit that split. This measures the same models on a
second held-out set: the 151 unique prompts of the judge style corpus's test split (80 harmful over 8
hazard categories, 71 benign: look-alikes of 10 kinds and ordinary requests), written for alignkit
separately from the suite, never curated or trained on (checked here: no prompt text is shared with the
default suite, the broad training prompts or the anchors). Judge: the default (`pair`). Replies: 160 new
tokens unless --max-new-tokens says otherwise (the cpu-demo run uses 96).

    .venv/bin/python bench/heldout_posture.py base=smollm2-135m-instruct \\
        sft-dpo=runs/sweep-cpu-demo-pair/sft-dpo/model \\
        [--judge embedding] [--out runs/heldout-posture]

Writes bench/results/heldout_posture.json: the headline rates (`alignkit.pipeline.headline_rates`) per
model with 95% Wilson intervals, and each model's replies under --out (resumable: a rerun redoes nothing).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "src" / "alignkit" / "resources"


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def heldout_prompts() -> list[dict[str, Any]]:
    """One row per prompt of the corpus test split, as a suite file row (split `test`)."""
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted((RESOURCES / "judge" / "corpus").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if r["split"] != "test" or r["prompt_id"] in rows:
                continue
            rows[r["prompt_id"]] = {"id": r["prompt_id"], "prompt": r["prompt"], "label": r["prompt_label"],
                                    "category": r["category"], "kind": r["kind"], "split": "test"}  # fmt: skip
    return list(rows.values())


def trained_texts() -> set[str]:
    """Every prompt text alignkit curates from: the default suite (both splits), the broad training
    prompts and the everyday anchors."""
    files = [RESOURCES / "suites" / "default.jsonl", RESOURCES / "anchors" / "everyday.jsonl"]
    files += sorted((RESOURCES / "prompts" / "train").glob("*.jsonl"))
    out = set()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.add(_norm(json.loads(line)["prompt"]))
    return out


def main() -> None:
    from alignkit.data import read_records
    from alignkit.jobs.backend import BackendSpec
    from alignkit.judges import make_judge
    from alignkit.pipeline import headline_rates
    from alignkit.posture import PostureConfig, replies_path, run_posture
    from alignkit.profiles import load_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="name=model (a registry name or a model folder)")
    ap.add_argument("--judge", default="pair")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "heldout-posture")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "heldout_posture.json")
    args = ap.parse_args()

    prompts = heldout_prompts()
    trained = trained_texts()
    shared = [p["id"] for p in prompts if _norm(p["prompt"]) in trained]
    if shared:
        raise SystemExit(f"held-out prompts also in training sources: {shared[:5]}")
    args.out.mkdir(parents=True, exist_ok=True)
    suite = args.out / "heldout_suite.jsonl"
    suite.write_text("".join(json.dumps(p) + "\n" for p in prompts), encoding="utf-8")
    judge = make_judge(args.judge)
    profile = load_profile("general")
    cfg = PostureConfig(suite=str(suite), split="test", max_new_tokens=args.max_new_tokens)
    results: dict[str, Any] = {}
    for item in args.models:
        name, _, model = item.partition("=")
        started = time.monotonic()
        backend = BackendSpec().build(model, name)
        folder = args.out / name
        run_posture(backend, judge, profile, cfg, folder, None)
        replies = [rec for _, rec in read_records(replies_path(folder, backend.name))]
        rates = headline_rates(replies)
        results[name] = {"model": model, "seconds": round(time.monotonic() - started, 1), **rates}
        short = {k: round(v["rate"], 3) for k, v in rates.items() if isinstance(v, dict)}
        print(name, json.dumps(short), flush=True)
    body = {"prompts": {"harmful": sum(p["label"] == "harmful" for p in prompts),
                        "lookalike": sum(p["label"] == "benign" and p["category"] != "ordinary" for p in prompts),
                        "ordinary": sum(p["category"] == "ordinary" for p in prompts)},
            "judge": args.judge, "max_new_tokens": args.max_new_tokens, "models": results}  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
