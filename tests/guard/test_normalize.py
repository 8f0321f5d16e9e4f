# ruff: noqa: RUF001
"""Normalisation: zero-width joiners no longer hide words, and `clean` is idempotent (property-based)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignkit.guard import Guard, clean
from alignkit.guard.config import default_config
from alignkit.types import user

ZWJ = "\u200d"


def squared(phrase: str, joiner: str = ZWJ) -> str:
    """`phrase` in negative-squared letters (which fold to ASCII), the letters of each word joined by `joiner`."""
    return " ".join(
        joiner.join(chr(0x1F170 + ord(c) - ord("a")) if c.isalpha() else c for c in word) for word in phrase.split()
    )


def default_phrases() -> list[str]:
    phrases = default_config().phrases.phrases
    return [p for items in phrases.values() for p in items if all(c.isalpha() or c == " " for c in p)]


def test_joiners_do_not_hide_a_phrase() -> None:
    cfg = default_config()
    cfg.topic.enabled = False
    cfg.classifier.enabled = False
    guard = Guard(cfg)
    missed = [p for p in default_phrases() if guard.screen_input([user(squared(p.lower()))]).blocked is None]
    assert missed == []


def test_joiners_inside_emoji_are_kept() -> None:
    family = "👨\u200d👩\u200d👧"
    assert clean(family) == family
    assert clean("🅱" + ZWJ + "🅾" + ZWJ + "🅼" + ZWJ + "🅱") == "🅱🅾🅼🅱"
    assert clean("a" + ZWJ + "b") == "ab"


def test_clean_is_idempotent_on_a_known_case() -> None:
    # A joiner kept because its neighbour was another invisible character, which the same pass removed.
    text = "a\u200b\u200d👨"
    assert clean(clean(text)) == clean(text)


TRICKY = st.sampled_from(
    ["\u200d", "\u200b", "\u200c", "\u2060", "\ufeff", "\u00ad", "\u0301", "\u2028", "\ufe0f", "\U000e0041",
     "👨", "🅱", "é", "ﬁ", "①", "Ａ", "\u202e", "\u0627", "\u3164", "\uffa0", "\u1160", "ﷺ", " ", "a", "1"]
)  # fmt: skip


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.lists(st.one_of(TRICKY, st.characters(codec="utf-8")), max_size=24).map("".join))
def test_clean_is_idempotent(text: str) -> None:
    once = clean(text)
    assert clean(once) == once


@pytest.mark.parametrize("text", ["plain ascii", "ﬁne café", "👩\u200d💻 at work"])
def test_clean_keeps_ordinary_text(text: str) -> None:
    assert clean(text) == clean(clean(text))


def test_base_imports_decode_views_from_normalize_without_a_cycle() -> None:
    import ast
    import inspect

    import alignkit.guard.base as base
    import alignkit.guard.rails.obfuscation as obfuscation
    from alignkit.guard import normalize

    tree = ast.parse(inspect.getsource(base))
    deferred = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)
                if isinstance(n, ast.ImportFrom)]  # fmt: skip
    assert deferred == []
    assert base.decode_views is normalize.decode_views is obfuscation.decode_views  # type: ignore[attr-defined]
    assert "alignkit.guard" not in " ".join(
        n.module or "" for n in ast.walk(ast.parse(inspect.getsource(normalize))) if isinstance(n, ast.ImportFrom)
    )
