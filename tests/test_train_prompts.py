"""The hand-written training prompts under `resources/prompts/train/`: schema, balance, and no leak of the
held-out test split (or a copy of any other prompt alignkit ships) into what the model trains on."""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from alignkit.suites import load_suite, select_split

RESOURCES = Path(str(resources.files("alignkit") / "resources"))
TRAIN = RESOURCES / "prompts" / "train"
HAZARDS = {
    "violent_crimes",
    "weapons_cbrn",
    "cyber_crime",
    "drugs",
    "fraud_scams",
    "hate_harassment",
    "privacy",
    "self_harm",
}
HARMFUL_KINDS = {
    "direct",
    "fiction",
    "research",
    "school",
    "professional",
    "hypothetical",
    "obfuscated",
    "multi_turn_context",
}
BENIGN_KINDS = {
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
    "medical_legitimate",
    "security_defensive",
}
FIELDS = {"id", "prompt", "label", "category", "kind", "split"}
# The same stop words as the anchors' check in tests/test_pipeline.py, so both sets are held to one measure.
STOP = set(
    ["a", "the", "i", "my", "to", "for", "of", "and", "how", "do", "what", "in", "is", "me", "on", "with", "an", "can"]
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower())) - STOP


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _rows() -> list[tuple[str, int, dict[str, object]]]:
    rows = []
    for path in sorted(TRAIN.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            rows.append((path.name, n, json.loads(line)))
    return rows


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, int, dict[str, object]]]:
    found = _rows()
    assert found, f"no prompt files under {TRAIN}"
    return found


def test_every_row_follows_the_schema_and_its_vocabularies(rows: list[tuple[str, int, dict[str, object]]]) -> None:
    for name, n, row in rows:
        where = f"{name}:{n}"
        assert set(row) == FIELDS, where
        assert row["split"] == "train", where
        text, label, category, kind = row["prompt"], row["label"], row["category"], row["kind"]
        assert isinstance(text, str) and text.strip() == text and len(text) >= 10, where
        if category == "ordinary":
            assert (label, kind) == ("benign", "ordinary"), where
            initial = "o"
        else:
            assert category in HAZARDS, where
            assert kind in (HARMFUL_KINDS if label == "harmful" else BENIGN_KINDS), where
            assert label in ("harmful", "benign"), where
            initial = str(label)[0]
        assert re.fullmatch(rf"tp-{initial}-{category}-\d{{4}}", str(row["id"])), where


def test_ids_and_prompt_texts_are_unique(rows: list[tuple[str, int, dict[str, object]]]) -> None:
    ids = Counter(str(r["id"]) for _, _, r in rows)
    texts = Counter(_norm(str(r["prompt"])) for _, _, r in rows)
    assert [i for i, c in ids.items() if c > 1] == []
    assert [t for t, c in texts.items() if c > 1] == []


def test_labels_categories_and_kinds_are_broad(rows: list[tuple[str, int, dict[str, object]]]) -> None:
    labels = Counter("ordinary" if r["category"] == "ordinary" else str(r["label"]) for _, _, r in rows)
    assert labels["harmful"] >= 900 and labels["benign"] >= 800 and labels["ordinary"] >= 450, labels
    per = Counter((str(r["label"]), str(r["category"])) for _, _, r in rows)
    for category in HAZARDS:
        assert per["harmful", category] >= 100 and per["benign", category] >= 90, (category, per)
    harmful_kinds = Counter(str(r["kind"]) for _, _, r in rows if r["label"] == "harmful")
    assert set(harmful_kinds) == HARMFUL_KINDS and min(harmful_kinds.values()) >= 60, harmful_kinds
    benign_kinds = Counter(str(r["kind"]) for _, _, r in rows if r["label"] == "benign" and r["kind"] != "ordinary")
    assert set(benign_kinds) == BENIGN_KINDS and min(benign_kinds.values()) >= 15, benign_kinds


def test_no_prompt_restates_a_held_out_test_prompt(rows: list[tuple[str, int, dict[str, object]]]) -> None:
    """Word overlap (Jaccard of content words) below 0.5 against every test-split prompt catches copies and
    close rewrites; the anchors' check in tests/test_pipeline.py uses the same measure."""
    test = [_words(p.text or "") for p in select_split(load_suite("default"), "test")]
    assert len(test) > 100
    leaks = []
    for name, n, row in rows:
        mine = _words(str(row["prompt"]))
        worst = max(len(mine & t) / len(mine | t) for t in test)
        if worst >= 0.5:
            leaks.append((f"{name}:{n}", round(worst, 2), row["prompt"]))
    assert leaks == []


def test_no_prompt_copies_another_shipped_prompt(rows: list[tuple[str, int, dict[str, object]]]) -> None:
    sources = [
        RESOURCES / "suites" / "default.jsonl",
        RESOURCES / "anchors" / "everyday.jsonl",
        *sorted((RESOURCES / "helpfulness").glob("*.jsonl")),
        *sorted((RESOURCES / "judge" / "corpus").glob("*.jsonl")),
    ]
    shipped: set[str] = set()
    for path in sources:
        for line in path.read_text(encoding="utf-8").splitlines():
            shipped.add(_norm(str(json.loads(line)["prompt"])))
    assert len(shipped) > 1000
    copies = [f"{name}:{n}" for name, n, row in rows if _norm(str(row["prompt"])) in shipped]
    assert copies == []


def test_alignkit_loads_every_file_as_a_labelled_suite() -> None:
    for path in sorted(TRAIN.glob("*.jsonl")):
        prompts = load_suite(str(path))
        assert prompts and all(p.label in ("harmful", "benign") and p.category for p in prompts)
        assert all(p.extra["split"] == "train" and p.extra["kind"] for p in prompts)
