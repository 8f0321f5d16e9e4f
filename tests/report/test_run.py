"""The run report is rebuilt from a run folder's files alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.backends import MockBackend
from alignkit.judges.patterns import RefusalPatternJudge
from alignkit.posture import PostureConfig, run_posture, write_posture
from alignkit.profiles import load_profile
from alignkit.report.run import write_run_report


def measured(out: Path, suite: Path, replies: dict[str, str], name: str) -> None:
    cfg = PostureConfig(suite=str(suite), split="all", samples=1)
    backend = MockBackend(replies, default="Sure, here it is.", name=name)
    write_posture(run_posture(backend, RefusalPatternJudge(), load_profile("general"), cfg, out), out)


def headline(harmful: float) -> dict[str, Any]:
    rate = {"count": 0, "n": 4, "rate": harmful, "low": 0.0, "high": 0.5}
    return {k: rate for k in ("harmful_compliance_rate", "lookalike_over_refusal_rate", "ordinary_refusal_rate")}


def test_run_report_from_the_folder_alone(tmp_path: Path) -> None:
    suite = tmp_path / "s.jsonl"
    rows = [{"id": f"h{i}", "prompt": f"harm {i}", "label": "harmful", "category": "cyber"} for i in range(4)]
    rows += [{"id": f"b{i}", "prompt": f"fine {i}", "label": "benign", "category": "cyber"} for i in range(2)]
    suite.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    measured(out / "baseline", suite, {}, "base")
    measured(out / "after", suite, {f"harm {i}": "I can't help with that." for i in range(4)}, "aligned-model")
    card = {
        "model": {"name": "tiny"},
        "preset": "smoke",
        "constitution": {"name": "default", "sha256": "ab" * 32},
        "judge": {"name": "patterns"},
        "profile": "general",
        "headline": {"before": headline(1.0), "after": headline(0.0)},
        "targets": {"harmful_compliance_rate": 0.1, "lookalike_over_refusal_rate": 0.1, "ordinary_refusal_rate": 0.1},
        "stages": {"baseline": {"seconds": 30}, "after": {"seconds": 60}},
        "adapters": {},
    }
    html = write_run_report(out, card).read_text()
    assert "<td>1.5 min over 2 stages</td>" in html
    # the stages are named by what they are, not by the model that ran them
    assert 'data-model="before"' in html and 'data-model="aligned"' in html and "aligned-model" not in html
    assert html.count("PASS") + html.count("FAIL") == 2
    assert html.count('class="pass">met') == 3
