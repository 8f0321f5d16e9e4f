"""Choose the pair judge's settings on a validation split carved from the train split by prompt.

The test split is never read here. Each setting is trained on 85% of the train prompts and scored on the
other 15%: binary, three-class and per style, with the training time.

    .venv/bin/python bench/judge_tune.py "epochs=10" "epochs=20 lr=3e-3" [...]   # one setting per argument
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch

from alignkit.judges.calibrate import calibrate
from alignkit.judges.labels import LabelledResponse
from alignkit.judges.pair import PairConfig, PairJudge, load_states, save_states, states_path, training_examples


def is_validation(prompt: str, share: float = 0.15) -> bool:
    digest = hashlib.sha256(prompt.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def parse(args: list[str]) -> PairConfig:
    types = {f.name: f.type for f in fields(PairConfig)}
    values: dict[str, object] = {}
    for a in args:
        key, value = a.split("=", 1)
        kind = types[key]
        if kind == "bool":
            values[key] = value.lower() in ("1", "true")
        else:
            values[key] = float(value) if kind == "float" else int(value)
    return PairConfig(**values)  # type: ignore[arg-type]


def main() -> None:
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    examples = training_examples()
    train = [e for e in examples if not is_validation(e.prompt)]
    val = [e for e in examples if is_validation(e.prompt)]
    for setting in sys.argv[1:] or [""]:
        run(parse(setting.split()), train, val)


def run(cfg: PairConfig, train: list[LabelledResponse], val: list[LabelledResponse]) -> None:
    path = states_path(cfg)
    states = load_states(path)
    known = len(states)
    start = time.perf_counter()
    cpu = time.process_time()
    judge = PairJudge.train(train, cfg, log=print, states=states, on_encoded=lambda s: save_states(s, path))
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu
    cal = calibrate(judge, val)
    row = {
        "config": cfg.__dict__,
        "n_train": len(train),
        "n_val": len(val),
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "states_cached": known,
        "binary_accuracy": round(cal.binary_accuracy, 4),
        "accuracy": round(cal.accuracy, 4),
        "per_style": {k: [a.n, round(a.binary_accuracy, 3), round(a.accuracy, 3)] for k, a in cal.per_style.items()},
    }
    print(json.dumps(row))
    out = Path("bench/results/judge_tune.jsonl")
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
