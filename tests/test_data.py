"""alignkit.data: loading every supported format, located one-line errors, writing, and resumable results."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alignkit.data import (
    JsonlAppender,
    load_preferences,
    load_prompts,
    load_sft,
    load_unpaired,
    preference_record,
    prompt_record,
    read_done,
    read_records,
    sft_record,
    text_id,
    unpaired_record,
    write_records,
)
from alignkit.errors import AlignkitError, DataError
from alignkit.types import Message, PreferencePair, Prompt, SFTExample, UnpairedExample

try:  # imported here, at collection, so that no single test pays for the import
    import datasets
except ImportError:  # pragma: no cover - datasets is a dev extra
    datasets = None

needs_datasets = pytest.mark.skipif(datasets is None, reason="needs `pip install datasets`")

SYS: Message = {"role": "system", "content": "Be brief."}


def u(text: str) -> Message:
    return {"role": "user", "content": text}


def a(text: str) -> Message:
    return {"role": "assistant", "content": text}


# ---- helpers that write real files the way users make them ------------------------------------------


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})
    return path


def write_as(tmp_path: Path, fmt: str, rows: list[dict[str, Any]], stem: str = "data") -> Path:
    """Write `rows` in `fmt` with the tools a user would use (not with alignkit's own writer)."""
    if fmt == "jsonl":
        return write_jsonl(tmp_path / f"{stem}.jsonl", rows)
    if fmt == "json":
        path = tmp_path / f"{stem}.json"
        path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
        return path
    if fmt == "csv":
        return write_csv(tmp_path / f"{stem}.csv", rows)
    if fmt == "parquet":
        path = tmp_path / f"{stem}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    assert fmt == "hf"
    assert datasets is not None
    path = tmp_path / stem
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


FORMATS = ["jsonl", "csv", "parquet", "json", pytest.param("hf", marks=needs_datasets)]


def out_path(tmp_path: Path, fmt: str, stem: str = "out") -> Path:
    return tmp_path / stem if fmt == "hf" else tmp_path / f"{stem}.{fmt}"


def error_of(fn: Callable[[Any], Any], path: Path | str) -> DataError:
    """The DataError that `fn(path)` raises, checked to be one line."""
    with pytest.raises(DataError) as info:
        fn(path)
    err = info.value
    assert isinstance(err, AlignkitError)
    assert "\n" not in str(err), f"error message is not one line: {str(err)!r}"
    return err


# ---- load_prompts: every format gives the same prompts -------------------------------------------------

TEXT_ROWS = [
    {
        "id": "p1",
        "prompt": "How do I bake bread?",
        "category": "cooking",
        "label": "benign",
        "source": "handwritten",
        "lang": "en",
    },
    {
        "id": "p2",
        "prompt": "How do I pick a lock?",
        "category": "crime",
        "label": "harmful",
        "source": "handwritten",
        "lang": "fr",
    },
]
TEXT_PROMPTS = [
    Prompt(
        id="p1",
        text="How do I bake bread?",
        category="cooking",
        label="benign",
        source="handwritten",
        extra={"lang": "en"},
    ),
    Prompt(
        id="p2",
        text="How do I pick a lock?",
        category="crime",
        label="harmful",
        source="handwritten",
        extra={"lang": "fr"},
    ),
]

CONV_ROWS = [
    {"id": "c1", "messages": [SYS, u("Write malware.")], "label": "harmful"},
    {"id": "c2", "messages": [u("Hi"), a("Hello!"), u("Tell me a joke.")], "label": "benign"},
]
CONV_PROMPTS = [
    Prompt(id="c1", messages=[SYS, u("Write malware.")], label="harmful"),
    Prompt(id="c2", messages=[u("Hi"), a("Hello!"), u("Tell me a joke.")], label="benign"),
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_prompts_text_from_every_format(tmp_path: Path, fmt: str) -> None:
    path = write_as(tmp_path, fmt, TEXT_ROWS)
    assert load_prompts(path) == TEXT_PROMPTS


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_prompts_conversations_from_every_format(tmp_path: Path, fmt: str) -> None:
    # In CSV the messages cell is JSON text; in Parquet and HF folders a list of structs.
    path = write_as(tmp_path, fmt, CONV_ROWS)
    assert load_prompts(path) == CONV_PROMPTS


def test_csv_messages_cell_is_json_text(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    cell = json.dumps([SYS, u('hello, "world"')])
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "messages"])
        w.writerow(["m1", cell])
    assert path.read_text(encoding="utf-8").count("\n") == 2
    assert load_prompts(path) == [Prompt(id="m1", messages=[SYS, u('hello, "world"')])]


def test_csv_text_that_only_looks_like_json_stays_text(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [{"id": "x", "prompt": "[INST] do the thing [/INST]"}])
    assert load_prompts(path) == [Prompt(id="x", text="[INST] do the thing [/INST]")]


def test_load_prompts_prompt_field_may_hold_messages(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "q", "prompt": [SYS, u("hi")]}])
    assert load_prompts(path) == [Prompt(id="q", messages=[SYS, u("hi")])]


