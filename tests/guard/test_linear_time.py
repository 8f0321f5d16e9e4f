"""Every model-free rail runs in time linear in its input: timed on doubling inputs built to make
backtracking regexes go quadratic, and bounded outright at 100k characters."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from alignkit.guard import RailContext, clean
from alignkit.guard.base import Rail, Side
from alignkit.guard.config import default_config
from alignkit.guard.engine import build_rails
from alignkit.guard.rails import PIIRail

# Repeated units that stress one family of patterns each: obfuscated e-mail, spaced and joined letters,
# digit runs, base64/hex/escapes, role markers, credentials, leetspeak, joiners.
UNITS = (
    "b dot ", "x at ", "[at] ", "(dot) ", "a@", "a.", "a-", "1-", "1 ", "a ", "12 ", "1234 ", "1.1.1.", "a:", ":",
    "0x41 ", "\\x41", "%41", "&#65;", "01000001 ", "AAAA", "a1", "sk-", "password=", "aws ", "e-mail ",
    "system: ", "<|", "ignore ", "k i l l ", "-----BEGIN PRIVATE KEY----- ", "SSN 123", "GB82 ", "O1 ", "ab\u200d",
    # Many valid matches: every overlap test against every earlier match would be quadratic.
    "ab@cd.com ", "1.1.1.1 ", "4111 1111 1111 1111 ", "123-45-6789 ", "+1 303 555 0185 ", "AKIAIOSFODNN7EXAMPLE ",
)  # fmt: skip


def _rails() -> list[tuple[Side, Rail]]:
    cfg = default_config()
    cfg.topic.enabled = False
    cfg.classifier.enabled = False
    return [(side, r) for side in ("input", "output") for r in build_rails(cfg, side)]  # type: ignore[misc]


def _seconds(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _screen(rails: list[tuple[Side, Rail]], text: str) -> None:
    c = clean(text)
    for side in ("input", "output"):
        ctx = RailContext.of(c, raw=text, side=side)
        for s, rail in rails:
            if s == side:
                rail.check(c, ctx)


def test_the_obfuscated_email_detector_is_linear() -> None:
    # Was quadratic: 0.24 s at 6k characters, 0.91 s at 12k, 3.6 s at 24k.
    rail = PIIRail("input")
    times = []
    for n in (25_000, 50_000, 100_000):
        text = "x at " + "b dot " * (n // 6)
        ctx = RailContext.of(text)
        times.append(_seconds(lambda text=text, ctx=ctx: rail.check(text, ctx)))  # type: ignore[misc]
    assert times[2] < 1.0, times
    # Linear growth doubles the time per doubling; quadratic quadruples it. Allow 3x per doubling for noise.
    assert times[2] <= 9 * times[0] + 0.05, times


@pytest.mark.parametrize("unit", UNITS)
def test_every_rail_is_linear_on_adversarial_input(unit: str) -> None:
    rails = _rails()
    small, large = ("x at " + unit * (n // len(unit)) for n in (25_000, 100_000))
    # Best of three: one descheduled run (another job on the cores) made a linear rail look 9x.
    t_small = _seconds(lambda: _screen(rails, small))
    t_large = _seconds(lambda: _screen(rails, large))
    assert t_large < 4.0, (unit, t_small, t_large)
    # Four times the input: linear is 4x the time, quadratic 16x.
    assert t_large <= 8 * t_small + 0.1, (unit, t_small, t_large)
