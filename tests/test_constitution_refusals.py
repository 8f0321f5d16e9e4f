"""Refusals phrased in many ways: the `refusals` field of a principle, its validation, and the seeded
picker on-policy curation draws from."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from alignkit.constitution import BUILTIN_CONSTITUTIONS, HAZARD_CATEGORIES, Constitution, load_constitution
from alignkit.errors import AlignkitError
from alignkit.refusals import FALLBACK_OPENINGS, pick_refusal, refusal_for, refusal_variants

GOOD = """name: mine
principles:
  - id: no-weapons
    kind: harmlessness
    statement: The assistant does not help build weapons.
    categories: [weapons_cbrn]
    critique: Identify ways the reply helps build a weapon.
    revision: Rewrite the reply so that it does not help build a weapon.
    refusal: I can't help with that, but I can talk about the history of arms control.
    refusals:
      - "No. Weapon-making details are off-limits for me."
      - "Sorry, that's not something I'll help build."
  - id: be-helpful
    kind: helpfulness
    statement: The assistant answers benign requests fully.
    critique: Identify ways the reply refused or hedged a harmless request.
    revision: Rewrite the reply to answer the request directly.
"""


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


def first_word(text: str) -> str:
    return re.sub(r"\W+$", "", text.split()[0].lower())


@pytest.mark.parametrize("name", BUILTIN_CONSTITUTIONS)
def test_every_harmlessness_principle_refuses_in_many_ways(name: str) -> None:
    for p in load_constitution(name).principles:
        if p.kind != "harmlessness":
            continue
        assert len(p.refusals) >= 6, p.id
        openings = Counter(first_word(r) for r in p.refusals)
        assert len(openings) >= 4, (p.id, openings)
        assert sum(r.startswith("I can't help with") for r in p.refusals) <= 1, p.id
        assert p.refusal not in p.refusals and all(len(r) < 400 for r in p.refusals), p.id


def test_variants_are_the_governing_principles_refusal_and_its_phrasings() -> None:
    c = load_constitution("default")
    weapons = next(p for p in c.principles if p.id == "no-weapons-of-mass-harm")
    assert refusal_variants(c, "weapons_cbrn") == [weapons.refusal, *weapons.refusals]
    for category in HAZARD_CATEGORIES:
        assert len(refusal_variants(c, category)) == 7


def test_the_picker_is_seeded_and_draws_every_phrasing() -> None:
    c = load_constitution("default")
    picks = [pick_refusal(c, "drugs", random.Random(f"seed-{i}")) for i in range(200)]
    assert picks == [pick_refusal(c, "drugs", random.Random(f"seed-{i}")) for i in range(200)]
    assert set(picks) == set(refusal_variants(c, "drugs"))
    # 200 draws of 7: every phrasing well away from zero, none near all
    assert max(Counter(picks).values()) < 60


def test_uncovered_categories_fall_back_to_the_table_with_several_openings(tmp_path: Path) -> None:
    c = load_constitution(write(tmp_path, GOOD))
    variants = refusal_variants(c, "drugs")
    assert variants[0] == refusal_for("drugs")
    assert len(variants) == len(FALLBACK_OPENINGS) == len({first_word(v) for v in variants})
    assert refusal_variants(c, None)[0] == refusal_for("")


def test_a_principle_without_phrasings_gives_its_one_refusal() -> None:
    c = Constitution.model_validate(
        {
            "name": "one",
            "principles": [
                {
                    "id": "no-drugs",
                    "kind": "harmlessness",
                    "statement": "Do not help make drugs.",
                    "categories": ["drugs"],
                    "critique": "Does the reply help make drugs?",
                    "revision": "Rewrite it so it does not.",
                    "refusal": "REFUSE: not drugs.",
                }
            ],
        }
    )
    assert refusal_variants(c, "drugs") == ["REFUSE: not drugs."]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('"Sorry, that\'s not something I\'ll help build."', '"No. Weapon-making details are off-limits for me."'),
            r"c\.yaml:11: principles\[0\] \(id no-weapons\)\.refusals: Value error, the phrasing 'No\. Weapon",
        ),
        (
            ('"Sorry, that\'s not something I\'ll help build."', '"No."'),
            r"c\.yaml:12: principles\[0\] \(id no-weapons\)\.refusals\[1\]: String should have at least 10",
        ),
        (
            ("directly.\n", "directly.\n    refusals: [\"No, I won't answer that.\"]\n"),
            r"c\.yaml:13: principles\[1\] \(id be-helpful\): Value error, refusals belong to harmlessness",
        ),
    ],
)  # fmt: skip
def test_refusals_errors_name_file_line_and_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    assert change[0] in GOOD
    with pytest.raises(AlignkitError, match=message) as e:
        load_constitution(write(tmp_path, GOOD.replace(*change)))
    assert "\n" not in str(e.value)