def test_load_prompts_mixed_text_and_messages_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "plain"}, {"messages": [u("conv")]}])
    got = load_prompts(path)
    assert [(p.text, p.messages) for p in got] == [("plain", None), (None, [u("conv")])]


def test_load_prompts_mixed_text_and_messages_csv(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [{"id": "t", "prompt": "plain"}, {"id": "m", "messages": [u("conv")]}])
    assert load_prompts(path) == [Prompt(id="t", text="plain"), Prompt(id="m", messages=[u("conv")])]


def test_load_prompts_csv_with_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("prompt,id\nhello,1\n", encoding="utf-8-sig")
    assert load_prompts(path) == [Prompt(id="1", text="hello")]


@needs_datasets
def test_hf_dataset_dict_uses_train_split(tmp_path: Path) -> None:
    assert datasets is not None
    path = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"id": "a", "prompt": "x"}])}).save_to_disk(str(path))
    assert load_prompts(path) == [Prompt(id="a", text="x")]


@needs_datasets
def test_hf_dataset_dict_without_train_split(tmp_path: Path) -> None:
    assert datasets is not None
    path = tmp_path / "dd"
    datasets.DatasetDict({"test": datasets.Dataset.from_list([{"prompt": "x"}])}).save_to_disk(str(path))
    err = error_of(load_prompts, path)
    assert str(err) == f"{path}: dataset has splits ['test']; expected a 'train' split"


@needs_datasets
def test_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.mkdir()
    err = error_of(load_prompts, path)
    assert str(err) == f"{path}: not a Hugging Face dataset folder (save_to_disk)"
    assert err.line is None


# ---- prompt ids, labels, extra ---------------------------------------------------------------------------


def test_given_ids_are_kept_and_stringified(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "alpha", "prompt": "a"}, {"id": 7, "prompt": "b"}])
    assert [p.id for p in load_prompts(path)] == ["alpha", "7"]


def test_missing_ids_get_stable_hash_ids(tmp_path: Path) -> None:
    rows = [{"prompt": "first"}, {"prompt": "second"}, {"messages": [u("third")]}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    ids = [p.id for p in load_prompts(path)]
    assert ids == [p.id for p in load_prompts(path)]  # same across loads
    assert ids[0] == text_id("first") and ids[1] == text_id("second")
    assert len(set(ids)) == 3
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in ids)
    # The id depends on the content, not the position: reordering the file keeps each prompt's id.
    reordered = write_jsonl(tmp_path / "q.jsonl", list(reversed(rows)))
    assert [p.id for p in load_prompts(reordered)] == list(reversed(ids))


def test_duplicate_texts_without_ids_get_distinct_stable_ids(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "same"}, {"prompt": "other"}, {"prompt": "same"}])
    first = [p.id for p in load_prompts(path)]
    assert len(set(first)) == 3
    assert first[0] == text_id("same")
    assert first == [p.id for p in load_prompts(path)]


