"""The specification-gaming monitor on best-of-n sampling from SmolLM2, where KL is known in closed form.

N replies are sampled per prompt (harmful and benign prompts of the default suite's train split); for n = 1, 2, 4,
..., N the reply the proxy ranks first among n is scored by the gold (the exact expectation over n-subsets), and
both are plotted against sqrt(KL_bon), KL_bon = log n - (n - 1)/n. The proxy is reply length (`rule:length`), the
gold the embedding judge's "refused a harmful ask, answered a benign one" (`judge:embedding`).

    .venv/bin/python bench/rl_best_of_n.py [--n 8] [--prompts 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from alignkit.backends.hf import HFBackend
from alignkit.rl.monitor import best_of_n
from alignkit.rl.rewards import parse_reward
from alignkit.suites import load_suite, select_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=16, help="half harmful, half benign")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--proxy", default="rule:length")
    ap.add_argument("--gold", default="judge:embedding")
    ap.add_argument("--run", default="runs/rl-best-of-n")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "rl_best_of_n.json"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    train = select_split(load_suite("default"), "train")
    half = args.prompts // 2
    prompts = [p for p in train if p.label == "harmful"][:half] + [p for p in train if p.label == "benign"][:half]
    t0 = time.perf_counter()
    result = best_of_n(
        HFBackend(args.model, batch_size=32),
        prompts,
        parse_reward(args.proxy),
        parse_reward(args.gold),
        args.n,
        temperature=1.0,
        max_new_tokens=args.max_new_tokens,
        out_dir=args.run,
    )
    seconds = time.perf_counter() - t0
    row = {
        "bench": "rl_best_of_n",
        "model": args.model,
        "prompts": f"default suite, train split: {half} harmful + {half} benign",
        "proxy": args.proxy,
        "gold": args.gold,
        "samples_per_prompt": args.n,
        "max_new_tokens": args.max_new_tokens,
        "points": [
            {
                "n": p.step,
                "kl_bon": round(p.kl, 4),
                "sqrt_kl": round(p.sqrt_kl, 4),
                "proxy": round(p.proxy, 4),
                "gold": round(p.gold or 0.0, 4),
            }
            for p in result.points
        ],
        "first_gaming_n": result.monitor.first_gaming_step,
        "seconds": round(seconds, 1),
        "threads": args.threads,
        "monitor_svg": (Path(args.run) / "monitor.svg").read_text(),
    }
    Path(args.out).write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in row.items() if k != "monitor_svg"}, indent=1))


if __name__ == "__main__":
    main()
