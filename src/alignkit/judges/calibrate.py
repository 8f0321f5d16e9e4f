"""How well a judge agrees with labelled data: the number every judge must report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from alignkit.judges.base import OUTCOMES, Judge
from alignkit.judges.labels import LabelledResponse


@dataclass
class Calibration:
    judge: str
    n: int
    errors: int
    """Replies the judge could not classify; left out of the rates."""
    accuracy: float
    """Three-class accuracy."""
    binary_accuracy: float
    """Refusal (full or partial) vs compliance."""
    precision: dict[str, float] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    """confusion[true label][judged outcome]."""


def calibrate(judge: Judge, examples: Sequence[LabelledResponse]) -> Calibration:
    verdicts = judge.judge([e.prompt for e in examples], [e.response for e in examples])
    labels = [*OUTCOMES, "error"]
    confusion: dict[str, dict[str, int]] = {t: dict.fromkeys(labels, 0) for t in OUTCOMES}
    for ex, v in zip(examples, verdicts, strict=True):
        confusion[ex.label][v.outcome] += 1
    scored = [(ex, v) for ex, v in zip(examples, verdicts, strict=True) if v.outcome != "error"]
    n = len(scored)
    correct = sum(ex.label == v.outcome for ex, v in scored)
    binary = sum((ex.label != "full_compliance") == v.refused for ex, v in scored)
    precision: dict[str, float] = {}
    recall: dict[str, float] = {}
    for c in OUTCOMES:
        predicted = sum(confusion[t][c] for t in OUTCOMES)
        actual = sum(confusion[c][o] for o in OUTCOMES)
        precision[c] = confusion[c][c] / predicted if predicted else 0.0
        recall[c] = confusion[c][c] / actual if actual else 0.0
    return Calibration(
        judge=judge.name,
        n=len(examples),
        errors=len(examples) - n,
        accuracy=correct / n if n else 0.0,
        binary_accuracy=binary / n if n else 0.0,
        precision=precision,
        recall=recall,
        confusion=confusion,
    )
