"""Posture generation time by batch size: the cpu-demo's old setting beside its new one, in one run.

The 165 prompts of the suite's test split, greedy, at the cpu-demo's reply length (96 new tokens), on
SmolLM2-135M-Instruct. The peer is what the cpu-demo did before: fixed batches of 32 cut from the prompts
sorted by length (the last one 5 rows, decoding as many steps as a full one). Then HFBackend as it is,
which cuts the fewest batches with sizes at most one apart, at each `--batch-sizes`. Reported: seconds,
the speed-up over the peer, and how many replies are identical to the peer's.

    .venv/bin/python bench/generate_batch_size.py [--batch-sizes 32,64] [--new-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from alignkit.backends.hf import HFBackend
from alignkit.suites import load_suite, select_split
from alignkit.types import Conversation, GenerationParams, user


def fixed_cut(backend: HFBackend) -> None:
    """The cut HFBackend made before: `batch_size` rows a batch, the remainder last."""

    def batches(lengths: Sequence[int]) -> list[list[int]]:
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        return [order[i : i + backend.batch_size] for i in range(0, len(order), backend.batch_size)]

    backend._batches = batches  # type: ignore[method-assign]


def timed(backend: HFBackend, conversations: list[Conversation], params: GenerationParams) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = backend.generate(conversations, params)
    return [c.text for c in out], time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batch-sizes", default="32,64")
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate_batch_size.json"))
    args = ap.parse_args()

    prompts = select_split(load_suite("default"), "test")
    conversations = [p.messages or [user(str(p.text))] for p in prompts]
    params = GenerationParams(max_new_tokens=args.new_tokens)
    peer = HFBackend(args.model, batch_size=32, generation="plain")
    peer.generate(conversations[:2], GenerationParams(max_new_tokens=4))  # warm-up
    fixed_cut(peer)
    peer_texts, peer_s = timed(peer, conversations, params)
    print(f"peer (fixed batches of 32): {peer_s:6.1f}s")
    rows = []
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        ours = HFBackend(peer.model, peer.tokenizer, batch_size=bs, generation="plain")
        texts, secs = timed(ours, conversations, params)
        same = sum(a == b for a, b in zip(texts, peer_texts, strict=True))
        rows.append({"batch_size": bs, "batches": [len(b) for b in ours._batches([1] * len(conversations))],
                     "seconds": round(secs, 2), "speedup": round(peer_s / secs, 3), "identical": same})  # fmt: skip
        print(f"alignkit bs={bs:<3}: {secs:6.1f}s -> {peer_s / secs:4.2f}x, identical replies {same}/{len(texts)}")
    result = {
        "bench": "generate_batch_size",
        "model": args.model,
        "prompts": len(conversations),
        "max_new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peer": {"batch_size": 32, "cut": "fixed", "seconds": round(peer_s, 2)},
        "alignkit": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
