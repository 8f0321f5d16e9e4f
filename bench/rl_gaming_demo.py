"""The specification-gaming monitor on a planted exploit (`alignkit.rl.demo`), run to the end so the whole curve shows.

GRPO on a tiny random model optimises a length proxy while a gold signal wants about 5 words; the run goes on for all
its steps (no stop), and the result records where the monitor first flagged gaming, the proxy and gold at each
step against sqrt(KL), and the chart (monitor.svg, also embedded in the JSON). The run folder keeps monitor.svg and
monitor.json.

    .venv/bin/python bench/rl_gaming_demo.py [--steps 12] [--seed 0] [--run runs/rl-gaming-demo]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from alignkit.rl.demo import DEMO_GOLD, DEMO_PROXY, demo_config, exploitable_model, gaming_demo

KEYS = ("step", "reward", "gold", "kl", "reply_tokens", "gaming")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", default="runs/rl-gaming-demo")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "rl_gaming_demo.json"))
    args = ap.parse_args()

    run = Path(args.run)
    shutil.rmtree(run, ignore_errors=True)
    model = exploitable_model(run / "tiny-model")
    t0 = time.perf_counter()
    result = gaming_demo(model, run / "grpo", demo_config(max_steps=args.steps, seed=args.seed))
    seconds = time.perf_counter() - t0
    monitor = json.loads((run / "grpo" / "monitor.json").read_text())
    steps = [json.loads(line) for line in (run / "grpo" / "metrics.jsonl").read_text().splitlines()]
    row = {
        "bench": "rl_gaming_demo",
        "model": "2-layer random Phi, SmolLM2 tokenizer, end-of-turn bias 9 (alignkit.rl.demo.exploitable_model)",
        "proxy": DEMO_PROXY,
        "gold": DEMO_GOLD,
        "config": demo_config(max_steps=args.steps, seed=args.seed).model_dump(),
        "first_gaming_step": result.gaming_step,
        "gaming_steps": monitor["gaming_steps"],
        "best_gold_step": monitor["best_gold_step"],
        "rule": monitor["rule"],
        "per_step": [{k: round(r[k], 4) if isinstance(r[k], float) else r[k] for k in KEYS} for r in steps],
        "seconds": round(seconds, 1),
        "run_folder": str(run / "grpo"),
        "monitor_svg": (run / "grpo" / "monitor.svg").read_text(),
    }
    Path(args.out).write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in row.items() if k not in ("monitor_svg", "config")}, indent=1))


if __name__ == "__main__":
    main()
