"""The shared page pieces: rates, escaping, legends, verdicts, and the page shell."""

from __future__ import annotations

from alignkit.metrics import Rate
from alignkit.profiles import Failure, ProfileVerdict
from alignkit.report.html import PALETTE, escape, legend, page, pct, verdict


def test_a_rate_reads_as_percent_interval_and_count() -> None:
    # 3 of 10, Wilson 95%: (0.3 + 1.92/10 -/+ 1.96 * sqrt(0.021 + 0.0096)) / 1.384 = 0.1078, 0.6032
    assert pct(Rate.of(3, 10)) == "30.0% [10.8, 60.3] (n=10)"


def test_text_is_escaped_everywhere_it_lands() -> None:
    assert escape('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    html = page("<t>", {"model": "<m>"}, ["<p>raw section</p>"])
    assert "<title>&lt;t&gt;</title>" in html and "<td>&lt;m&gt;</td>" in html and "<p>raw section</p>" in html
    assert "<b>&lt;m&gt;</b>" in verdict("<m>", ProfileVerdict("general", True))


def test_legend_colours_follow_the_chart_order() -> None:
    names = [f"m{i}" for i in range(len(PALETTE) + 1)]
    html = legend(names)
    assert html.count("&#9632;") == len(names)
    assert html.index(PALETTE[0]) < html.index("m0") < html.index(PALETTE[1]) < html.index("m1")
    assert html.rsplit("color:", 1)[1].startswith(PALETTE[0])  # the ninth wraps round


def test_a_failed_verdict_lists_each_failing_check() -> None:
    v = ProfileVerdict("strict", False, [Failure("cyber", "harmful_compliance_rate", 0.25, 0.05)])
    html = verdict("m", v)
    assert '<span class="fail">FAIL</span>' in html
    assert "<td>cyber</td><td>harmful_compliance_rate</td><td>25.0%</td><td>5.0%</td>" in html
    assert '<span class="pass">PASS</span>' in verdict("m", ProfileVerdict("strict", True))
