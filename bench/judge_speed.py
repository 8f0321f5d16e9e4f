"""Milliseconds per reply of the pair judge at batch 64 on this machine's CPU, with 1 and 2 threads.

Replies and prompts are drawn from the style corpus's test split, so their lengths are those a judge meets;
the load average is recorded beside the figures, since other work on the machine slows them, and CPU time
per reply beside wall time.

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
    judge = train_judge()
    pool = [e for e in corpus_labelled() + written_labelled() if e.split != "train"]
    examples = (pool * (n // max(1, len(pool)) + 1))[:n]
    prompts, replies = [e.prompt for e in examples], [e.response for e in examples]
    load_before = os.getloadavg()[0]
    runs = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        judge.probabilities(prompts[:batch], replies[:batch], batch_size=batch)
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            judge.probabilities(prompts, replies, batch_size=batch)
            wall.append((time.perf_counter() - start) / n * 1000)
            cpu.append((time.process_time() - start_cpu) / n * 1000)
        runs[threads] = {"ms_per_reply": [round(t, 2) for t in wall], "cpu_ms_per_reply": [round(t, 2) for t in cpu]}
    body = {
        "command": ".venv/bin/python bench/judge_speed.py",
        "judge": PairJudge.name,
        "config": judge.config.__dict__,
        "batch": batch,
        "replies": n,
        "threads_1": runs[1],
        "threads_2": runs[2],
        "best_ms_per_reply": round(min(min(r["ms_per_reply"]) for r in runs.values()), 2),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(body, indent=1))
    out = Path(__file__).parent / "results" / "judge_speed.json"
    out.write_text(json.dumps(body, indent=1) + "\n")


if __name__ == "__main__":
    main()
