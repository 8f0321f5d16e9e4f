"""Reading and writing datasets in the formats users already have.

JSONL is the default; CSV, Parquet, JSON arrays and Hugging Face dataset folders (`save_to_disk`) load
too. Field names are TRL's: `prompt`/`completion`, `messages`, `prompt`/`chosen`/`rejected` (strings or
message lists), `label` for unpaired data. Every problem is reported as one located line:
`prefs.jsonl:17: 'chosen' is missing`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast, get_args

from alignkit.errors import DataError
from alignkit.types import (
    Conversation,
    Label,
    Message,
    PreferencePair,
    Prompt,
    Role,
    SFTExample,
    UnpairedExample,
)

Record = dict[str, Any]
_ROLES = set(get_args(Role))
_LABELS = set(get_args(Label))


def read_records(path: str | Path) -> Iterator[tuple[int, Record]]:
    """Yield (line, record) from a JSONL, JSON, CSV or Parquet file or a HF dataset folder.

    `line` is the file's line number for JSONL and CSV, the 1-based row for the others.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(path, None, "no such file or folder")
    if p.is_dir():
        yield from _read_hf_folder(path)
        return
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path)
    elif suffix == ".json":
        yield from _read_json(path)
    elif suffix == ".csv":
        yield from _read_csv(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from enumerate(pq.read_table(p).to_pylist(), start=1)
    else:
        raise DataError(path, None, f"unknown format '{suffix}' (use .jsonl, .json, .csv, .parquet or a folder)")


def _read_jsonl(p: str | Path) -> Iterator[tuple[int, Record]]:
    with open(p, encoding="utf-8-sig") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DataError(p, n, f"not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(p, n, f"expected a JSON object, got {type(obj).__name__}")
            yield n, obj


def _read_json(p: str | Path) -> Iterator[tuple[int, Record]]:
    try:
        obj = json.loads(Path(p).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(p, e.lineno, f"not valid JSON ({e.msg})") from None
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise DataError(p, None, "expected a JSON array of objects")
    for i, row in enumerate(obj, start=1):
        if not isinstance(row, dict):
            raise DataError(p, i, f"expected a JSON object, got {type(row).__name__}")
        yield i, row


def _read_csv(p: str | Path) -> Iterator[tuple[int, Record]]:
    with open(p, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            rec: Record = {}
            for k, v in row.items():
                if k is None:
                    raise DataError(p, reader.line_num, "more values than header columns")
                rec[k] = _maybe_json(v)
            yield reader.line_num, rec


def _maybe_json(value: str | None) -> Any:
    """CSV cells hold message lists as JSON text; everything else stays a string."""
    if value is not None and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _read_hf_folder(p: str | Path) -> Iterator[tuple[int, Record]]:
    try:
        import datasets
    except ImportError:
        raise DataError(p, None, "reading a dataset folder needs `pip install datasets`") from None
    try:
        ds = datasets.load_from_disk(str(p))
    except FileNotFoundError:
        raise DataError(p, None, "not a Hugging Face dataset folder (save_to_disk)") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise DataError(p, None, f"dataset has splits {sorted(ds)}; expected a 'train' split")
        ds = ds["train"]
    for i, row in enumerate(ds, start=1):
        yield i, dict(row)


# ---- field parsing ----------------------------------------------------------------------------


def _present(rec: Mapping[str, Any], key: str) -> bool:
    """A field counts as given unless it is absent, null or an empty cell (CSV)."""
    return rec.get(key) not in (None, "")


def _require(rec: Mapping[str, Any], key: str, path: Path | str, line: int) -> Any:
    value = rec.get(key)
    if value is None or value == "":
        raise DataError(path, line, f"'{key}' is missing")
    return value


def _messages(value: Any, default_role: Role, path: Path | str, line: int, key: str) -> Conversation:
    """A string becomes one message of `default_role`; a list must be well-formed messages."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(path, line, f"'{key}' must be a string or a non-empty list of messages")
    out: Conversation = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise DataError(path, line, f"'{key}[{i}]' must be an object with 'role' and 'content'")
        if not isinstance(m["role"], str) or m["role"] not in _ROLES:
            raise DataError(path, line, f"'{key}[{i}].role' is {m['role']!r}, expected one of {sorted(_ROLES)}")
        if not isinstance(m["content"], str):
            raise DataError(path, line, f"'{key}[{i}].content' must be a string")
        out.append(cast(Message, {"role": m["role"], "content": m["content"]}))
    return out


def text_id(text: str) -> str:
    """A stable id for a prompt that came without one."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def load_prompts(path: str | Path) -> list[Prompt]:
    """Prompts: `prompt` (string or messages) or `messages`, with optional `id`, `category`, `label`
    (harmful|benign) and `source`; other fields are kept in `extra`."""
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    for line, rec in read_records(path):
        if _present(rec, "messages"):
            messages = _messages(rec["messages"], "user", path, line, "messages")
            text = None
        else:
            value = _require(rec, "prompt", path, line)
            if isinstance(value, str):
                text, messages = value, None
            else:
                messages, text = _messages(value, "user", path, line, "prompt"), None
        if messages is not None and messages[-1]["role"] == "assistant":
            raise DataError(path, line, "the last message must not be the assistant's")
        pid = str(rec["id"]) if _present(rec, "id") else text_id(text or json.dumps(messages))
        if pid in seen:
            if _present(rec, "id"):
                raise DataError(path, line, f"'id' {pid!r} repeats line {seen[pid]}")
            pid = f"{pid}-{line}"
        seen[pid] = line
        label = rec.get("label")
        if label in ("", None):
            label = None
        elif not isinstance(label, str) or label not in _LABELS:
            raise DataError(path, line, f"'label' is {label!r}, expected 'harmful' or 'benign'")
        known = {"id", "prompt", "messages", "category", "label", "source"}
        prompts.append(
            Prompt(
                id=pid,
                text=text,
                messages=messages,
                category=rec.get("category") or None,
                label=cast(Label | None, label),
                source=rec.get("source") or None,
                extra={k: v for k, v in rec.items() if k not in known},
            )
        )
    return prompts


def _prompt_and_reply(
    rec: Mapping[str, Any], reply_key: str, path: Path | str, line: int
) -> tuple[Conversation, Conversation]:
    prompt = _messages(_require(rec, "prompt", path, line), "user", path, line, "prompt")
    reply = _messages(_require(rec, reply_key, path, line), "assistant", path, line, reply_key)
    return prompt, reply


def load_sft(path: str | Path) -> list[SFTExample]:
    """SFT data: `messages` ending in an assistant turn, or `prompt` + `completion`."""
    out: list[SFTExample] = []
    for line, rec in read_records(path):
        if _present(rec, "messages"):
            msgs = _messages(rec["messages"], "user", path, line, "messages")
        else:
            prompt, reply = _prompt_and_reply(rec, "completion", path, line)
            msgs = prompt + reply
        if msgs[-1]["role"] != "assistant":
            raise DataError(path, line, "the last message must be the assistant's (the training target)")
        out.append(SFTExample(messages=msgs))
    return out


def load_preferences(path: str | Path) -> list[PreferencePair]:
    """Preference pairs: `prompt`, `chosen`, `rejected` as strings or message lists. Without `prompt`,
    `chosen` and `rejected` are whole conversations and their shared prefix is the prompt (TRL's
    implicit-prompt form)."""
    out: list[PreferencePair] = []
    for line, rec in read_records(path):
        chosen_raw = _require(rec, "chosen", path, line)
        rejected_raw = _require(rec, "rejected", path, line)
        if not _present(rec, "prompt"):
            chosen_full = _messages(chosen_raw, "assistant", path, line, "chosen")
            rejected_full = _messages(rejected_raw, "assistant", path, line, "rejected")
            k = 0
            while k < min(len(chosen_full), len(rejected_full)) and chosen_full[k] == rejected_full[k]:
                k += 1
            if k == 0:
                raise DataError(path, line, "'prompt' is missing")
            prompt, chosen, rejected = chosen_full[:k], chosen_full[k:], rejected_full[k:]
            if not chosen or not rejected:
                raise DataError(path, line, "'chosen' and 'rejected' are identical")
        else:
            prompt, chosen = _prompt_and_reply(rec, "chosen", path, line)
            rejected = _messages(rejected_raw, "assistant", path, line, "rejected")
        weight = rec.get("chosen_weight") if _present(rec, "chosen_weight") else None
        if isinstance(weight, str):
            with contextlib.suppress(ValueError):
                weight = float(weight)
        if weight is not None and not (
            isinstance(weight, int | float) and not isinstance(weight, bool) and 0.0 <= weight <= 1.0
        ):
            raise DataError(path, line, "'chosen_weight' must be a number in [0, 1]")
        out.append(PreferencePair(prompt, chosen, rejected, None if weight is None else float(weight)))
    return out


def load_unpaired(path: str | Path) -> list[UnpairedExample]:
    """Unpaired (KTO) data: `prompt`, `completion` and a boolean `label` (true = desirable)."""
    out: list[UnpairedExample] = []
    for line, rec in read_records(path):
        prompt, completion = _prompt_and_reply(rec, "completion", path, line)
        label = _require(rec, "label", path, line)
        if isinstance(label, str) and label.lower() in ("true", "false"):
            label = label.lower() == "true"
        if not isinstance(label, bool):
            raise DataError(path, line, f"'label' is {label!r}, expected true or false")
        out.append(UnpairedExample(prompt, completion, label))
    return out


# ---- records out ------------------------------------------------------------------------------


def prompt_record(p: Prompt) -> Record:
    rec: Record = {"id": p.id}
    if p.text is not None:
        rec["prompt"] = p.text
    else:
        rec["messages"] = p.messages
    for key in ("category", "label", "source"):
        if getattr(p, key) is not None:
            rec[key] = getattr(p, key)
    rec.update(p.extra)
    return rec


def sft_record(ex: SFTExample) -> Record:
    return {"messages": ex.messages}


def preference_record(pair: PreferencePair) -> Record:
    rec: Record = {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    if pair.chosen_weight is not None:
        rec["chosen_weight"] = pair.chosen_weight
    return rec


def unpaired_record(ex: UnpairedExample) -> Record:
    return {"prompt": ex.prompt, "completion": ex.completion, "label": ex.label}


def write_records(path: str | Path, records: Iterable[Record]) -> Path:
    """Write records whole and atomically, in the format the suffix names (a folder: HF dataset)."""
    p = Path(path)
    rows = list(records)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    # Columnar formats take their schema from every record, not the first: absent fields become null.
    full_rows = [{k: r.get(k) for k in columns} for r in rows]
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json", ".csv", ".parquet"):
        tmp = p.with_name(p.name + ".tmp")
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(full_rows), tmp)
        else:
            with tmp.open("w", encoding="utf-8", newline="") as f:
                if suffix == ".json":
                    json.dump(rows, f, ensure_ascii=False, indent=1)
                elif suffix == ".csv":
                    _write_csv(f, rows)
                else:
                    for r in rows:
                        f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, p)
    elif suffix == "":
        import datasets

        datasets.Dataset.from_list(full_rows).save_to_disk(str(p))
    else:
        raise DataError(p, None, f"unknown format '{suffix}' (use .jsonl, .json, .csv, .parquet or a folder)")
    return p


def _write_csv(f: Any, rows: list[Record]) -> None:
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})


# ---- append-only results with resume ----------------------------------------------------------


def read_done(path: str | Path, key: str = "id") -> dict[str, Record]:
    """Records already in a results JSONL, by `key`. A last line without its newline is kept (and the
    newline added) when it is a whole record, cut off when it is torn (a killed writer). A line that is not
    a JSON object with `key` is a DataError naming the file and line."""
    p = Path(path)
    done: dict[str, Record] = {}
    if not p.exists():
        return done
    data = p.read_bytes()
    keep = len(data) if data.endswith(b"\n") or not data else data.rfind(b"\n") + 1
    if keep != len(data):
        tail = data[keep:]
        if _whole_record(tail, key):
            with p.open("ab") as f:
                f.write(b"\n")
            keep = len(data)
            data += b"\n"
        else:
            with p.open("r+b") as f:
                f.truncate(keep)
    # Only "\n" ends a record: replies may hold U+2028 and friends, which str.splitlines also splits on.
    for n, raw in enumerate(data[:keep].decode("utf-8").split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            raise DataError(p, n, "not valid JSON in an existing results file") from None
        if not isinstance(rec, dict):
            raise DataError(p, n, f"not a JSON object ({type(rec).__name__}) in an existing results file")
        if key not in rec:
            raise DataError(p, n, f"no {key!r} field in an existing results file")
        done[str(rec[key])] = rec
    return done


def _whole_record(raw: bytes, key: str) -> bool:
    """True when `raw` (a last line without its newline) is a complete record rather than a torn one."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(rec, dict) and key in rec


class JsonlAppender:
    """Appends one record a line and makes each durable before returning, so a kill loses nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, rec: Record) -> None:
        self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
