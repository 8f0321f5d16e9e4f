"""Re-judge the replies a run (or every run of a sweep) already made, with another judge: the headline
rates as that judge reads them, without generating again.

    .venv/bin/python bench/rejudge.py runs/sweep-cpu-demo --judge pair --out bench/results/rejudge.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from alignkit.data import read_records
from alignkit.judges import make_judge
from alignkit.layout import POSTURES, RunLayout
from alignkit.pipeline import headline_rates


def rejudge_run(folder: Path, judge: Any) -> dict[str, Any]:
    """which -> headline rates under `judge`, for each posture folder of the run that has replies."""
    layout = RunLayout(folder)
    out: dict[str, Any] = {}
    for which in POSTURES:
        files = sorted((layout.posture(which) / "replies").glob("*.jsonl"))
        if not files:
            continue
        rows = [rec for _, rec in read_records(files[0])]
        verdicts = judge.judge([r["prompt"] for r in rows], [r["completion"] for r in rows])
        for r, v in zip(rows, verdicts, strict=True):
            r["outcome"] = v.outcome
        out[which] = headline_rates(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", type=Path, help="a run folder, or a sweep folder of run folders")
    ap.add_argument("--judge", default="pair")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    judge = make_judge(args.judge)
    runs = [args.folder] if (args.folder / "stages.json").exists() else sorted(
        p.parent for p in args.folder.glob("*/stages.json"))  # fmt: skip
    body = {"judge": args.judge, "runs": {str(r): rejudge_run(r, judge) for r in runs}}
    for run, rates in body["runs"].items():
        for which, h in rates.items():
            cells = [f"{k} {100 * h[k]['rate']:.1f}% [{100 * h[k]['low']:.1f}, {100 * h[k]['high']:.1f}]"
                     for k in ("harmful_compliance_rate", "harmful_evasive_rate", "lookalike_over_refusal_rate",
                               "ordinary_refusal_rate", "benign_evasive_rate")]  # fmt: skip
            print(f"{run} {which}: " + "; ".join(cells))
    if args.out:
        args.out.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
