"""Red-team campaign throughput: target prompts per second, batched units vs one prompt at a time.

Both runs send the same template attacks (jailbreak templates, encodings, injection) on the same seeds
to SmolLM2 with greedy decoding and the same judge; the peer sends one prompt at a time, as scanners
that drive a local model one generate call per prompt do. Reported: prompts per second and the ratio.

    .venv/bin/python bench/redteam_rate.py [--per-category 1] [--judge embedding]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from alignkit.backends.hf import HFBackend
from alignkit.judges import make_judge
from alignkit.redteam import build_attacks
from alignkit.redteam.campaign import CampaignConfig, load_seeds, run_campaign, success_table


def timed(backend: HFBackend, judge_spec: str, chunk: int, per_category: int) -> tuple[float, int, dict[str, float]]:
    judge = make_judge(judge_spec)
    seeds = load_seeds(per_category=per_category)
    attacks = build_attacks("jailbreak_templates,encodings,prompt_injection")
    with tempfile.TemporaryDirectory() as run:
        start = time.perf_counter()
        result = run_campaign(backend, judge, seeds, attacks, CampaignConfig(chunk=chunk), run)
        seconds = time.perf_counter() - start
    rates = {a: cells["all"].rate for a, cells in success_table(result.units).items()}
    return seconds, int(result.usage["prompts"]), rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--judge", default="embedding")
    ap.add_argument("--per-category", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "redteam_rate.json"))
    args = ap.parse_args()

    backend = HFBackend(args.model, batch_size=32)
    peer_s, peer_n, peer_rates = timed(backend, args.judge, 1, args.per_category)
    ours_s, ours_n, ours_rates = timed(backend, args.judge, 32, args.per_category)
    row = {
        "bench": "redteam_rate",
        "model": args.model,
        "judge": args.judge,
        "threads": torch.get_num_threads(),
        "prompts": ours_n,
        "one_at_a_time": {"seconds": peer_s, "prompts_per_s": peer_n / peer_s},
        "batched": {"seconds": ours_s, "prompts_per_s": ours_n / ours_s},
        "speedup": (ours_n / ours_s) / (peer_n / peer_s),
        "same_success_rates": peer_rates == ours_rates,
    }
    print(json.dumps(row, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
