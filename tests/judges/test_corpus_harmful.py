"""The hand-written harmful half of the judge corpus: schema, vocabularies and a split by prompt."""

import json
import re
from collections import Counter
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
    "terse_refusal": "full_refusal",
    "apologetic_refusal": "full_refusal",
    "moralising_refusal": "full_refusal",
    "inability_statement": "full_refusal",
    "deflection": "full_refusal",
    "warn_then_comply": "partial_refusal",
    "comply_with_disclaimer": "full_compliance",
    "plain_compliance": "full_compliance",
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
}
KINDS = {"direct", "fiction", "research", "school", "obfuscated", "multi_sentence"}


def _rows() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(CORPUS.glob("harmful_*.jsonl")):
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            row = json.loads(line)
            row["_where"] = f"{path.name}:{line_no}"
            rows.append(row)
    return rows


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    found = _rows()
    assert found, f"no harmful_*.jsonl under {CORPUS}"
    return found


def test_every_row_has_exactly_the_schema(rows: list[dict[str, str]]) -> None:
    for row in rows:
        where = row.pop("_where")
        assert set(row) == FIELDS, where
        row["_where"] = where
        assert all(isinstance(row[f], str) and row[f].strip() for f in FIELDS), where


def test_vocabularies_and_labels_follow_the_style(rows: list[dict[str, str]]) -> None:
    for row in rows:
        where = row["_where"]
        assert row["style"] in LABEL_OF_STYLE, where
        assert row["label"] == LABEL_OF_STYLE[row["style"]], where
        assert row["prompt_label"] == "harmful", where
        assert row["category"] in CATEGORIES, where
        assert row["kind"] in KINDS, where
        assert row["split"] in {"train", "test"}, where
        assert row["source"] == "written", where


def test_ids_are_unique_and_name_their_prompt(rows: list[dict[str, str]]) -> None:
    ids = Counter(row["id"] for row in rows)
    assert [i for i, n in ids.items() if n > 1] == []
    for row in rows:
        match = re.fullmatch(r"(hc-([a-z_]+)-\d{3})-\d+", row["id"])
        assert match is not None, row["_where"]
        assert match.group(1) == row["prompt_id"], row["_where"]
        assert match.group(2) == row["category"], row["_where"]


def test_split_is_by_prompt(rows: list[dict[str, str]]) -> None:
    per_prompt_id: dict[str, set[tuple[str, str, str, str]]] = {}
    per_text: dict[str, set[str]] = {}
    for row in rows:
        key = (row["prompt"], row["split"], row["category"], row["kind"])
        per_prompt_id.setdefault(row["prompt_id"], set()).add(key)
        per_text.setdefault(row["prompt"].strip().lower(), set()).add(row["split"])
    assert [p for p, keys in per_prompt_id.items() if len(keys) > 1] == []
    assert [t for t, splits in per_text.items() if len(splits) > 1] == []
    test_share = sum(next(iter(k))[1] == "test" for k in per_prompt_id.values()) / len(per_prompt_id)
    assert 0.2 <= test_share <= 0.3


def test_prompts_are_new_not_the_suite_prompts(rows: list[dict[str, str]]) -> None:
    suite = RESOURCES / "suites" / "default.jsonl"
    suite_prompts = {
        json.loads(line)["prompt"].strip().lower()
        for line in suite.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }
    reused = sorted({row["prompt"] for row in rows if row["prompt"].strip().lower() in suite_prompts})
    assert reused == []


def test_coverage_of_styles_categories_and_both_splits(rows: list[dict[str, str]]) -> None:
    assert {row["category"] for row in rows} == CATEGORIES
    styles = Counter(row["style"] for row in rows)
    assert set(styles) == set(LABEL_OF_STYLE)
    for split in ("train", "test"):
        assert {row["style"] for row in rows if row["split"] == split} == set(LABEL_OF_STYLE)
