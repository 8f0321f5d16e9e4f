"""Backends: anything that turns conversations into completions."""

from __future__ import annotations

from typing import Any, Literal

from alignkit.backends.base import Backend, OnResult, Scored, ScoringBackend
from alignkit.backends.mock import MockBackend

BackendKind = Literal["hf", "openai", "vllm"]

__all__ = ["Backend", "BackendKind", "MockBackend", "OnResult", "Scored", "ScoringBackend", "make_backend"]


def make_backend(kind: BackendKind, model: str, **options: Any) -> Backend:
    """Build a backend by kind; heavy imports happen only for the kind asked for."""
    if kind == "hf":
        from alignkit.backends.hf import HFBackend

        return HFBackend(model, **options)
    if kind == "openai":
        from alignkit.backends.openai import OpenAIBackend

        return OpenAIBackend(model, **options)
    if kind == "vllm":
        from alignkit.backends.vllm import VLLMBackend

        return VLLMBackend(model, **options)
    raise ValueError(f"unknown backend '{kind}': use hf, openai or vllm")