def test_repeated_explicit_id_is_located_error(tmp_path: Path) -> None:
    rows = [{"id": "x", "prompt": "a"}, {"id": "y", "prompt": "b"}, {"id": "x", "prompt": "c"}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    err = error_of(load_prompts, str(path))
    assert str(err) == f"{path}:3: 'id' 'x' repeats line 1"
    assert (err.path, err.line) == (str(path), 3)


@pytest.mark.parametrize("label", ["harmful", "benign"])
def test_valid_labels(tmp_path: Path, label: str) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x", "label": label}])
    assert load_prompts(path)[0].label == label


def test_empty_label_is_none(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x", "label": ""}, {"prompt": "y", "label": None}])
    assert [p.label for p in load_prompts(path)] == [None, None]


def test_bad_label_is_located_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x"}, {"prompt": "y", "label": "evil"}])
    err = error_of(load_prompts, str(path))
    assert str(err) == f"{path}:2: 'label' is 'evil', expected 'harmful' or 'benign'"


def test_unhashable_label_is_data_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x", "label": ["harmful"]}])
    err = error_of(load_prompts, path)
    assert str(err).startswith(f"{path}:1: 'label' is ")


def test_extra_fields_land_in_extra(tmp_path: Path) -> None:
    row = {"id": "e", "prompt": "x", "category": "c", "lang": "de", "meta": {"turns": 2}, "tags": ["a", "b"]}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    (p,) = load_prompts(path)
    assert p.category == "c"
    assert p.extra == {"lang": "de", "meta": {"turns": 2}, "tags": ["a", "b"]}


def test_prompt_missing_is_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "ok"}, {"id": "z", "text": "wrong key"}])
    assert str(error_of(load_prompts, str(path))) == f"{path}:2: 'prompt' is missing"


def test_prompt_conversation_ending_with_assistant_is_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"messages": [u("q"), a("reply")]}])
    assert str(error_of(load_prompts, str(path))) == f"{path}:1: the last message must not be the assistant's"


# ---- load_sft --------------------------------------------------------------------------------------------


def test_load_sft_prompt_completion_strings(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "2+2?", "completion": "4"}])
    assert load_sft(path) == [SFTExample(messages=[u("2+2?"), a("4")])]


def test_load_sft_prompt_completion_message_lists(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": [SYS, u("2+2?")], "completion": [a("4")]}])
    assert load_sft(path) == [SFTExample(messages=[SYS, u("2+2?"), a("4")])]


def test_load_sft_messages(tmp_path: Path) -> None:
    msgs = [SYS, u("hi"), a("hello"), u("bye"), a("goodbye")]
    path = write_jsonl(tmp_path / "s.jsonl", [{"messages": msgs}])
    assert load_sft(path) == [SFTExample(messages=msgs)]


def test_load_sft_last_message_must_be_assistant(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"messages": [u("hi"), a("hello")]}, {"messages": [u("hi")]}])
    err = error_of(load_sft, str(path))
    assert str(err) == f"{path}:2: the last message must be the assistant's (the training target)"


def test_load_sft_completion_missing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "q", "completion": ""}])
    assert str(error_of(load_sft, str(path))) == f"{path}:1: 'completion' is missing"


def test_load_sft_mixed_forms_in_csv(tmp_path: Path) -> None:
    rows = [{"prompt": "q", "completion": "r"}, {"messages": [u("q2"), a("r2")]}]
    path = write_csv(tmp_path / "s.csv", rows)
    assert load_sft(path) == [SFTExample([u("q"), a("r")]), SFTExample([u("q2"), a("r2")])]


# ---- load_preferences --------------------------------------------------------------------------------------


def test_load_preferences_string_form(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "good", "rejected": "bad"}])
    assert load_preferences(path) == [PreferencePair([u("q")], [a("good")], [a("bad")], None)]


