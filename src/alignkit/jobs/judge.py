"""Judge jobs: calibrate a judge on labelled replies."""

from __future__ import annotations

from typing import Any


def calibrate_judge(judge: str, labels: str | None = None) -> Any:
    """A judge's agreement with labelled replies: a file (CSV/JSONL with response, label[, prompt, style,
    source]) or, by default, the built-in labelled test split."""
    from alignkit.judges import make_judge
    from alignkit.judges.calibrate import calibrate
    from alignkit.judges.labels import builtin_labelled, load_labelled

    examples = load_labelled(labels) if labels else [e for e in builtin_labelled() if e.split == "test"]
    return calibrate(make_judge(judge), examples)
