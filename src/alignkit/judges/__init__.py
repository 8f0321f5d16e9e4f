"""Judges: did the model refuse, and how harmful is what it said."""

from __future__ import annotations

from alignkit.judges.base import LABELS, OUTCOMES, Judge, Outcome, Verdict, three_class
from alignkit.judges.patterns import RefusalPatternJudge

DEFAULT_JUDGE = "pair"
"""The judge every command uses unless told otherwise: prompt and reply read together. On every labelled set
it beats the reply classifier `embedding` (refusal vs compliance: style corpus test 0.98 vs 0.82, SmolLM2
before alignment 0.945 vs 0.939, after 0.927 vs 0.824; bench/judge_accuracy.py, docs/results.md);
`--judge embedding` still picks the old default."""
JUDGES = ("pair", "embedding", "pair:<folder>", "patterns", "llm:<model>")
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
    if spec.startswith("pair:") and len(spec) > 5:  # a retrained pair judge's folder (`alignkit judge train`)
        from alignkit.judges.pair import PairJudge

        return PairJudge.load(spec[5:])
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
