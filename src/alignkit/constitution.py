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
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alignkit.errors import AlignkitError
from alignkit.yamlfile import load_yaml_model

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
    refusals: list[Annotated[str, Field(min_length=10)]] = []
    """More phrasings of that refusal (brief, with a reason, with a safe alternative, other openings),
    so that training data does not teach one template: curation's repairs, on-policy pairs and red-team
    findings pick among them and `refusal`, per prompt (`alignkit.refusals.pick_refusal`)."""
    guard: GuardHints = GuardHints()

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in HAZARD_CATEGORIES]
        if unknown:
            raise ValueError(f"unknown hazard categories {unknown}; known: {', '.join(HAZARD_CATEGORIES)}")
        return value

    @field_validator("refusals")
    @classmethod
    def _distinct_refusals(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for text in value:
            if text.strip() in seen:
                raise ValueError(f"the phrasing '{text.strip()[:40]}' appears twice")
            seen.add(text.strip())
        return value

    @model_validator(mode="after")
    def _refusal_where_needed(self) -> Principle:
        if self.kind == "harmlessness" and self.categories and not self.refusal.strip():
            raise ValueError("a harmlessness principle with hazard categories needs a refusal")
        if self.refusals and self.kind != "harmlessness":
            raise ValueError(f"refusals belong to harmlessness principles, not {self.kind} ones")
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
    return load_yaml_model(path, Constitution)


def constitution_hash(spec: str) -> str:
    """sha256 of the file's bytes, for posture cards and provenance."""
    return hashlib.sha256(constitution_path(spec).read_bytes()).hexdigest()