def test_load_preferences_conversational_form(tmp_path: Path) -> None:
    row = {"prompt": [SYS, u("q"), a("clarify?"), u("yes")], "chosen": [a("good")], "rejected": [a("bad")]}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    assert load_preferences(path) == [
        PreferencePair([SYS, u("q"), a("clarify?"), u("yes")], [a("good")], [a("bad")], None)
    ]


def test_load_preferences_implicit_prompt(tmp_path: Path) -> None:
    rows = [
        {"chosen": [SYS, u("q"), a("good")], "rejected": [SYS, u("q"), a("bad")]},
        # the shared prefix may include an earlier assistant turn
        {
            "chosen": [u("q"), a("same"), u("more"), a("good")],
            "rejected": [u("q"), a("same"), u("more"), a("x")],
        },
    ]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    assert load_preferences(path) == [
        PreferencePair([SYS, u("q")], [a("good")], [a("bad")], None),
        PreferencePair([u("q"), a("same"), u("more")], [a("good")], [a("x")], None),
    ]


def test_load_preferences_implicit_without_shared_prefix(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"chosen": [u("a"), a("x")], "rejected": [u("b"), a("y")]}])
    assert str(error_of(load_preferences, str(path))) == f"{path}:1: 'prompt' is missing"


def test_load_preferences_implicit_identical(tmp_path: Path) -> None:
    conv = [u("a"), a("x")]
    path = write_jsonl(tmp_path / "p.jsonl", [{"chosen": conv, "rejected": conv}])
    assert str(error_of(load_preferences, str(path))) == f"{path}:1: 'chosen' and 'rejected' are identical"


@pytest.mark.parametrize(("weight", "expected"), [(0.8, 0.8), (0, 0.0), (1, 1.0), (None, None)])
def test_chosen_weight_valid(tmp_path: Path, weight: Any, expected: float | None) -> None:
    row = {"prompt": "q", "chosen": "c", "rejected": "r", "chosen_weight": weight}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    (pair,) = load_preferences(path)
    assert pair.chosen_weight == expected
    assert expected is None or isinstance(pair.chosen_weight, float)


@pytest.mark.parametrize("weight", [1.5, -0.1, "heavy", True, [0.5]])
def test_chosen_weight_invalid(tmp_path: Path, weight: Any) -> None:
    row = {"prompt": "q", "chosen": "c", "rejected": "r", "chosen_weight": weight}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    assert str(error_of(load_preferences, str(path))) == f"{path}:1: 'chosen_weight' must be a number in [0, 1]"


# ---- load_unpaired -----------------------------------------------------------------------------------------


def test_load_unpaired_labels(tmp_path: Path) -> None:
    rows = [
        {"prompt": "q1", "completion": "r1", "label": True},
        {"prompt": "q2", "completion": "r2", "label": False},
        {"prompt": "q3", "completion": "r3", "label": "true"},
        {"prompt": "q4", "completion": "r4", "label": "FALSE"},
        {"prompt": [SYS, u("q5")], "completion": [a("r5")], "label": "True"},
    ]
    path = write_jsonl(tmp_path / "k.jsonl", rows)
    assert load_unpaired(path) == [
        UnpairedExample([u("q1")], [a("r1")], True),
        UnpairedExample([u("q2")], [a("r2")], False),
        UnpairedExample([u("q3")], [a("r3")], True),
        UnpairedExample([u("q4")], [a("r4")], False),
        UnpairedExample([SYS, u("q5")], [a("r5")], True),
    ]


