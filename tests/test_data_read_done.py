"""`read_done`: a valid last record without a newline is kept, a torn one is cut, a non-object line is a
one-line error naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.data import read_done
from alignkit.errors import AlignkitError


def test_a_valid_last_record_without_a_newline_is_kept(tmp_path: Path) -> None:
    p = tmp_path / "done.jsonl"
    p.write_text('{"id": "a", "x": 1}\n{"id": "b", "x": 2}')
    assert set(read_done(p)) == {"a", "b"}
    # The file is completed with its newline, so that the next append starts a line of its own.
    assert p.read_text() == '{"id": "a", "x": 1}\n{"id": "b", "x": 2}\n'


def test_a_torn_last_record_is_cut(tmp_path: Path) -> None:
    p = tmp_path / "done.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b", "x"')
    assert set(read_done(p)) == {"a"}
    assert p.read_text() == '{"id": "a"}\n'


@pytest.mark.parametrize(
    ("line", "what"), [("[1, 2]", "not a JSON object"), ('{"x": 1}', "no 'id'"), ("7", "not a JSON object")]
)
def test_a_line_that_is_not_a_record_names_file_and_line(tmp_path: Path, line: str, what: str) -> None:
    p = tmp_path / "done.jsonl"
    p.write_text('{"id": "a"}\n' + line + '\n{"id": "c"}\n')
    with pytest.raises(AlignkitError) as e:
        read_done(p)
    message = str(e.value)
    assert str(p) in message and ":2" in message and what in message and "\n" not in message
