"""Judge jobs: calibrate a judge on labelled replies, export the verdicts it is least sure of for people to
correct, and train the pair judge on the corrected labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from alignkit.judges.calibrate import Calibration
from alignkit.judges.review import ReviewRow


def calibrate_judge(judge: str, labels: str | None = None) -> Calibration:
    """A judge's agreement with labelled replies, overall, per style and per source: a file (CSV/JSONL with
    response, label[, prompt, style, source]) or, by default, the built-in labelled test split."""
    from alignkit.judges import make_judge
    from alignkit.judges.calibrate import calibrate
    from alignkit.judges.labels import builtin_labelled, load_labelled

    examples = load_labelled(labels) if labels else [e for e in builtin_labelled() if e.split == "test"]
    return calibrate(make_judge(judge), examples)


def review_judge(run_dir: str | Path, judge: str, out: str | Path, limit: int = 200) -> list[ReviewRow]:
    """The `limit` verdicts of a run folder the judge is least sure of, written to `out` (CSV) with a blank
    `label` column for a person to fill in."""
    from alignkit.judges import make_judge
    from alignkit.judges.review import review_candidates, write_review_csv

    rows = review_candidates(run_dir, make_judge(judge), limit=limit)
    write_review_csv(rows, out)
    return rows


def train_pair_judge(labels: Sequence[str | Path], log: Callable[[str], None] | None = None) -> Path:
    """The pair judge retrained on the built-in data plus the labelled files (a reviewed CSV, say); cached
    under a key of its data, so `--judge pair` keeps meaning the built-in one. Returns the judge's folder."""
    from alignkit.judges.pair import train_judge

    judge = train_judge(extra_labels=list(labels), log=log)
    if judge.folder is None:
        raise AssertionError("train_judge returns a saved judge")
    return Path(judge.folder)