def test_load_unpaired_csv_labels(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    path.write_text("prompt,completion,label\nq,r,true\nq,s,false\n", encoding="utf-8")
    assert [ex.label for ex in load_unpaired(path)] == [True, False]


@pytest.mark.parametrize(("label", "shown"), [("yes", "'yes'"), (1, "1"), (0, "0")])
def test_load_unpaired_bad_label(tmp_path: Path, label: Any, shown: str) -> None:
    rows = [
        {"prompt": "q", "completion": "r", "label": True},
        {"prompt": "q", "completion": "r", "label": label},
    ]
    path = write_jsonl(tmp_path / "k.jsonl", rows)
    err = error_of(load_unpaired, str(path))
    assert str(err) == f"{path}:2: 'label' is {shown}, expected true or false"


def test_load_unpaired_missing_label(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "k.jsonl", [{"prompt": "q", "completion": "r"}])
    assert str(error_of(load_unpaired, str(path))) == f"{path}:1: 'label' is missing"


# ---- located, one-line errors ------------------------------------------------------------------------------


def test_missing_chosen_on_line_3(tmp_path: Path) -> None:
    rows = [
        {"prompt": "q", "chosen": "c", "rejected": "r"},
        {"prompt": "q", "chosen": "c", "rejected": "r"},
        {"prompt": "q", "rejected": "r"},
    ]
    path = str(write_jsonl(tmp_path / "prefs.jsonl", rows))
    err = error_of(load_preferences, path)
    assert str(err) == f"{path}:3: 'chosen' is missing"
    assert (err.path, err.line) == (path, 3)


def test_blank_lines_keep_file_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_text(
        json.dumps({"prompt": "q", "chosen": "c", "rejected": "r"}) + "\n\n   \n" + json.dumps({"prompt": "q"}) + "\n",
        encoding="utf-8",
    )
    assert str(error_of(load_preferences, str(path))) == f"{path}:4: 'chosen' is missing"


def test_invalid_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": "half\n{"prompt": "fine"}\n', encoding="utf-8")
    err = error_of(load_prompts, str(path))
    assert err.line == 2
    assert str(err).startswith(f"{path}:2: not valid JSON (")


def test_non_object_json_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n["not", "an", "object"]\n', encoding="utf-8")
    assert str(error_of(load_prompts, str(path))) == f"{path}:2: expected a JSON object, got list"


def test_bad_role_is_named(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"messages": [u("hi"), {"role": "bot", "content": "x"}, u("q")]}])
    err = error_of(load_prompts, str(path))
    assert str(err) == (
        f"{path}:1: 'messages[1].role' is 'bot', expected one of ['assistant', 'system', 'tool', 'user']"
    )


def test_message_without_content(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user"}]}])
    assert str(error_of(load_prompts, str(path))) == (
        f"{path}:1: 'messages[0]' must be an object with 'role' and 'content'"
    )


def test_message_content_not_a_string(tmp_path: Path) -> None:
    row = {"prompt": "q", "chosen": [{"role": "assistant", "content": 3}], "rejected": "r"}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    assert str(error_of(load_preferences, str(path))) == f"{path}:1: 'chosen[0].content' must be a string"


def test_empty_message_list(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"messages": []}, {"prompt": []}])
    # An empty `messages` list is not None, so it is validated rather than silently skipped.
    assert str(error_of(load_prompts, str(path))) == (
        f"{path}:1: 'messages' must be a string or a non-empty list of messages"
    )


def test_unhashable_role_is_data_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": ["user"], "content": "x"}]}])
    err = error_of(load_prompts, path)
    assert str(err).startswith(f"{path}:1: 'messages[0].role' is ")


def test_bad_role_with_newline_stays_one_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user\nassistant", "content": "x"}]}])
    error_of(load_prompts, path)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.jsonl")
    err = error_of(load_prompts, path)
    assert str(err) == f"{path}: no such file or folder"
    assert err.line is None


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("hello\n", encoding="utf-8")
    err = error_of(load_prompts, str(path))
    assert str(err) == f"{path}: unknown format '.txt' (use .jsonl, .json, .csv, .parquet or a folder)"


def test_json_array_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('[\n  {"prompt": "a"},\n  {"prompt": "b",}\n]\n', encoding="utf-8")
    err = error_of(load_prompts, str(path))
    assert err.line == 3
    assert str(err).startswith(f"{path}:3: not valid JSON (")


