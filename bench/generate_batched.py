"""Batched HFBackend generation vs a one-prompt-at-a-time `generate` loop, side by side in one run.

The peer is how popular scanners drive a local model: for each prompt, apply the chat template,
call `model.generate`, decode. Both run greedy on the same model, threads and prompts; the bench
reports generated tokens per second for each, their ratio, and whether every output is identical.

    .venv/bin/python bench/generate_batched.py [--model M] [--prompts 64] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from alignkit.backends.hf import HFBackend
from alignkit.types import GenerationParams, user

TASKS = [
    "Write a two-line poem about {}.",
    "Explain {} to a ten-year-old.",
    "Give three facts about {}.",
    "What is the history of {} in one paragraph?",
    "List some common questions people ask about {}.",
    "Write a short product description for a book on {}.",
    "Why do people find {} interesting?",
    "Summarise the pros and cons of {}.",
]
SUBJECTS = ["the ocean", "volcanoes", "honey bees", "the moon", "chess", "bread baking", "rainbows", "trains"]


def prompts(n: int) -> list[str]:
    all_prompts = [t.format(s) for s in SUBJECTS for t in TASKS]
    return all_prompts[:n]


def peer_loop(backend: HFBackend, texts: list[str], new_tokens: int) -> tuple[list[str], int, float]:
    """One prompt at a time through plain transformers."""
    model, tok = backend.model, backend.tokenizer
    outs, tokens = [], 0
    start = time.perf_counter()
    for text in texts:
        enc = tok.apply_chat_template([user(text)], add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = {k: v.to(backend.device) for k, v in enc.items()}
        with torch.inference_mode():
            seq = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=backend.pad_id)
        new = seq[0, enc["input_ids"].shape[1] :].tolist()
        if backend.eos_ids[0] in new:
            new = new[: new.index(backend.eos_ids[0])]
        tokens += len(new)
        outs.append(tok.decode(new, skip_special_tokens=True))
    return outs, tokens, time.perf_counter() - start


def ours(backend: HFBackend, texts: list[str], new_tokens: int) -> tuple[list[str], int, float]:
    start = time.perf_counter()
    out = backend.generate([[user(t)] for t in texts], GenerationParams(max_new_tokens=new_tokens))
    return [c.text for c in out], sum(c.completion_tokens for c in out), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-sizes", default="16,32,64")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate_batched.json"))
    args = ap.parse_args()

    texts = prompts(args.prompts)
    # the plain path on both sides: the peer loop is plain transformers, the compiled path has its own bench
    backend = HFBackend(args.model, generation="plain")
    ours(backend, texts[:2], 4)  # warm-up: first-call allocation and kernel selection
    peer_texts, peer_tokens, peer_s = peer_loop(backend, texts, args.new_tokens)
    peer_rate = peer_tokens / peer_s
    print(f"peer loop     : {peer_tokens} tokens in {peer_s:6.1f}s = {peer_rate:6.1f} tok/s")
    rows = []
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        backend.batch_size = bs
        texts_out, tokens, secs = ours(backend, texts, args.new_tokens)
        same = sum(a == b for a, b in zip(texts_out, peer_texts, strict=True))
        rate = tokens / secs
        rows.append({"batch_size": bs, "tokens": tokens, "seconds": secs, "tokens_per_s": rate,
                     "speedup": rate / peer_rate, "identical_outputs": same})  # fmt: skip
        print(f"alignkit bs={bs:<3}: {tokens} tokens in {secs:6.1f}s = {rate:6.1f} tok/s "
              f"-> {rate / peer_rate:4.2f}x, identical outputs {same}/{len(texts)}")  # fmt: skip
    result = {
        "bench": "generate_batched",
        "model": args.model,
        "prompts": len(texts),
        "max_new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(),
        "device": backend.device_name,
        "dtype": backend.dtype_name,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "peer": {"tokens": peer_tokens, "seconds": peer_s, "tokens_per_s": peer_rate},
        "alignkit": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
