"""A review loop for people: the verdicts a judge is least sure of, out to a CSV to correct, and back in.

rows = review_candidates("runs/demo", judge, limit=200)
write_review_csv(rows, "review.csv")        # a person fills in `label` where they check a row
calibrate(judge, load_labelled("review.csv"))
train_judge(extra_labels=["review.csv"])     # the pair judge, retrained and cached under a new key
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from alignkit.data import read_records
from alignkit.errors import AlignkitError, DataError
from alignkit.judges.base import Judge

REVIEW_COLUMNS = ("prompt", "response", "verdict", "confidence", "label", "source", "prompt_id", "sample")
"""The review CSV's columns; `label` is blank for a person to fill in (rows left blank are skipped)."""


@dataclass
class ReviewRow:
    prompt: str
    response: str
    verdict: str
    """The judge's outcome."""
    confidence: float
    """The judge's probability for that outcome; the rows come lowest first."""
    source: str
    """The replies file the row came from, relative to the run folder."""
    prompt_id: str = ""
    sample: int = 0
    label: str = ""
    """The person's label; blank until reviewed."""


def reply_files(run_dir: str | Path) -> list[Path]:
    """Every `replies/*.jsonl` a posture run left under `run_dir` (an `alignkit run` folder holds one in
    each of baseline/, after/ and guarded/)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise AlignkitError(f"{root}: no such run folder")
    files = sorted(root.glob("**/replies/*.jsonl"))
    if not files:
        raise AlignkitError(f"{root}: no replies/*.jsonl under it (run `alignkit posture` or `alignkit run` first)")
    return files


def review_candidates(run_dir: str | Path, judge: Judge, limit: int = 200, batch: int = 64) -> list[ReviewRow]:
    """The `limit` replies under `run_dir` whose verdicts `judge` is least sure of, least sure first.

    A judge that gives no confidence (a phrase list) is taken as sure of every verdict, so its rows
    keep file order."""
    root = Path(run_dir)
    rows: list[ReviewRow] = []
    for path in reply_files(root):
        records = []
        for line, rec in read_records(path):
            if not isinstance(rec.get("completion"), str) or not isinstance(rec.get("prompt"), str):
                raise DataError(path, line, "'prompt' or 'completion' is missing")
            records.append(rec)
        for lo in range(0, len(records), batch):
            part = records[lo : lo + batch]
            verdicts = judge.judge([r["prompt"] for r in part], [r["completion"] for r in part])
            for r, v in zip(part, verdicts, strict=True):
                rows.append(
                    ReviewRow(
                        prompt=r["prompt"],
                        response=r["completion"],
                        verdict=v.outcome,
                        confidence=0.0 if v.outcome == "error" else 1.0 if v.confidence is None else v.confidence,
                        source=str(path.relative_to(root)),
                        prompt_id=str(r.get("prompt_id") or ""),
                        sample=int(r.get("sample") or 0),
                    )
                )
    order = sorted(range(len(rows)), key=lambda i: (rows[i].confidence, i))
    return [rows[i] for i in order[:limit]]


def write_review_csv(rows: Sequence[ReviewRow], path: str | Path) -> Path:
    """The rows as CSV with REVIEW_COLUMNS; `load_labelled` reads it back once `label` is filled in."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=REVIEW_COLUMNS)
        writer.writeheader()
        for row in rows:
            d = asdict(row)
            d["confidence"] = f"{row.confidence:.4f}"
            writer.writerow({k: d[k] for k in REVIEW_COLUMNS})
    return dest
