"""The constitution: the one written file of principles that suites, judges, critiques and rails read.

Principles follow the Constitutional AI paper (Bai et al. 2022, arXiv:2212.08073): each carries a
critique request and a revision request for a feedback model, plus what alignkit adds: the hazard
categories it governs, the refusal to give (brief, not judgmental, with a safe alternative), and guard
hints (phrases and exemplar requests) for runtime rails.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alignkit.errors import AlignkitError

HAZARD_CATEGORIES = (
    "violent_crimes",
    "weapons_cbrn",
    "cyber_crime",
    "fraud_scams",
    "self_harm",
    "hate_harassment",
    "drugs",
    "privacy",
)
"""The hazard taxonomy of the built-in suite (after MLCommons / Llama Guard)."""
BUILTIN_CONSTITUTIONS = ("default", "healthcare", "creative")


class GuardHints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phrases: list[str] = []
    """Short phrases typical of requests the principle covers, for keyword rails."""
    exemplars: list[str] = []
    """Example requests the principle is about, for embedding-similarity rails."""


class Principle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    """Kebab-case, unique in the file."""
    kind: Literal["harmlessness", "honesty", "helpfulness"]
    statement: str = Field(min_length=10)
    """The principle itself, in a sentence or two."""
    categories: list[str] = []
    """Hazard categories the principle governs (empty: it applies to every request)."""
    critique: str = Field(min_length=10)
    """The critique request put to a feedback model about a reply."""
    revision: str = Field(min_length=10)
    """The revision request put to a feedback model after its critique."""
    refusal: str = ""
    """The refusal to give when the principle says no: brief, not judgmental, a safe alternative."""
    guard: GuardHints = GuardHints()

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in HAZARD_CATEGORIES]
        if unknown:
            raise ValueError(f"unknown hazard categories {unknown}; known: {', '.join(HAZARD_CATEGORIES)}")
        return value

    @model_validator(mode="after")
    def _refusal_where_needed(self) -> Principle:
        if self.kind == "harmlessness" and self.categories and not self.refusal.strip():
            raise ValueError("a harmlessness principle with hazard categories needs a refusal")
        return self


class Constitution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    principles: list[Principle] = Field(min_length=1)

    @field_validator("principles")
    @classmethod
    def _unique_ids(cls, value: list[Principle]) -> list[Principle]:
        seen: set[str] = set()
        for p in value:
            if p.id in seen:
                raise ValueError(f"principle id '{p.id}' appears twice")
            seen.add(p.id)
        return value

    def for_category(self, category: str) -> list[Principle]:
        """The harmlessness principles that govern a hazard category."""
        return [p for p in self.principles if p.kind == "harmlessness" and category in p.categories]

    def refusal_for(self, category: str) -> str | None:
        """The refusal of the first principle that governs the category; None if none does."""
        governing = self.for_category(category)
        return governing[0].refusal if governing else None

    def uncovered(self) -> list[str]:
        """Hazard categories no principle governs."""
        return [c for c in HAZARD_CATEGORIES if not self.for_category(c)]

    def as_system_prompt(self) -> str:
        """The principles as a system prompt (for context distillation and guarded serving)."""
        lines = [f"Follow these principles ({self.name} constitution):"]
        lines += [f"- {p.statement}" for p in self.principles]
        return "\n".join(lines)


def constitution_path(spec: str) -> Path:
    if spec in BUILTIN_CONSTITUTIONS and not Path(spec).exists():
        return Path(str(resources.files("alignkit") / "resources" / "constitutions" / f"{spec}.yaml"))
    return Path(spec)


def load_constitution(spec: str = "default") -> Constitution:
    """A built-in constitution by name or a YAML file; errors are one line naming file, line and field."""
    path = constitution_path(spec)
    if not path.exists():
        raise AlignkitError(f"unknown constitution '{spec}'; built-in: {', '.join(BUILTIN_CONSTITUTIONS)}, or a file")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise AlignkitError(f"{where}: not valid YAML ({getattr(e, 'problem', 'parse error')})") from None
    try:
        return Constitution.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = [x for x in first["loc"]]
        line = _line_of(node, loc)
        field = _describe(raw, loc)
        where = f"{path}:{line}" if line else str(path)
        raise AlignkitError(f"{where}: {field}: {first['msg']}") from None


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
    return out or "constitution"


def constitution_hash(spec: str) -> str:
    """sha256 of the file's bytes, for posture cards and provenance."""
    return hashlib.sha256(constitution_path(spec).read_bytes()).hexdigest()
