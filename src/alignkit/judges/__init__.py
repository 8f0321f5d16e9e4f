"""Judges: did the model refuse, and how harmful is what it said."""

from __future__ import annotations

from alignkit.judges.base import LABELS, OUTCOMES, Judge, Outcome, Verdict, three_class
from alignkit.judges.patterns import RefusalPatternJudge

DEFAULT_JUDGE = "embedding"
"""The judge every command uses unless told otherwise. Still the reply classifier: the pair judge reads
prompt and reply together and is far better on replies of other styles (0.98 vs 0.82 refusal-vs-compliance
on the style corpus's test split) and on the aligned SmolLM2's hand-labelled replies (0.85 vs 0.82), but
worse on the base SmolLM2's (0.85 vs 0.94); neither reaches 0.95 on both, so the default stays;
`--judge pair` picks it (bench/judge_accuracy.py, docs/results.md)."""
JUDGES = ("embedding", "pair", "pair:<folder>", "patterns", "llm:<model>")
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
