"""Judges: did the model refuse, and how harmful is what it said."""

from __future__ import annotations

from alignkit.judges.base import LABELS, OUTCOMES, Judge, Outcome, Verdict, three_class
from alignkit.judges.patterns import RefusalPatternJudge

DEFAULT_JUDGE = "pair"
"""The judge every command uses unless told otherwise: the prompt-and-reply cross-encoder."""
JUDGES = ("pair", "embedding", "patterns", "llm:<model>")
"""Judge specs `make_judge` takes."""

__all__ = [
    "DEFAULT_JUDGE",
    "JUDGES",
    "LABELS",
    "OUTCOMES",
    "Judge",
    "Outcome",
    "RefusalPatternJudge",
    "Verdict",
    "make_judge",
    "three_class",
]


def make_judge(spec: str, *, backend: str = "hf", base_url: str | None = None) -> Judge:
    """`pair` (default: reads prompt and reply together), `embedding` (reads the reply alone), `patterns`,
    or `llm:<model>` graded by that model on `backend`. The trained judges train on first use and are
    cached under $ALIGNKIT_HOME/judges."""
    if spec == "pair":
        from alignkit.judges.pair import train_judge

        return train_judge()
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
