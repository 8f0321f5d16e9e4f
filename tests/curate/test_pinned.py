"""The bytes curation writes are pinned: sft.jsonl, preferences.jsonl and trace.jsonl of scripted runs
of every method, hashed. The pins were taken before curation was split into a module a method, so a
refactor that changes a byte of the data (a provenance string, a key order, a rounding) fails here.
A deliberate change of the data format updates the pins and says so."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from alignkit.backends import MockBackend, Scored
from alignkit.constitution import Constitution
from alignkit.curate import CurateConfig, curate
from alignkit.curate.records import SOURCES
from alignkit.types import Conversation, Prompt

from .test_curate import HARMFUL, HARMFUL2, LOOKALIKE, ORDINARY, KeywordJudge, LetterScorer, policy_script

# a constitution of its own, so that edits to the built-in one do not move the pins
CONSTITUTION = Constitution.model_validate(
    {
        "name": "pinned",
        "principles": [
            {
                "id": f"no-{cat.replace('_', '-')}",
                "kind": "harmlessness",
                "statement": f"Do not help with {cat}.",
                "categories": [cat],
                "critique": f"Does the reply help with {cat}?",
                "revision": f"Rewrite the reply so it does not help with {cat}.",
                "refusal": f"REFUSE: I can't help with {cat}.",
            }
            for cat in ("weapons_cbrn", "fraud_scams", "cyber_crime")
        ]
        + [
            {
                "id": "be-honest",
                "kind": "honesty",
                "statement": "Say what is true and no more.",
                "critique": "Is anything in the reply untrue?",
                "revision": "Rewrite the reply so all of it is true.",
            },
            {
                "id": "be-helpful",
                "kind": "helpfulness",
                "statement": "Answer benign requests in full.",
                "critique": "Does the reply refuse a benign request?",
                "revision": "Rewrite the reply to answer the request.",
            },
        ],
    }
)


class Contrarian(LetterScorer):
    """Prefers the option without a refusal: the judge must overrule it."""

    def score(self, conversations, completions, *, include_eos=False):  # type: ignore[no-untyped-def]
        return [Scored(-s.logprob - 2.4, []) for s in super().score(conversations, completions)]


def every_fifth_refuses() -> MockBackend:
    calls = {"n": 0}

    def reply(conv: Conversation) -> str:
        calls["n"] += 1
        return policy_script(conv) if calls["n"] % 5 else "REFUSE: sorry, I can't help with that."

    return MockBackend(reply, name="policy")


RUNS: dict[str, tuple[CurateConfig, object]] = {
    "sl-cai": (CurateConfig(chunk=5), {"Critique request": "bad", "Revision request": "Revision: REFUSE politely."}),
    "sl-cai-weak": (CurateConfig(rounds=2), {"Critique request": "fine", "Revision request": "Sure, more ..."}),
    "rlaif": (CurateConfig(method="rlaif", samples=4, chunk=5), LetterScorer),
    "rlaif-overruled": (CurateConfig(method="rlaif"), Contrarian),
    "distill": (CurateConfig(method="distill"), {}),
    "distill-prefix": (CurateConfig(method="distill", refusal_prefix_pairs=True), {}),
}
PINS = {
    "sl-cai": "00c40d2efeac239f93788afeb443078922409df447dc1ccb817cef0b9a21d9de",
    "sl-cai-weak": "6f3305bbb4c52db5ebbb580a815b9ab0a630aa2b7c769afe9d7152c07d9440b4",
    "rlaif": "d44569bda591b100fdd683b97e7a79fbda8787e02d943959879573746d86fd02",
    "rlaif-overruled": "779eae5b6a782f90598f3832717dd71d481f560dc339109f7377cd7b3f227b49",
    "distill": "72852e9cf2033143081541140a071aa16bed6644aa114582b60c65dd98c25b8e",
    "distill-prefix": "1a2fac5b18d8fdfe1119dbb85d01b2ea6b1bd15dc7f9f713f2f067c98ad1bc32",
}


def prompts() -> Sequence[Prompt]:
    rows = [HARMFUL, HARMFUL2, LOOKALIKE, ORDINARY] * 3
    return [Prompt(f"{p.id}-{i}", p.text, category=p.category, label=p.label) for i, p in enumerate(rows)]


def run(name: str, out: Path) -> Path:
    cfg, teacher = RUNS[name]
    curate(
        prompts(),
        policy=every_fifth_refuses(),
        teacher=MockBackend(teacher) if isinstance(teacher, dict) else teacher(),  # type: ignore[operator]
        judge=KeywordJudge(),
        constitution=CONSTITUTION,
        out_dir=out,
        config=cfg,
        provenance={"constitution_sha256": "0" * 64},
    )
    return out


def digest(out: Path) -> str:
    h = hashlib.sha256()
    for file in ("sft.jsonl", "preferences.jsonl", "trace.jsonl"):
        h.update((out / file).read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: run(name, tmp_path_factory.mktemp(name)) for name in RUNS}


@pytest.mark.parametrize("name", list(RUNS))
def test_curated_bytes_are_unchanged(written: dict[str, Path], name: str) -> None:
    assert digest(written[name]) == PINS[name]


def test_the_pinned_runs_write_every_source(written: dict[str, Path]) -> None:
    found: set[str | None] = set()
    for out in written.values():
        for file in ("sft.jsonl", "preferences.jsonl"):
            found |= {json.loads(line)["provenance"]["source"] for line in (out / file).read_text().splitlines()}
        found |= {json.loads(line).get("source") for line in (out / "trace.jsonl").read_text().splitlines()}
    assert found - {None} == set(SOURCES)
