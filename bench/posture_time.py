"""Wall time of `alignkit posture` on the default suite, by stage, on this machine.

The issue's budget: the default suite (test split) on SmolLM2 on 2 CPU cores in under 5 minutes.
Each run starts from an empty run folder, so nothing is resumed.

    .venv/bin/python bench/posture_time.py [--model smollm2-135m-instruct] [--judge embedding]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from alignkit.backends.hf import HFBackend
from alignkit.jobs.posture import measure
from alignkit.judges import make_judge
from alignkit.posture import PostureConfig
from alignkit.profiles import load_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--judge", default="embedding")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "posture_time.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    backend = HFBackend(args.model)
    judge = make_judge(args.judge)
    load_s = time.perf_counter() - t0
    stages: dict[str, float] = {}
    marks: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        marks.setdefault(stage, now)
        stages[stage] = now - marks[stage]

    with tempfile.TemporaryDirectory() as run:
        t1 = time.perf_counter()
        result = measure(backend, judge, load_profile("general"), PostureConfig(), run, progress)
        total_s = time.perf_counter() - t1
    row = {
        "bench": "posture_time",
        "model": args.model,
        "judge": args.judge,
        "prompts": result.n_prompts,
        "threads": torch.get_num_threads(),
        "load_seconds": load_s,
        "generate_seconds": stages.get("generate", 0.0),
        "judge_seconds": stages.get("judge", 0.0),
        "posture_seconds": total_s,
        "budget_seconds": 300,
    }
    print(json.dumps(row, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
