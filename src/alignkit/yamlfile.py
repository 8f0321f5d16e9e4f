"""YAML files validated by a pydantic model, with errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from alignkit.errors import AlignkitError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Parse `path` and validate it as `model`; one line per error: `file:line: field: problem`."""
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise AlignkitError(f"{where}: not valid YAML ({getattr(e, 'problem', 'parse error')})") from None
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = list(first["loc"])
        line = _line_of(node, loc)
        where = f"{path}:{line}" if line else str(path)
        raise AlignkitError(f"{where}: {_describe(raw, loc)}: {first['msg']}") from None


def _line_of(node: yaml.Node | None, loc: list[str | int]) -> int | None:
    """The 1-based line of the deepest YAML node on the path `loc`."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _describe(raw: object, loc: list[str | int]) -> str:
    """`principles[3] (id no-weapons).refusal` rather than `principles.3.refusal`."""
    out, value = "", raw
    for key in loc:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and key < len(value) else None
            pid = value.get("id") if isinstance(value, dict) else None
            out += f"[{key}]" + (f" (id {pid})" if pid else "")
        else:
            value = value.get(key) if isinstance(value, dict) else None
            out += f".{key}" if out else key
    return out or "file"
