"""ReplayBackend: greedy replies on record answer again without the model; anything else reaches it."""

from __future__ import annotations

import json
from pathlib import Path

from alignkit.backends.mock import MockBackend
from alignkit.backends.replay import ReplayBackend
from alignkit.types import GenerationParams, user

GREEDY = GenerationParams(max_new_tokens=8)
CONVS = [[user("one")], [user("two")], [user("three")]]


def test_recorded_replies_answer_again_in_order_and_through_the_callback(tmp_path: Path) -> None:
    path = tmp_path / "generations.jsonl"
    model = MockBackend({"one": "first", "two": "second", "three": "third"})
    first = ReplayBackend(model, path, fingerprint="w1", record=True).generate(CONVS[:2], GREEDY)
    assert [c.text for c in first] == ["first", "second"] and len(model.calls) == 2
    assert len(path.read_text().splitlines()) == 2

    again = ReplayBackend(model, path, fingerprint="w1")
    seen: dict[int, str] = {}
    out = again.generate(CONVS, GREEDY, lambda i, c: seen.__setitem__(i, c.text))
    assert [c.text for c in out] == ["first", "second", "third"]
    assert seen == {0: "first", 1: "second", 2: "third"}
    assert again.replayed == 2 and model.calls[2:] == [CONVS[2]]  # only the new conversation reached the model
    assert len(path.read_text().splitlines()) == 2  # without `record` nothing is added


def test_other_weights_settings_or_sampling_reach_the_model(tmp_path: Path) -> None:
    path = tmp_path / "generations.jsonl"
    model = MockBackend(("a",))
    ReplayBackend(model, path, fingerprint="w1", record=True).generate(CONVS, GREEDY)
    for fingerprint, params in [
        ("w2", GREEDY),
        ("w1", GenerationParams(max_new_tokens=9)),
        ("w1", GenerationParams(max_new_tokens=8, temperature=0.7, seed=1)),
    ]:
        before = len(model.calls)
        replay = ReplayBackend(model, path, fingerprint=fingerprint, record=True)
        replay.generate(CONVS, params)
        assert replay.replayed == 0 and len(model.calls) == before + 3
    # the sampled replies were not recorded: 3 greedy + 3 (w2) + 3 (9 tokens)
    assert len(path.read_text().splitlines()) == 9


def test_errors_are_not_kept_and_a_torn_line_is_generated_again(tmp_path: Path) -> None:
    path = tmp_path / "generations.jsonl"
    model = MockBackend({"one": RuntimeError("upstream down"), "two": "second", "three": "third"})
    out = ReplayBackend(model, path, fingerprint="w", record=True).generate(CONVS, GREEDY)
    assert out[0].error == "upstream down"
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["completion"]["error"] is None for x in lines)
    path.write_text(lines[0] + "\n" + lines[1][:20])  # killed while writing the last line

    model.script = {"one": "first", "two": "second", "three": "third"}
    replay = ReplayBackend(model, path, fingerprint="w", record=True)
    assert [c.text for c in replay.generate(CONVS, GREEDY)] == ["first", "second", "third"]
    assert replay.replayed == 1  # "two" was whole; "one" had failed and "three" was torn
    final = ReplayBackend(model, path, fingerprint="w")
    final.generate(CONVS, GREEDY)
    assert final.replayed == 3
