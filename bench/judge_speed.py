"""Milliseconds per reply of the pair judge at batch 64 on this machine's CPU (2 threads).

Replies and prompts are drawn from the style corpus's test split, so their lengths are those a judge meets;
the load average is recorded beside the figure, since other work on the machine slows it.

    .venv/bin/python bench/judge_speed.py            # writes bench/results/judge_speed.json
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from alignkit.judges.labels import corpus_labelled, written_labelled
from alignkit.judges.pair import PairJudge, train_judge


def main(n: int = 512, batch: int = 64, repeats: int = 3) -> None:
    torch.set_num_threads(2)
    judge = train_judge()
    pool = [e for e in corpus_labelled() + written_labelled() if e.split != "train"]
    examples = (pool * (n // max(1, len(pool)) + 1))[:n]
    prompts, replies = [e.prompt for e in examples], [e.response for e in examples]
    judge.probabilities(prompts[:batch], replies[:batch], batch_size=batch)
    timings = []
    load_before = os.getloadavg()[0]
    for _ in range(repeats):
        start = time.perf_counter()
        judge.probabilities(prompts, replies, batch_size=batch)
        timings.append((time.perf_counter() - start) / n * 1000)
    body = {
        "command": ".venv/bin/python bench/judge_speed.py",
        "judge": PairJudge.name,
        "config": judge.config.__dict__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "replies": n,
        "ms_per_reply": [round(t, 2) for t in timings],
        "best_ms_per_reply": round(min(timings), 2),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(body, indent=1))
    out = Path(__file__).parent / "results" / "judge_speed.json"
    out.write_text(json.dumps(body, indent=1) + "\n")


if __name__ == "__main__":
    main()
