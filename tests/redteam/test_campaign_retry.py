"""Red-team units whose target (or judge) errored are not stored as done: the next run retries them."""

from __future__ import annotations

from pathlib import Path

from alignkit.backends import MockBackend
from alignkit.judges.patterns import RefusalPatternJudge
from alignkit.redteam import Seed, build_attacks
from alignkit.redteam.campaign import CampaignConfig, run_campaign

REFUSE = "I'm sorry, but I can't help with that."


def test_errored_units_are_retried_on_the_next_run(tmp_path: Path) -> None:
    seeds = [Seed("s0", "request number 0", "cyber"), Seed("s1", "request number 1", "drugs")]
    attacks = build_attacks("base64")
    down = MockBackend(lambda conv: RuntimeError("target down"))
    first = run_campaign(down, RefusalPatternJudge(), seeds, attacks, CampaignConfig(), tmp_path)
    # Every unit errored: reported with its errors, but none is done, so the campaign is not complete.
    assert down.calls and not first.complete and all(u["errors"] == u["trials"] for u in first.units)

    up = MockBackend(lambda conv: REFUSE)
    second = run_campaign(up, RefusalPatternJudge(), seeds, attacks, CampaignConfig(), tmp_path)
    assert second.complete and len(second.units) == 2 * 2  # the baseline and base64, on two seeds
    assert all(u["errors"] == 0 for u in second.units)
    assert len(up.calls) == len(down.calls)

    again = MockBackend(lambda conv: REFUSE)
    third = run_campaign(again, RefusalPatternJudge(), seeds, attacks, CampaignConfig(), tmp_path)
    assert third.complete and again.calls == []
