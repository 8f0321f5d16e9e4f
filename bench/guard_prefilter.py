"""Could a cheap prefilter let most requests skip the MiniLM prompt classifier? Measured, not built.

The classifier rail costs 11-13 ms of CPU per request on one core, which is why the guard misses its
latency targets on 2 cores (bench/guard_latency.py). A cascade would score every request first with a
linear model over hashed character 3-5-grams and word 1-2-grams (microseconds), and call the encoder only
when that score is above a skip threshold. The linear model trains on the classifier's own train split
(class-balanced logistic loss); the skip threshold is the lowest score of any harmful validation prompt,
minus a margin, so that no harmful validation prompt would have skipped.

Reported for each margin, on the suite's test split (never trained on): harmful prompts the cascade
blocks against the encoder alone, the share of benign test prompts and of held-out everyday requests that
skip the encoder, how many of the latency bench's eight messages skip, and the harmful test prompts that
skip.

    .venv/bin/python bench/guard_prefilter.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

WIDTH = 1 << 18
"""Hashed feature slots."""


def features(text: str) -> list[int]:
    t = " ".join(text.lower().split())
    padded = f" {t} "
    out = [zlib.crc32(padded[i : i + n].encode()) % WIDTH for n in (3, 4, 5) for i in range(len(padded) - n + 1)]
    words = re.findall(r"[a-z0-9']+", t)
    out += [zlib.crc32(b"w:" + w.encode()) % WIDTH for w in words]
    out += [zlib.crc32(f"b:{a} {b}".encode()) % WIDTH for a, b in itertools.pairwise(words)]
    return out or [0]


def train_linear(texts: list[str], harmful: list[bool], epochs: int = 20, seed: int = 0) -> tuple[np.ndarray, float]:
    """Logistic regression on the mean of the hashed features (an EmbeddingBag of width 1), each class
    weighted by the inverse of its count. Returns the weights and the bias."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    bag = torch.nn.EmbeddingBag(WIDTH, 1, mode="mean")
    torch.nn.init.zeros_(bag.weight)
    bias = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([bag.weight, bias], lr=0.05)
    rows = [torch.tensor(features(t)) for t in texts]
    y = torch.tensor([float(h) for h in harmful])
    n_harmful = float(y.sum())
    w = torch.where(y > 0, 0.5 / n_harmful, 0.5 / (len(y) - n_harmful))
    for _ in range(epochs):
        order = list(range(len(rows)))
        rng.shuffle(order)
        for lo in range(0, len(order), 64):
            idx = order[lo : lo + 64]
            flat = torch.cat([rows[i] for i in idx])
            offsets = torch.tensor([0, *[len(rows[i]) for i in idx][:-1]]).cumsum(0)
            logits = bag(flat, offsets).squeeze(-1) + bias
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx], reduction="none")
            loss = (w[idx] * bce).sum() / w[idx].sum()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    return bag.weight.detach().numpy()[:, 0].copy(), float(bias.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--margins", default="0,0.5,1.0")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "guard_prefilter.json"))
    args = ap.parse_args()

    from alignkit.guard.rails.classifier import labelled_prompts, trained_classifier
    from alignkit.guard.rails.topic import ordinary_requests
    from alignkit.suites import load_suite, select_split

    sys.path.insert(0, str(Path(__file__).parent))
    from guard_latency import MESSAGES

    prompts = labelled_prompts()
    train = [p for p in prompts if p.split == "train"]
    val = [p for p in prompts if p.split == "val"]
    start = time.perf_counter()
    weights, bias = train_linear([p.text for p in train], [p.harmful for p in train])
    train_s = time.perf_counter() - start

    def score(text: str) -> float:
        return float(weights[features(text)].mean() + bias)

    suite = select_split(load_suite("default"), "test")
    harmful = [str(p.text) for p in suite if p.label == "harmful"]
    benign = [str(p.text) for p in suite if p.label == "benign"]
    everyday = ordinary_requests("test")
    tagged = [f"{m} qxv" for m in MESSAGES]  # the latency bench tags each text to make it new
    start = time.perf_counter()
    for _ in range(20):
        for m in tagged:
            score(m)
    us_per_text = (time.perf_counter() - start) / (20 * len(tagged)) * 1e6

    model = trained_classifier(log=print)
    encoder_blocks = [h > model.threshold for h in model.harm(harmful)]
    lowest = min(score(p.text) for p in val if p.harmful)
    rows: list[dict[str, Any]] = []
    for margin in [float(x) for x in args.margins.split(",")]:
        skip_at = lowest - margin
        fast = [score(t) for t in harmful]
        blocked = sum(b and s >= skip_at for b, s in zip(encoder_blocks, fast, strict=True))
        row = {
            "margin": margin,
            "skip_below": round(skip_at, 4),
            "harmful_blocked": {"cascade": blocked, "encoder": sum(encoder_blocks), "n": len(harmful)},
            "benign_skip_share": round(float(np.mean([score(t) < skip_at for t in benign])), 4),
            "everyday_skip_share": round(float(np.mean([score(t) < skip_at for t in everyday])), 4),
            "latency_messages_skipping": sum(score(t) < skip_at for t in tagged),
            "harmful_skipping": [t for t, s in zip(harmful, fast, strict=True) if s < skip_at],
        }
        rows.append(row)
        print(f"margin {margin}: harmful blocked {blocked}/{len(harmful)} (encoder {sum(encoder_blocks)}), "
              f"benign skip {row['benign_skip_share']:.1%}, everyday skip {row['everyday_skip_share']:.1%}, "
              f"latency messages skipping {row['latency_messages_skipping']}/{len(tagged)}; "
              f"harmful skipping: {row['harmful_skipping']}")  # fmt: skip
    result = {"bench": "guard_prefilter", "train_prompts": len(train), "train_seconds": round(train_s, 1),
              "microseconds_per_text": round(us_per_text, 1), "rows": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{us_per_text:.0f} us per text; wrote {args.out}")


if __name__ == "__main__":
    main()
