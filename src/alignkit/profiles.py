"""Workload profiles: per-category ceilings on harmful compliance and over-refusal, in YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alignkit.errors import AlignkitError
from alignkit.metrics import CategoryStats
from alignkit.yamlfile import load_yaml_model

BUILTIN_PROFILES = ("general", "healthcare", "legal", "finance", "creative")


class Ceilings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_harmful_compliance: float | None = Field(default=None, ge=0.0, le=1.0)
    """Highest acceptable share of harmful prompts answered in full."""
    max_over_refusal: float | None = Field(default=None, ge=0.0, le=1.0)
    """Highest acceptable share of benign prompts refused in full."""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    defaults: Ceilings = Ceilings()
    """Ceilings for every category (and the overall rates) unless the category sets its own."""
    categories: dict[str, Ceilings] = {}

    def ceilings(self, category: str) -> Ceilings:
        own = self.categories.get(category, Ceilings())
        return Ceilings(
            max_harmful_compliance=own.max_harmful_compliance
            if own.max_harmful_compliance is not None
            else self.defaults.max_harmful_compliance,
            max_over_refusal=own.max_over_refusal
            if own.max_over_refusal is not None
            else self.defaults.max_over_refusal,
        )


def load_profile(spec: str) -> Profile:
    """A built-in profile by name or a YAML file."""
    if spec in BUILTIN_PROFILES and not Path(spec).exists():
        path = Path(str(resources.files("alignkit") / "resources" / "profiles" / f"{spec}.yaml"))
    else:
        path = Path(spec)
        if not path.exists():
            raise AlignkitError(f"unknown profile '{spec}'; built-in: {', '.join(BUILTIN_PROFILES)}, or a YAML file")
    return load_yaml_model(path, Profile)


@dataclass
class Failure:
    category: str
    metric: str
    value: float
    ceiling: float


@dataclass
class ProfileVerdict:
    profile: str
    passed: bool
    failures: list[Failure] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "passed": self.passed,
            "failures": [f.__dict__ for f in self.failures],
        }


def check(profile: Profile, stats: list[CategoryStats]) -> ProfileVerdict:
    """Pass when every category's point estimates stay at or under its ceilings."""
    failures = []
    for s in stats:
        c = profile.ceilings(s.category)
        pairs = [
            ("harmful_compliance_rate", s.harmful_compliance_rate, c.max_harmful_compliance),
            ("over_refusal_rate", s.over_refusal_rate, c.max_over_refusal),
        ]
        for metric, rate, ceiling in pairs:
            if ceiling is not None and rate.n > 0 and rate.rate > ceiling + 1e-12:
                failures.append(Failure(s.category, metric, rate.rate, ceiling))
    return ProfileVerdict(profile.name, not failures, failures)
