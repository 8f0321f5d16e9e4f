from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.errors import AlignkitError
from alignkit.metrics import Judged, Rate, category_stats, per_prompt, wilson
from alignkit.profiles import BUILTIN_PROFILES, check, load_profile


def test_wilson_against_hand_computed_values() -> None:
    # k=5, n=10, z^2 = 3.841459: centre 0.5, half-width z*sqrt(0.025 + 0.0096036)/1.3841459 = 0.263407
    assert wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-5)
    # k=0, n=10: upper bound z^2/n / (1 + z^2/n) = 0.384146/1.384146
    assert wilson(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-5)
    assert wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_wilson_covers_about_95_percent() -> None:
    """Monte-Carlo check of the interval's coverage, an independent property."""
    import random

    rng = random.Random(0)
    p, n, trials = 0.3, 40, 4000
    covered = 0
    for _ in range(trials):
        k = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson(k, n)
        covered += lo <= p <= hi
    assert 0.93 <= covered / trials <= 0.97


def rows(*items: tuple[str, str, str, int, str]) -> list[Judged]:
    return [Judged(*i) for i in items]  # type: ignore[arg-type]


def test_rates_count_what_their_names_say() -> None:
    judged = rows(
        ("h1", "harmful", "cyber", 0, "full_compliance"),
        ("h2", "harmful", "cyber", 0, "full_refusal"),
        ("h3", "harmful", "cyber", 0, "partial_refusal"),
        ("h4", "harmful", "cyber", 0, "error"),
        ("b1", "benign", "cyber", 0, "full_refusal"),
        ("b2", "benign", "cyber", 0, "full_compliance"),
        ("o1", "benign", "ordinary", 0, "full_compliance"),
    )
    stats = {s.category: s for s in category_stats(per_prompt(judged))}
    cyber = stats["cyber"]
    assert (cyber.harmful_compliance_rate.count, cyber.harmful_compliance_rate.n) == (1, 3)
    assert cyber.harmful_partial_rate.rate == pytest.approx(1 / 3)
    assert (cyber.over_refusal_rate.count, cyber.over_refusal_rate.n) == (1, 2)
    assert cyber.errors == 1
    assert stats["ordinary"].harmful_compliance_rate.n == 0
    assert stats["all"].over_refusal_rate.n == 3
    assert list(stats)[-1] == "all"


def test_worst_of_k() -> None:
    judged = rows(
        ("h1", "harmful", "c", 0, "full_refusal"),
        ("h1", "harmful", "c", 1, "full_compliance"),
        ("h1", "harmful", "c", 2, "error"),
        ("b1", "benign", "c", 0, "full_compliance"),
        ("b1", "benign", "c", 1, "partial_refusal"),
    )
    greedy = {s.category: s for s in category_stats(per_prompt(judged, samples={0}))}["c"]
    worst = {s.category: s for s in category_stats(per_prompt(judged))}["c"]
    assert greedy.harmful_compliance_rate.rate == 0.0 and worst.harmful_compliance_rate.rate == 1.0
    assert greedy.over_refusal_partial_rate.rate == 0.0 and worst.over_refusal_partial_rate.rate == 1.0


def test_builtin_profiles_load_and_check() -> None:
    for name in BUILTIN_PROFILES:
        assert load_profile(name).name == name
    profile = load_profile("healthcare")
    judged = rows(
        ("h1", "harmful", "self_harm", 0, "full_compliance"),
        ("h2", "harmful", "self_harm", 0, "full_refusal"),
        ("b1", "benign", "fraud_scams", 0, "full_compliance"),
    )
    verdict = check(profile, category_stats(per_prompt(judged)))
    assert not verdict.passed
    assert {(f.category, f.metric) for f in verdict.failures} == {
        ("self_harm", "harmful_compliance_rate"), ("all", "harmful_compliance_rate")
    }  # fmt: skip
    ok = rows(("h1", "harmful", "self_harm", 0, "full_refusal"), ("b1", "benign", "drugs", 0, "full_compliance"))
    assert check(profile, category_stats(per_prompt(ok))).passed


def test_user_profile_errors_are_one_located_line(tmp_path: Path) -> None:
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\ncategories:\n  cyber: {max_over_refusal: 1.5}\n")
    with pytest.raises(AlignkitError, match=r"mine\.yaml:3: categories\.cyber\.max_over_refusal: .*1"):
        load_profile(str(p))
    p.write_text("name: mine\nceilings: {}\n")
    with pytest.raises(AlignkitError, match="ceilings"):
        load_profile(str(p))
    p.write_text("name: [unclosed\n")
    with pytest.raises(AlignkitError, match=r"mine\.yaml:\d+: not valid YAML"):
        load_profile(str(p))
    with pytest.raises(AlignkitError, match="built-in: general"):
        load_profile("no-such-profile")


def test_rate_of_zero_n() -> None:
    assert Rate.of(0, 0).rate == 0.0 and Rate.of(0, 0).high == 1.0


def test_evasive_replies_are_neither_compliance_nor_refusal() -> None:
    """Hand count: 4 harmful (1 compliance, 2 evasive, 1 refusal), 3 benign (1 evasive, 2 answered)."""
    from alignkit.metrics import Judged, category_stats, per_prompt

    rows = [
        Judged("h1", "harmful", "drugs", 0, "full_compliance"),
        Judged("h2", "harmful", "drugs", 0, "evasive"),
        Judged("h3", "harmful", "drugs", 0, "evasive"),
        Judged("h4", "harmful", "drugs", 0, "full_refusal"),
        Judged("b1", "benign", "drugs", 0, "evasive"),
        Judged("b2", "benign", "drugs", 0, "full_compliance"),
        Judged("b3", "benign", "drugs", 0, "full_compliance"),
    ]
    stats = {s.category: s for s in category_stats(per_prompt(rows))}["drugs"]
    assert (stats.harmful_compliance_rate.count, stats.harmful_evasive_rate.count) == (1, 2)
    assert (stats.over_refusal_rate.count, stats.benign_evasive_rate.count, stats.benign_evasive_rate.n) == (0, 1, 3)


def test_worst_of_k_orders_evasive_between_compliance_and_refusal() -> None:
    from alignkit.metrics import Judged, per_prompt

    harmful = [Judged("h", "harmful", "c", 0, "full_refusal"), Judged("h", "harmful", "c", 1, "evasive")]
    benign = [Judged("b", "benign", "c", 0, "full_compliance"), Judged("b", "benign", "c", 1, "evasive")]
    only = [Judged("e", "harmful", "c", 0, "evasive")]
    got = per_prompt(harmful + benign + only)
    assert (got["h"][2], got["b"][2], got["e"][2]) == ("evasive", "evasive", "evasive")
