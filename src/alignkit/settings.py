"""`key=value` settings for every config model: one parser, one validation, one-line errors.

A setting's key may be a dotted path into nested configs (`train.dpo.learning_rate=5e-4`); its value is
read as YAML (`methods=[sft,orpo]`, `anchors=null`). Errors name the path and the allowed keys, never a
traceback.
"""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from alignkit.errors import AlignkitError

M = TypeVar("M", bound=BaseModel)


def parse_value(raw: str) -> Any:
    """A YAML scalar, list or mapping; text that is not YAML stays text."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_overrides(items: list[str], what: str) -> dict[str, Any]:
    """`a.b=1` items as a nested dict {"a": {"b": 1}}; a later item wins over an earlier one."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise AlignkitError(f"{what}: setting '{item}' is not key=value")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise AlignkitError(f"{what}: setting '{item}' goes inside '{part}', which is set to a value")
            node = child
        node[leaf] = parse_value(raw)
    return out


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` laid over `base`, mapping into mapping; anything else replaces."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _allowed(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a config model accepts at `loc` (the path of an unknown key, itself excluded)."""
    cls: Any = model
    for part in loc[:-1]:
        fields = getattr(cls, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        inner = [a for a in getattr(annotation, "__args__", ()) if hasattr(a, "model_fields")]
        cls = annotation if hasattr(annotation, "model_fields") else (inner[-1] if inner else None)
        if cls is None:
            return []
    return list(getattr(cls, "model_fields", {}))


def validate(model: type[M], data: dict[str, Any], what: str) -> M:
    """`model(**data)`, or an AlignkitError naming the first bad setting's path (and, for an unknown key,
    the keys allowed there)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(first["loc"])
        where = ".".join(str(x) for x in loc) or "settings"
        if first["type"] == "extra_forbidden":
            allowed = _allowed(model, loc)
            hint = f"; known: {', '.join(allowed)}" if allowed else ""
            raise AlignkitError(f"{what}: unknown setting '{where}'{hint}") from None
        raise AlignkitError(f"{what}: {where}: {first['msg'].removeprefix('Value error, ')}") from None
