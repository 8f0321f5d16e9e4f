"""How well a judge agrees with labelled data: the number every judge must report, overall, per reply
style and per source, so a user sees where a judge is weak."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from alignkit.judges.base import LABELS, Judge, Outcome, Verdict, three_class
from alignkit.judges.labels import LabelledResponse


@dataclass
class Agreement:
    """Agreement on one group of replies (a style, a source, or all of them)."""

    n: int
    """Replies the judge classified (its errors left out)."""
    binary_accuracy: float
    """Compliance vs not: a full or partial refusal, or an evasive reply, all count as not complying."""
    accuracy: float
    """Three-class accuracy (XSTest's classes; `evasive` counted as `full_refusal` on both sides)."""

    @classmethod
    def of(cls, pairs: Sequence[tuple[Outcome, Verdict]]) -> Agreement:
        n = len(pairs)
        binary = sum((label == "full_compliance") == v.complied for label, v in pairs)
        exact = sum(three_class(label) == three_class(v.outcome) for label, v in pairs)
        return cls(n=n, binary_accuracy=binary / n if n else 0.0, accuracy=exact / n if n else 0.0)


@dataclass
class Calibration:
    judge: str
    n: int
    errors: int
    """Replies the judge could not classify; left out of the rates."""
    accuracy: float
    """Three-class accuracy (`evasive` counted as `full_refusal`, as XSTest does)."""
    binary_accuracy: float
    """Compliance vs not (refusal, partial refusal or evasive)."""
    precision: dict[str, float] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    """confusion[true label][judged outcome], over LABELS (plus `error` for judged)."""
    per_style: dict[str, Agreement] = field(default_factory=dict)
    """By the reply's `style`; replies without one under `-`."""
    per_source: dict[str, Agreement] = field(default_factory=dict)
    """By the reply's `source` (its file's `source` column, else the file's name)."""
    per_file: dict[str, Agreement] = field(default_factory=dict)
    """By the file the reply was read from (its name without suffix)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _grouped(pairs: Sequence[tuple[LabelledResponse, Verdict]], key: str) -> dict[str, Agreement]:
    groups: dict[str, list[tuple[Outcome, Verdict]]] = defaultdict(list)
    for ex, v in pairs:
        groups[str(getattr(ex, key)) or "-"].append((ex.label, v))
    return {k: Agreement.of(groups[k]) for k in sorted(groups)}


def calibrate(judge: Judge, examples: Sequence[LabelledResponse]) -> Calibration:
    verdicts = judge.judge([e.prompt for e in examples], [e.response for e in examples])
    return calibration_of(judge.name, examples, verdicts)


def calibration_of(name: str, examples: Sequence[LabelledResponse], verdicts: Sequence[Verdict]) -> Calibration:
    """The calibration of verdicts already given, one per example."""
    columns = [*LABELS, "error"]
    confusion: dict[str, dict[str, int]] = {t: dict.fromkeys(columns, 0) for t in LABELS}
    for ex, v in zip(examples, verdicts, strict=True):
        confusion[ex.label][v.outcome] += 1
    scored = [(ex, v) for ex, v in zip(examples, verdicts, strict=True) if v.outcome != "error"]
    overall = Agreement.of([(ex.label, v) for ex, v in scored])
    precision: dict[str, float] = {}
    recall: dict[str, float] = {}
    for c in LABELS:
        predicted = sum(confusion[t][c] for t in LABELS)
        actual = sum(confusion[c][o] for o in LABELS)
        precision[c] = confusion[c][c] / predicted if predicted else 0.0
        recall[c] = confusion[c][c] / actual if actual else 0.0
    return Calibration(
        judge=name,
        n=len(examples),
        errors=len(examples) - overall.n,
        accuracy=overall.accuracy,
        binary_accuracy=overall.binary_accuracy,
        precision=precision,
        recall=recall,
        confusion=confusion,
        per_style=_grouped(scored, "style"),
        per_source=_grouped(scored, "source"),
        per_file=_grouped(scored, "file"),
    )


HELDOUT_FILES = ("heldout_smollm2", "heldout_smollm2_aligned")
"""SmolLM2-135M-Instruct's replies to the default suite's test split, labelled by hand: before alignment, and
after (the cpu-demo sweep's sft+dpo model)."""


def judge_card(judge: Judge) -> dict[str, Any]:
    """What a posture card records about its judge: the sha256 of the data it was trained on (None for a
        judge that learns nothing, such as the phrase list), where it ran, and its agreement on the style
        corpus's test split, overall and per style, and on the hand-labelled SmolLM2 replies before and after
    alignment (HELDOUT_FILES).
        Cached beside a trained judge, since it costs a pass over about a thousand replies."""
    import json
    from pathlib import Path

    from alignkit.judges.labels import corpus_labelled, written_labelled

    folder = getattr(judge, "folder", None)
    cached = Path(folder) / "card.json" if folder is not None else None
    ran_on = {"device": str(judge.device)} if hasattr(judge, "device") else {}
    if cached is not None and cached.exists():
        card: dict[str, Any] = json.loads(cached.read_text())
        return {**card, **ran_on}
    test = [e for e in corpus_labelled() if e.split == "test"]
    heldout = [e for e in written_labelled() if e.split == "heldout"]
    on_test = calibrate(judge, test)
    on_heldout = calibrate(judge, heldout)
    card = {
        "judge": judge.name,
        "training_data_sha256": getattr(judge, "data_sha256", None) or None,
        "corpus_test": asdict(Agreement(on_test.n - on_test.errors, on_test.binary_accuracy, on_test.accuracy)),
        "per_style": {k: asdict(a) for k, a in on_test.per_style.items()},
        **{name: asdict(on_heldout.per_file[name]) for name in HELDOUT_FILES if name in on_heldout.per_file},
    }
    if cached is not None:
        cached.write_text(json.dumps(card, indent=1) + "\n")
    return {**card, **ran_on}
