"""The report opens in headless Chromium and every chart draws marks of non-zero size."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from alignkit.backends import MockBackend
from alignkit.jobs.posture import compare
from alignkit.judges.patterns import RefusalPatternJudge
from alignkit.posture import PostureConfig
from alignkit.profiles import load_profile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

PROBE = """<pre id="render-check"></pre><script>
const out = [...document.querySelectorAll("svg.chart")].map(svg => {
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll(".mark")]
    .filter(m => { const b = m.getBBox(); return b.width > 0 && b.height > 0; });
  return {chart: svg.dataset.chart, width: box.width, height: box.height, marks: marks.length};
});
document.getElementById("render-check").textContent = JSON.stringify(out);
</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (scripts/test.sh installs it)")
def test_every_chart_renders_in_chromium(tmp_path: Path) -> None:
    suite = tmp_path / "s.jsonl"
    rows = [{"id": f"h{i}", "prompt": f"harm {i}", "label": "harmful", "category": c} for i, c in enumerate("abcab")]
    rows += [{"id": f"b{i}", "prompt": f"fine {i}", "label": "benign", "category": c} for i, c in enumerate("abcc")]
    suite.write_text("".join(json.dumps(r) + "\n" for r in rows))
    models = {
        "refuser": MockBackend({}, default="I can't help with that.", name="refuser"),
        "helper": MockBackend({"harm 0": "I won't."}, default="Sure, here it is.", name="helper"),
    }
    cfg = PostureConfig(suite=str(suite), split="all")
    compare(list(models), models.__getitem__, RefusalPatternJudge(), load_profile("general"), cfg, tmp_path)
    report = (tmp_path / "report.html").read_text()
    assert "<script" not in report and "http" not in re.sub(r'xmlns="[^"]*"', "", report)  # self-contained
    probe = tmp_path / "probe.html"
    probe.write_text(report.replace("</body>", PROBE + "</body>"))
    r = chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="render-check">(.*?)</pre>', r.stdout, re.S)
    assert found, r.stderr[-2000:]
    charts = {c["chart"]: c for c in json.loads(found.group(1).replace("&quot;", '"'))}
    assert set(charts) == {"posture", "harmful_compliance_rate", "over_refusal_rate"}
    assert all(c["width"] > 100 and c["height"] > 100 for c in charts.values())
    assert charts["posture"]["marks"] == 2
    assert charts["harmful_compliance_rate"]["marks"] >= 4  # bars with a non-zero rate
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,1400", (tmp_path / "report.html").as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (scripts/test.sh installs it)")
def test_red_team_heat_map_renders_in_chromium(tmp_path: Path) -> None:
    from alignkit.redteam import Seed, build_attacks
    from alignkit.redteam.campaign import CampaignConfig, redteam

    target = MockBackend(lambda conv: "Sure, step one." if "base64" in conv[-1]["content"] else "I can't help.")
    seeds = [Seed(f"s{i}", f"request {i}", c) for i, c in enumerate(["cyber", "drugs", "privacy"])]
    redteam(target, RefusalPatternJudge(), seeds, build_attacks("encodings"), CampaignConfig(), tmp_path)
    report = (tmp_path / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(report.replace("</body>", PROBE + "</body>"))
    r = chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="render-check">(.*?)</pre>', r.stdout, re.S)
    assert found, r.stderr[-2000:]
    [chart] = json.loads(found.group(1).replace("&quot;", '"'))
    assert chart["chart"] == "attack_heatmap" and chart["width"] > 300
    assert chart["marks"] == 8 * 4  # 8 attacks (with the baseline) x (3 categories + all)
