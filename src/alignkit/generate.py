"""`alignkit generate`: answer a prompt file, writing each reply as it comes; resumable."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alignkit.backends.base import Backend
from alignkit.data import JsonlAppender, load_prompts, read_done
from alignkit.types import Completion, GenerationParams, Prompt, with_system

BUILTIN_PROMPTS = {"demo": "demo.jsonl"}
"""Prompt files that ship with alignkit, by name."""


def prompts_path(name_or_path: str) -> Path:
    """A user file, or a built-in prompt file by name (`demo`)."""
    if name_or_path in BUILTIN_PROMPTS and not Path(name_or_path).exists():
        ref = resources.files("alignkit") / "resources" / "prompts" / BUILTIN_PROMPTS[name_or_path]
        return Path(str(ref))
    return Path(name_or_path)


@dataclass
class GenerateSummary:
    total: int
    skipped: int
    written: int
    failed: int
    seconds: float
    completion_tokens: int


def generate_file(
    backend: Backend,
    prompts: str | Path,
    out: str | Path,
    params: GenerationParams,
    *,
    system: str | None = None,
    chunk_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateSummary:
    """Answer every prompt in `prompts` whose id is not yet in `out`, appending one JSON line per reply.

    Each reply is on disk before the next is asked for, so a killed run loses at most the batch in
    flight and a rerun skips what is done. Failed replies are not written (a rerun retries them).
    `progress` is called with (prompts finished, prompts to do) after each reply and once at the start.
    """
    all_prompts = load_prompts(prompts_path(str(prompts)))
    done = read_done(out)
    todo: list[Prompt] = [p for p in all_prompts if p.id not in done]
    written = failed = tokens = 0
    start = time.perf_counter()
    if progress is not None:
        progress(0, len(todo))
    with JsonlAppender(out) as sink:
        for lo in range(0, len(todo), chunk_size):
            chunk = todo[lo : lo + chunk_size]
            conversations = [with_system(p.conversation(), system) for p in chunk]

            def on_result(i: int, c: Completion, chunk: list[Prompt] = chunk) -> None:
                nonlocal written, failed, tokens
                if c.error is None:
                    sink.write(_record(chunk[i], c, backend.name, system))
                    written += 1
                    tokens += c.completion_tokens
                else:
                    failed += 1
                if progress is not None:
                    progress(written + failed, len(todo))

            backend.generate(conversations, params, on_result=on_result)
    return GenerateSummary(
        total=len(all_prompts),
        skipped=len(all_prompts) - len(todo),
        written=written,
        failed=failed,
        seconds=time.perf_counter() - start,
        completion_tokens=tokens,
    )


def _record(p: Prompt, c: Completion, model: str, system: str | None) -> dict[str, object]:
    rec: dict[str, object] = {"id": p.id}
    if p.text is not None:
        rec["prompt"] = p.text
    else:
        rec["messages"] = p.messages
    rec["completion"] = c.text
    for key in ("category", "label", "source"):
        value = getattr(p, key)
        if value is not None:
            rec[key] = value
    rec.update(
        {
            "model": model,
            "system": system,
            "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
        }
    )
    if c.token_logprobs is not None:
        rec["token_logprobs"] = c.token_logprobs
    return rec