def test_json_not_an_array(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text("42\n", encoding="utf-8")
    assert str(error_of(load_prompts, str(path))) == f"{path}: expected a JSON array of objects"


def test_json_single_object_is_one_record(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"id": "only", "prompt": "x"}', encoding="utf-8")
    assert load_prompts(path) == [Prompt(id="only", text="x")]


def test_json_array_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"prompt": "a"}, {"prompt": "b"}, {"id": "c"}]), encoding="utf-8")
    assert str(error_of(load_prompts, str(path))) == f"{path}:3: 'prompt' is missing"


def test_csv_line_numbers_count_the_header(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("prompt,completion\nq,r\nq,\n", encoding="utf-8")
    assert str(error_of(load_sft, str(path))) == f"{path}:3: 'completion' is missing"


def test_csv_too_many_values(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,prompt\na,x\nb,y,extra\n", encoding="utf-8")
    assert str(error_of(load_prompts, str(path))) == f"{path}:3: more values than header columns"


def test_parquet_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "chosen": "c"}, {"prompt": "q", "chosen": None}]), path)
    assert str(error_of(load_preferences, str(path))) == f"{path}:1: 'rejected' is missing"


def test_errors_name_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.jsonl").write_text('{"prompt": "ok"}\n{broken\n', encoding="utf-8")
    assert str(error_of(load_prompts, "./p.jsonl")).startswith("./p.jsonl:2: not valid JSON (")


def test_read_records_yields_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert list(read_records(path)) == [(1, {"a": 1}), (3, {"a": 2})]


# ---- write_records round trips -----------------------------------------------------------------------------

WRITE_FORMATS = ["jsonl", "csv", "parquet", "json", pytest.param("hf", marks=needs_datasets)]


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_round_trip_text_prompts(tmp_path: Path, fmt: str) -> None:
    path = write_records(out_path(tmp_path, fmt), [prompt_record(p) for p in TEXT_PROMPTS])
    assert load_prompts(path) == TEXT_PROMPTS


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_round_trip_conversation_prompts(tmp_path: Path, fmt: str) -> None:
    path = write_records(out_path(tmp_path, fmt), [prompt_record(p) for p in CONV_PROMPTS])
    assert load_prompts(path) == CONV_PROMPTS


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_round_trip_preferences(tmp_path: Path, fmt: str) -> None:
    pairs = [
        PreferencePair([u("q")], [a("good")], [a("bad")]),
        PreferencePair([SYS, u("q2"), a("hm"), u("go on")], [a("yes")], [a("no")]),
    ]
    path = write_records(out_path(tmp_path, fmt), [preference_record(p) for p in pairs])
    assert load_preferences(path) == pairs


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_round_trip_sft(tmp_path: Path, fmt: str) -> None:
    examples = [SFTExample([u("q"), a("r")]), SFTExample([SYS, u("q2"), a("r2"), u("q3"), a("r3")])]
    path = write_records(out_path(tmp_path, fmt), [sft_record(e) for e in examples])
    assert load_sft(path) == examples


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_round_trip_unpaired(tmp_path: Path, fmt: str) -> None:
    examples = [UnpairedExample([u("q")], [a("r")], True), UnpairedExample([SYS, u("q2")], [a("r2")], False)]
    path = write_records(out_path(tmp_path, fmt), [unpaired_record(e) for e in examples])
    assert load_unpaired(path) == examples


@pytest.mark.parametrize(
    "fmt",
    [
        "jsonl",
        "json",
        "parquet",
        pytest.param("hf", marks=needs_datasets),
        "csv",
    ],
)
def test_round_trip_preferences_with_weight_on_later_rows(tmp_path: Path, fmt: str) -> None:
    pairs = [
        PreferencePair([u("q")], [a("good")], [a("bad")]),
        PreferencePair([u("q2")], [a("yes")], [a("no")], 0.7),
    ]
    path = write_records(out_path(tmp_path, fmt), [preference_record(p) for p in pairs])
    assert load_preferences(path) == pairs


