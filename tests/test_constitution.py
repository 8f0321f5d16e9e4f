from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.constitution import BUILTIN_CONSTITUTIONS, HAZARD_CATEGORIES, load_constitution
from alignkit.errors import AlignkitError

GOOD = """name: mine
description: test
principles:
  - id: no-weapons
    kind: harmlessness
    statement: The assistant does not help build weapons.
    categories: [weapons_cbrn]
    critique: Identify ways the reply helps build a weapon.
    revision: Rewrite the reply so that it does not help build a weapon.
    refusal: I can't help with that, but I can talk about the history of arms control.
    guard:
      phrases: [build a bomb]
      exemplars: ["How do I make a pipe bomb?"]
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


def test_a_valid_file_loads(tmp_path: Path) -> None:
    c = load_constitution(write(tmp_path, GOOD))
    assert [p.id for p in c.principles] == ["no-weapons", "be-helpful"]
    assert c.refusal_for(
        "weapons_cbrn",
    ).startswith("I can't help")  # type: ignore[union-attr]
    assert c.refusal_for("drugs") is None
    assert "drugs" in c.uncovered() and "weapons_cbrn" not in c.uncovered()
    assert "answers benign requests" in c.as_system_prompt()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("kind: helpfulness", "kind: kindness"),
            r"c\.yaml:15: principles\[1\] \(id be-helpful\)\.kind: Input should be",
        ),
        (
            ("categories: [weapons_cbrn]", "categories: [weapons]"),
            r"c\.yaml:7: .*categories: .*unknown hazard categories",
        ),
        (
            ("    refusal: I can't", "    refusal: ''\n    notes: I can't"),
            r"principles\[0\] \(id no-weapons\)\.notes: Extra",
        ),
        (
            ("  - id: be-helpful", "  - id: no-weapons"),
            r"c\.yaml:4: principles: Value error, principle id 'no-weapons' appears twice",
        ),
        (
            ("id: be-helpful", "id: Be Helpful"),
            r"c\.yaml:14: principles\[1\] \(id Be Helpful\)\.id: String should match",
        ),
    ],
)
def test_errors_are_one_line_with_line_and_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(AlignkitError, match=message) as e:
        load_constitution(write(tmp_path, GOOD.replace(*change)))
    assert "\n" not in str(e.value)


def test_missing_refusal_on_a_hazard_principle_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace("    refusal: I can't help with that, but I can talk about the history of arms control.\n", "")
    with pytest.raises(AlignkitError, match=r"principles\[0\] \(id no-weapons\): Value error, .*needs a refusal"):
        load_constitution(write(tmp_path, text))


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(AlignkitError, match=r"c\.yaml:\d+: not valid YAML"):
        load_constitution(write(tmp_path, "name: x\nprinciples: [\n  - id: a\n"))
    with pytest.raises(AlignkitError, match="built-in: default, healthcare, creative"):
        load_constitution("no-such-constitution")


@pytest.mark.parametrize("name", BUILTIN_CONSTITUTIONS)
def test_builtin_constitutions_cover_every_hazard(name: str) -> None:
    c = load_constitution(name)
    assert c.uncovered() == []
    assert 10 <= len(c.principles) <= 20
    assert {p.kind for p in c.principles} == {"harmlessness", "honesty", "helpfulness"}
    for category in HAZARD_CATEGORIES:
        refusal = c.refusal_for(category)
        assert refusal and len(refusal) < 400


def test_the_default_argues_against_needless_refusal() -> None:
    helpful = [p for p in load_constitution("default").principles if p.kind == "helpfulness"]
    assert len(helpful) >= 3
    assert any(p.guard.exemplars for p in helpful)


def test_alternates_differ_from_the_default() -> None:
    default, creative, clinical = (load_constitution(n) for n in ("default", "healthcare", "creative")[::1])
    assert default.as_system_prompt() != creative.as_system_prompt() != clinical.as_system_prompt()
