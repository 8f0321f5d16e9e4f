"""New tokens per second: HFBackend plain (dynamic KV cache), HFBackend compiled (static KV cache and
torch.compile, CUDA graphs on a GPU) and vLLM when it is importable, on one model and one set of prompts.

Each HF mode warms up, then runs the workload once timed; both times are reported. The static and
compiled paths warm up on the whole workload (compilation and CUDA graph capture for every cache
shape), the plain path on one batch. Greedy decoding, so the compiled path's replies can be compared
with the plain path's (`same_as_plain`: the fraction of identical replies; bf16 rounding can flip a
few near-ties, fp32 should give 1.0).

    python bench/generate_speed.py [--model M] [--prompts 256] [--new-tokens 128] [--batch-sizes 64,256]
        [--modes plain,compiled,vllm] [--device cuda] [--dtype bf16] [--out results.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from alignkit.backends.hf import HFBackend
from alignkit.types import Completion, GenerationParams, user

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
    """`n` prompts of mixed lengths; past the 64 distinct ones, a numbered variant."""
    base = [t.format(s) for s in SUBJECTS for t in TASKS]
    return [base[i % len(base)] + (f" (variant {i // len(base)})" if i >= len(base) else "") for i in range(n)]


def timed(run: Any) -> tuple[list[Completion], float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def row(mode: str, batch: int | None, out: list[Completion], first_s: float, s: float) -> dict[str, Any]:
    tokens = sum(c.completion_tokens for c in out)
    return {
        "mode": mode,
        "batch_size": batch,
        "new_tokens": tokens,
        "seconds": round(s, 3),
        "new_tokens_per_s": round(tokens / s, 1),
        "first_call_seconds": round(first_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch-sizes", default="64,256")
    ap.add_argument("--modes", default="plain,compiled,vllm", help="any of plain, static, compiled, vllm")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: alignkit's rule)")
    ap.add_argument("--dtype", default=None, help="bf16, fp32, ... (default: bf16 on GPUs that support it)")
    ap.add_argument("--vllm-memory", type=float, default=0.5, help="vLLM's gpu_memory_utilization")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate_speed.json"))
    args = ap.parse_args()

    convs = [[user(p)] for p in prompts(args.prompts)]
    params = GenerationParams(max_new_tokens=args.new_tokens)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    base = HFBackend(args.model, device=args.device, dtype=args.dtype, generation="plain")
    result: dict[str, Any] = {
        "model": args.model,
        "device": base.device_name,
        "gpu": torch.cuda.get_device_name(base.device) if base.device.type == "cuda" else None,
        "dtype": base.dtype_name,
        "prompts": args.prompts,
        "max_new_tokens": args.new_tokens,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "rows": [],
    }
    plain_texts: dict[int, list[str]] = {}
    for mode in [m for m in modes if m != "vllm"]:
        for bs in [int(x) for x in args.batch_sizes.split(",")]:
            b = HFBackend(base.model, base.tokenizer, batch_size=bs, generation=mode, name=args.model)  # type: ignore[arg-type]
            # the compiled path meets every cache shape it will be timed on; the plain one needs no more
            # than a batch to settle the allocator
            warm = convs if mode != "plain" else convs[:bs]
            _, first_s = timed(lambda b=b, warm=warm: b.generate(warm, params))
            out, s = timed(lambda b=b: b.generate(convs, params))
            r = row(mode, bs, out, first_s, s)
            texts = [c.text for c in out]
            if mode == "plain":
                plain_texts[bs] = texts
            elif bs in plain_texts:
                same = sum(a == p for a, p in zip(texts, plain_texts[bs], strict=True))
                r["same_as_plain"] = round(same / len(texts), 3)
            result["rows"].append(r)
            print(json.dumps(r))
    if "vllm" in modes:
        try:
            import vllm  # noqa: F401
        except ImportError:
            result["vllm"] = "not installed"
            print("vllm: not installed, skipped")
        else:
            from alignkit.backends.vllm import VLLMBackend

            base.model.to("cpu")  # frees the GPU for vLLM's own copy
            gc.collect()
            torch.cuda.empty_cache()
            v = VLLMBackend(args.model, gpu_memory_utilization=args.vllm_memory)
            _, first_s = timed(lambda: v.generate(convs, params))
            out, s = timed(lambda: v.generate(convs, params))
            r = row("vllm", None, out, first_s, s)
            result["rows"].append(r)
            print(json.dumps(r))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
