"""Prompt suites: the built-in one, and the files users bring (XSTest, HarmBench, AdvBench, JSONL)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from alignkit.data import load_prompts, read_records, text_id
from alignkit.errors import DataError
from alignkit.types import Prompt

BUILTIN_SUITES = {"default": "default.jsonl"}
Split = Literal["train", "test", "all"]


def suite_path(spec: str) -> Path:
    if spec in BUILTIN_SUITES and not Path(spec).exists():
        return Path(str(resources.files("alignkit") / "resources" / "suites" / BUILTIN_SUITES[spec]))
    return Path(spec)


def load_suite(spec: str) -> list[Prompt]:
    """A built-in suite by name, or a file whose format is told by its columns:
    XSTest (`prompt`, `type`, `label` safe/unsafe), HarmBench (`Behavior`), AdvBench (`goal`), or
    alignkit's JSONL (`id`, `prompt` or `messages`, `label`, `category`)."""
    path = suite_path(spec)
    first = next(read_records(path), None)
    if first is None:
        raise DataError(path, None, "the suite is empty")
    columns = set(first[1])
    source = path.stem
    if "Behavior" in columns:
        return _harmbench(path, source)
    if "goal" in columns and "prompt" not in columns:
        return _advbench(path, source)
    if {"prompt", "type", "label"} <= columns and str(first[1]["label"]).lower() in ("safe", "unsafe"):
        return _xstest(path, source)
    prompts = load_prompts(path)
    for p in prompts:
        p.source = p.source or source
        if p.label is None:
            raise DataError(path, None, f"prompt {p.id!r} has no 'label' (harmful or benign)")
        p.category = p.category or "uncategorised"
    return prompts


def _harmbench(path: Path, source: str) -> list[Prompt]:
    out = []
    for line, rec in read_records(path):
        behavior = str(rec.get("Behavior") or "")
        if not behavior:
            raise DataError(path, line, "'Behavior' is missing")
        context = str(rec.get("ContextString") or "")
        text = f"{context}\n\n---\n\n{behavior}" if context else behavior
        pid = str(rec.get("BehaviorID") or text_id(text))
        category = str(rec.get("SemanticCategory") or rec.get("FunctionalCategory") or "harmbench")
        out.append(Prompt(id=pid, text=text, category=category, label="harmful", source=source))
    return out


def _advbench(path: Path, source: str) -> list[Prompt]:
    out = []
    for line, rec in read_records(path):
        goal = str(rec.get("goal") or "")
        if not goal:
            raise DataError(path, line, "'goal' is missing")
        out.append(Prompt(id=f"advbench-{line}", text=goal, category="advbench", label="harmful", source=source))
    return out


def _xstest(path: Path, source: str) -> list[Prompt]:
    out = []
    for line, rec in read_records(path):
        text = str(rec.get("prompt") or "")
        if not text:
            raise DataError(path, line, "'prompt' is missing")
        raw = str(rec.get("label") or "").lower()
        if raw not in ("safe", "unsafe"):
            raise DataError(path, line, f"'label' is {raw!r}, expected safe or unsafe")
        pid = str(rec.get("id") or f"xstest-{line}")
        kind = str(rec.get("type") or "xstest")
        out.append(
            Prompt(
                id=pid,
                text=text,
                category=kind,
                label="harmful" if raw == "unsafe" else "benign",
                source=source,
                extra={"kind": kind},
            )
        )
    return out


def select_split(prompts: list[Prompt], split: Split) -> list[Prompt]:
    """Prompts of one split; prompts with no recorded split belong to every split."""
    if split == "all":
        return list(prompts)
    return [p for p in prompts if p.extra.get("split", split) == split]
