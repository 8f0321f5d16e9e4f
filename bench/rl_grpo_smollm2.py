"""GRPO with a judge reward on SmolLM2 (LoRA), then posture before and after, on this machine's CPUs.

The policy is rewarded +1 when the embedding judge says it refused a harmful ask or answered a benign one, -1
otherwise (`judge:embedding`), on the default suite's train split (harmful and benign prompts); the gold signal the
monitor tracks is the refusal-pattern judge (`judge:patterns`), a different judge of the same intent. Harmful
compliance and over-refusal are then measured on the test split, greedy, 160 new tokens (as `alignkit posture
--model X` does), for the base model and for the merged GRPO model.

Everything lands in a run folder (runs/rl-grpo-smollm2 by default) and resumes there: rerun to continue.

    .venv/bin/python bench/rl_grpo_smollm2.py [--steps 5] [--prompts-per-step 16] [--group-size 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from alignkit.backends.hf import HFBackend
from alignkit.jobs.posture import measure
from alignkit.judges import make_judge
from alignkit.posture import PostureConfig, PostureResult
from alignkit.profiles import load_profile
from alignkit.rl import RLConfig, rl_train

CONFIG_KEYS = ("max_steps", "prompts_per_step", "group_size", "max_new_tokens", "learning_rate", "beta", "clip_eps",
               "temperature", "lora_r", "lora_alpha")  # fmt: skip


def rates(result: PostureResult) -> dict[str, Any]:
    overall = result.headline()
    h, o = overall.harmful_compliance_rate, overall.over_refusal_rate
    return {
        "harmful_compliance_rate": round(h.rate, 4),
        "harmful_compliance_ci95": [round(h.low, 4), round(h.high, 4)],
        "harmful_n": h.n,
        "over_refusal_rate": round(o.rate, 4),
        "over_refusal_ci95": [round(o.low, 4), round(o.high, 4)],
        "benign_n": o.n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--prompts-per-step", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on these shared cores)")
    ap.add_argument("--run", default="runs/rl-grpo-smollm2")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "rl_grpo_smollm2.json"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    judge = make_judge("embedding")
    profile = load_profile("general")
    posture = PostureConfig()
    timings: dict[str, float] = {}
    load_before = os.getloadavg()[0]

    t0 = time.perf_counter()
    before = measure(HFBackend(args.model), judge, profile, posture, run / "posture-before")
    timings["posture_before_seconds"] = time.perf_counter() - t0

    cfg = RLConfig(
        method="grpo",
        max_steps=args.steps,
        prompts_per_step=args.prompts_per_step,
        group_size=args.group_size,
        max_new_tokens=args.max_new_tokens,
        learning_rate=args.learning_rate,
        beta=args.beta,
        micro_batch_size=8,
        save_every=1,
        threads=args.threads,
    )
    t1 = time.perf_counter()
    result = rl_train(args.model, "default", run / "grpo", cfg, "judge:embedding", "judge:patterns")
    timings["grpo_seconds"] = time.perf_counter() - t1
    assert result.model_dir is not None

    t2 = time.perf_counter()
    after_backend = HFBackend(str(result.model_dir), name=f"{args.model}+grpo")
    after = measure(after_backend, judge, profile, posture, run / "posture-after")
    timings["posture_after_seconds"] = time.perf_counter() - t2

    steps = [json.loads(line) for line in (run / "grpo" / "metrics.jsonl").read_text().splitlines()]
    keep = ("step", "reward", "gold", "kl", "entropy", "reply_tokens", "ended", "seconds", "sample_seconds")
    row = {
        "bench": "rl_grpo_smollm2",
        "model": args.model,
        "method": "grpo (LoRA r=16)",
        "reward": "judge:embedding (+1 refused harmful / answered benign, -1 otherwise)",
        "gold": "judge:patterns",
        "train_prompts": "default suite, train split (harmful + benign)",
        "config": {k: v for k, v in cfg.model_dump().items() if k in CONFIG_KEYS},
        "threads": args.threads,
        "load_average_at_start": round(load_before, 2),
        "posture": "default suite, test split, greedy, 160 new tokens, judge embedding",
        "before": rates(before),
        "after": rates(after),
        "per_step": [{k: (round(r[k], 4) if isinstance(r.get(k), float) else r.get(k)) for k in keep} for r in steps],
        "gaming_step": result.gaming_step,
        **{k: round(v, 1) for k, v in timings.items()},
        "total_seconds": round(sum(timings.values()), 1),
    }
    out = Path(args.out)
    out.write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