@pytest.mark.parametrize(
    "fmt",
    [
        "jsonl",
        "json",
        "parquet",
        pytest.param("hf", marks=needs_datasets),
        "csv",
    ],
)
def test_round_trip_mixed_prompts(tmp_path: Path, fmt: str) -> None:
    prompts = [Prompt(id="t", text="plain text"), Prompt(id="m", messages=[SYS, u("conv")])]
    path = write_records(out_path(tmp_path, fmt), [prompt_record(p) for p in prompts])
    assert load_prompts(path) == prompts


def test_write_jsonl_is_one_object_per_line_unicode_kept(tmp_path: Path) -> None:
    path = write_records(tmp_path / "sub" / "o.jsonl", [{"id": "1", "prompt": "héllo"}, {"id": "2", "prompt": "x"}])
    text = path.read_text(encoding="utf-8")
    assert text == '{"id": "1", "prompt": "héllo"}\n{"id": "2", "prompt": "x"}\n'


def test_write_records_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "o.json"
    write_records(path, [{"prompt": "old"}, {"prompt": "older"}])
    write_records(path, [{"prompt": "new"}])
    assert json.loads(path.read_text(encoding="utf-8")) == [{"prompt": "new"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json"]


def test_write_records_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "o.xlsx"
    with pytest.raises(DataError) as info:
        write_records(path, [{"prompt": "x"}])
    assert str(info.value) == f"{path}: unknown format '.xlsx' (use .jsonl, .json, .csv, .parquet or a folder)"
    assert not path.exists()


# ---- read_done + JsonlAppender -----------------------------------------------------------------------------


def test_read_done_missing_file(tmp_path: Path) -> None:
    assert read_done(tmp_path / "none.jsonl") == {}


def test_read_done_cuts_torn_last_line_and_append_continues(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    complete = '{"id": "1", "reply": "a"}\n{"id": "2", "reply": "b"}\n'
    path.write_bytes((complete + '{"id": "3", "rep').encode("utf-8"))

    done = read_done(path)
    assert done == {"1": {"id": "1", "reply": "a"}, "2": {"id": "2", "reply": "b"}}
    assert path.read_text(encoding="utf-8") == complete  # truncated to the last complete line

    with JsonlAppender(path) as out:
        out.write({"id": "3", "reply": "c"})
        out.write({"id": "4", "reply": "d"})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["1", "2", "3", "4"]
    assert path.read_bytes().endswith(b"\n")
    assert list(read_done(path)) == ["1", "2", "3", "4"]


def test_read_done_only_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"id": "1", "re')
    assert read_done(path) == {}
    assert path.read_bytes() == b""


def test_read_done_leaves_a_complete_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    data = b'{"pid": 5, "x": 1}\n{"pid": 6, "x": 2}\n'
    path.write_bytes(data)
    assert read_done(path, key="pid") == {"5": {"pid": 5, "x": 1}, "6": {"pid": 6, "x": 2}}
    assert path.read_bytes() == data


def test_read_done_bad_line_inside_file(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "1"}\nnot json\n{"id": "3"}\n', encoding="utf-8")
    err = error_of(read_done, path)
    assert str(err) == f"{path}:2: not valid JSON in an existing results file"


def test_appender_appends_and_makes_parents(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "r.jsonl"
    with JsonlAppender(path) as out:
        out.write({"id": "1", "text": "ünïcode"})
    with JsonlAppender(path) as out:  # a second run appends, never truncates
        out.write({"id": "2"})
    assert path.read_text(encoding="utf-8") == '{"id": "1", "text": "ünïcode"}\n{"id": "2"}\n'


def test_read_done_record_with_unicode_line_separator(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    with JsonlAppender(path) as out:
        out.write({"id": "1", "reply": "line one\u2028line two"})
    assert read_done(path) == {"1": {"id": "1", "reply": "line one\u2028line two"}}
