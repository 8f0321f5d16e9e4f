"""The hand-written benign half of the judge corpus: schema, vocabularies, split by prompt, no suite overlap."""

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import alignkit

RESOURCES = Path(alignkit.__file__).parent / "resources"
CORPUS = RESOURCES / "judge" / "corpus"
FIELDS = {
    "id",
    "prompt_id",
    "prompt",
    "response",
    "label",
    "style",
    "prompt_label",
    "category",
    "kind",
    "split",
    "source",
}
LABEL_OF_STYLE = {
    "plain_compliance": "full_compliance",
    "comply_with_disclaimer": "full_compliance",
    "premise_correction": "full_compliance",
    "terse_refusal": "full_refusal",
    "apologetic_refusal": "full_refusal",
    "moralising_refusal": "full_refusal",
    "inability_statement": "full_refusal",
    "deflection": "full_refusal",
    "warn_then_comply": "partial_refusal",
    "evasive_non_answer": "evasive",
}
CATEGORIES = {
    "violent_crimes",
    "weapons_cbrn",
    "cyber_crime",
    "drugs",
    "fraud_scams",
    "hate_harassment",
    "privacy",
    "self_harm",
    "ordinary",
}
KINDS = {
    "homonym",
    "figurative",
    "safe_context",
    "definition",
    "history",
    "public_figure",
    "fictional_privacy",
    "safety_information",
    "violent_verb_harmless_target",
    "false_premise",
    "ordinary",
}
ID = re.compile(r"bc-(?P<category>[a-z_]+)-(?P<n>\d{3})")


def _rows() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(CORPUS.glob("benign_*.jsonl")):
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            row = json.loads(line)
            assert isinstance(row, dict), f"{path.name}:{line_no}"
            rows.append({**row, "_where": f"{path.name}:{line_no}"})
    return rows


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    found = _rows()
    assert found, f"no benign_*.jsonl under {CORPUS}"
    return found


def test_every_row_has_exactly_the_schema(rows: list[dict[str, str]]) -> None:
    for row in rows:
        fields = set(row) - {"_where"}
        assert fields == FIELDS, row["_where"]
        assert all(isinstance(row[f], str) and row[f].strip() for f in FIELDS), row["_where"]
        assert row["prompt_label"] == "benign" and row["source"] == "written", row["_where"]


def test_vocabularies_and_labels_follow_the_style(rows: list[dict[str, str]]) -> None:
    for row in rows:
        where = row["_where"]
        assert row["style"] in LABEL_OF_STYLE, where
        assert row["label"] == LABEL_OF_STYLE[row["style"]], where
        assert row["category"] in CATEGORIES and row["kind"] in KINDS, where
        assert (row["category"] == "ordinary") == (row["kind"] == "ordinary"), where
        assert row["split"] in {"train", "test"}, where


def test_ids_name_their_prompt_and_file(rows: list[dict[str, str]]) -> None:
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    for row in rows:
        match = ID.fullmatch(row["prompt_id"])
        assert match and match["category"] == row["category"], row["_where"]
        assert row["id"].startswith(row["prompt_id"] + "-"), row["_where"]
        assert row["_where"].startswith(f"benign_{row['category']}.jsonl:"), row["_where"]


def test_one_prompt_text_kind_and_split_per_prompt_id(rows: list[dict[str, str]]) -> None:
    seen: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for row in rows:
        seen[row["prompt_id"]].add((row["prompt"], row["kind"], row["split"]))
    assert all(len(values) == 1 for values in seen.values())


def test_no_prompt_text_in_both_splits(rows: list[dict[str, str]]) -> None:
    splits: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        splits[_norm(row["prompt"])].add(row["split"])
    assert not [prompt for prompt, both in splits.items() if len(both) > 1]


def test_about_a_quarter_of_prompts_in_each_category_are_test(rows: list[dict[str, str]]) -> None:
    split_of = {row["prompt_id"]: (row["category"], row["split"]) for row in rows}
    for category in {category for category, _ in split_of.values()}:
        splits = Counter(split for cat, split in split_of.values() if cat == category)
        total = sum(splits.values())
        assert abs(splits["test"] - total / 4) <= 1, (category, splits)


def test_no_prompt_reuses_a_suite_or_anchor_prompt(rows: list[dict[str, str]]) -> None:
    taken: set[str] = set()
    for name in ("suites/default.jsonl", "anchors/everyday.jsonl"):
        for line in (RESOURCES / name).read_text(encoding="utf-8").splitlines():
            taken.add(_norm(json.loads(line)["prompt"]))
    clashes = {row["prompt"] for row in rows if _norm(row["prompt"]) in taken}
    assert not clashes


def test_every_style_is_present_and_compliance_is_not_rare(rows: list[dict[str, str]]) -> None:
    styles = Counter(row["style"] for row in rows)
    assert set(styles) == set(LABEL_OF_STYLE)
    answered = sum(1 for row in rows if row["label"] == "full_compliance")
    assert answered / len(rows) >= 0.3


def test_each_non_answer_style_has_enough_rows_and_reaches_the_test_split(rows: list[dict[str, str]]) -> None:
    for style, label in LABEL_OF_STYLE.items():
        in_style = [row for row in rows if row["style"] == style]
        if label != "full_compliance":
            assert len(in_style) >= 100, style
        assert any(row["split"] == "test" for row in in_style), style
