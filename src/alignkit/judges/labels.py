"""Labelled responses: what judges are trained and measured on."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alignkit.data import read_records
from alignkit.errors import DataError
from alignkit.judges.base import OUTCOMES, Outcome

_ALIASES: dict[str, Outcome] = {
    "1_full_compliance": "full_compliance",
    "2_full_refusal": "full_refusal",
    "3_partial_refusal": "partial_refusal",
    "compliance": "full_compliance",
    "refusal": "full_refusal",
    "partial": "partial_refusal",
}


@dataclass
class LabelledResponse:
    response: str
    label: Outcome
    prompt: str = ""
    split: str = "train"
    id: str = ""


def load_labelled(path: str | Path) -> list[LabelledResponse]:
    """A labelled file (CSV, JSONL, ...) with `response`, `label` and optionally `prompt`, `split`, `id`.

    Labels are the three outcomes, or XSTest's `1_full_compliance` / `2_full_refusal` / `3_partial_refusal`.
    """
    out: list[LabelledResponse] = []
    for line, rec in read_records(path):
        response = rec.get("response", rec.get("completion"))
        if not isinstance(response, str):
            raise DataError(path, line, "'response' is missing")
        raw = str(rec.get("label") or "").strip().lower()
        label = _ALIASES.get(raw, raw)
        if label not in OUTCOMES:
            raise DataError(path, line, f"'label' is {raw!r}, expected one of {list(OUTCOMES)}")
        out.append(
            LabelledResponse(
                response=response,
                label=label,  # type: ignore[arg-type]
                prompt=str(rec.get("prompt") or ""),
                split=str(rec.get("split") or "train"),
                id=str(rec.get("id") or f"{Path(path).stem}-{line}"),
            )
        )
    return out


def builtin_labelled() -> list[LabelledResponse]:
    """The labelled responses written for alignkit, train and test splits together."""
    folder = resources.files("alignkit") / "resources" / "judge"
    out: list[LabelledResponse] = []
    for name in sorted(p.name for p in folder.iterdir() if p.name.endswith(".jsonl")):
        out.extend(load_labelled(Path(str(folder / name))))
    return out
