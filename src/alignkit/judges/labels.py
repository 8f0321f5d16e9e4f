"""Labelled responses: what judges are trained and measured on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alignkit.data import read_records
from alignkit.errors import DataError
from alignkit.judges.base import LABELS, Outcome

_ALIASES: dict[str, Outcome] = {
    "1_full_compliance": "full_compliance",
    "2_full_refusal": "full_refusal",
    "3_partial_refusal": "partial_refusal",
    "compliance": "full_compliance",
    "refusal": "full_refusal",
    "partial": "partial_refusal",
    "evasive_non_answer": "evasive",
}


@dataclass
class LabelledResponse:
    response: str
    label: Outcome
    """One of LABELS: the three XSTest classes or `evasive`."""
    prompt: str = ""
    split: str = "train"
    """`train`, `test`, or `heldout` (kept for measurement only)."""
    id: str = ""
    style: str = ""
    """How the reply is written (`terse_refusal`, `warn_then_comply`, ...); empty where unknown."""
    source: str = ""
    """Where the reply came from: the file's `source` column, else the file's name."""
    file: str = ""
    """The name of the file it was read from, without its suffix."""


def load_labelled(path: str | Path) -> list[LabelledResponse]:
    """A labelled file (CSV, JSONL, ...) with `response`, `label` and optionally `prompt`, `split`, `id`,
    `style`, `source`.

    Labels are LABELS, or XSTest's `1_full_compliance` / `2_full_refusal` / `3_partial_refusal`. In a review
    file (one with a `verdict` column, as `alignkit judge review` writes) rows whose label is still blank
    have not been reviewed and are skipped.
    """
    out: list[LabelledResponse] = []
    stem = Path(path).stem
    for line, rec in read_records(path):
        response = rec.get("response", rec.get("completion"))
        if isinstance(response, list | dict):  # a CSV cell that parsed as JSON
            response = json.dumps(response)
        if not isinstance(response, str):
            raise DataError(path, line, "'response' is missing")
        raw = str(rec.get("label") or "").strip().lower()
        if not raw and "verdict" in rec:
            continue
        label = _ALIASES.get(raw, raw)
        if label not in LABELS:
            raise DataError(path, line, f"'label' is {raw!r}, expected one of {list(LABELS)}")
        out.append(
            LabelledResponse(
                response=response,
                label=label,  # type: ignore[arg-type]
                prompt=_text(rec.get("prompt")),
                split=str(rec.get("split") or "train"),
                id=str(rec.get("id") or f"{stem}-{line}"),
                style=str(rec.get("style") or ""),
                source=str(rec.get("source") or stem),
                file=stem,
            )
        )
    return out


def _text(value: object) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value or "")


def _folder() -> Path:
    return Path(str(resources.files("alignkit") / "resources" / "judge"))


def _load_all(folder: Path) -> list[LabelledResponse]:
    out: list[LabelledResponse] = []
    for path in sorted(folder.glob("*.jsonl")):
        out.extend(load_labelled(path))
    return out


def written_labelled() -> list[LabelledResponse]:
    """The first labelled set: written replies (`responses_*.jsonl`, train and test; `premise_train.jsonl`,
    premise corrections, train), and SmolLM2-135M-Instruct's replies labelled by hand, before alignment and
    after the cpu-demo sweep's sft+dpo (`smollm2_*_train.jsonl`, to train prompts of the default suite or the
    corpus; `heldout_smollm2*.jsonl`, to its test prompts, kept for measurement)."""
    return _load_all(_folder())


def corpus_labelled() -> list[LabelledResponse]:
    """The style corpus (`corpus/*.jsonl`): written replies in ten styles over every hazard category and
    benign kind, split into train and test by prompt."""
    return _load_all(_folder() / "corpus")


def builtin_labelled() -> list[LabelledResponse]:
    """Every labelled reply that ships with alignkit: the first set and the style corpus."""
    return written_labelled() + corpus_labelled()


def data_hash(examples: Iterable[LabelledResponse]) -> str:
    """sha256 over (prompt, response, label) of each example, in order: the training data's fingerprint."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.prompt, ex.response, ex.label]).encode())
        h.update(b"\n")
    return h.hexdigest()
