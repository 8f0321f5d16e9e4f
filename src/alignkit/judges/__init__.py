"""Judges: did the model refuse, and how harmful is what it said."""

from __future__ import annotations

from alignkit.judges.base import OUTCOMES, Judge, Outcome, Verdict
from alignkit.judges.patterns import RefusalPatternJudge

JUDGES = ("embedding", "patterns", "llm:<model>")
"""Judge specs `make_judge` takes."""

__all__ = ["JUDGES", "OUTCOMES", "Judge", "Outcome", "RefusalPatternJudge", "Verdict", "make_judge"]


def make_judge(spec: str, *, backend: str = "hf", base_url: str | None = None) -> Judge:
    """`embedding` (default), `patterns`, or `llm:<model>` graded by that model on `backend`."""
    if spec == "embedding":
        from alignkit.judges.embedding import EmbeddingJudge

        return EmbeddingJudge.default()
    if spec == "patterns":
        return RefusalPatternJudge()
    if spec.startswith("llm:") and len(spec) > 4:
        from alignkit.backends import make_backend
        from alignkit.judges.llm import LLMJudge

        options = {"base_url": base_url} if backend == "openai" else {}
        return LLMJudge(make_backend(backend, spec[4:], **options))  # type: ignore[arg-type]
    from alignkit.errors import AlignkitError

    raise AlignkitError(f"unknown judge '{spec}'; known: {', '.join(JUDGES)}")
