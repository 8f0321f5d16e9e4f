"""Red-teaming: one module per attack family, a registry, and resumable campaigns."""

from __future__ import annotations

from typing import Any

from alignkit.backends.base import Backend
from alignkit.errors import AlignkitError
from alignkit.redteam.base import Attack, Budget, Seed, TemplateAttack, Trial
from alignkit.redteam.bon import BestOfN
from alignkit.redteam.direct import Direct
from alignkit.redteam.encodings import (
    Base64,
    CharacterSpacing,
    Confusables,
    Leetspeak,
    PayloadSplitting,
    Rot13,
    ZeroWidth,
)
from alignkit.redteam.injection import IndirectInjection
from alignkit.redteam.multiturn import Crescendo
from alignkit.redteam.pair import PAIR
from alignkit.redteam.templates import (
    DeveloperMode,
    HypotheticalFrame,
    PrefixInjection,
    RefusalSuppression,
    RolePlayPersona,
)

ATTACK_CLASSES: tuple[type[Any], ...] = (
    Direct,
    RolePlayPersona,
    HypotheticalFrame,
    DeveloperMode,
    RefusalSuppression,
    PrefixInjection,
    Base64,
    Rot13,
    Leetspeak,
    CharacterSpacing,
    Confusables,
    ZeroWidth,
    PayloadSplitting,
    Crescendo,
    BestOfN,
    IndirectInjection,
    PAIR,
)
"""Every registered attack, the baseline first."""

FAMILIES = tuple(dict.fromkeys(c.family for c in ATTACK_CLASSES))

__all__ = [
    "ATTACK_CLASSES",
    "FAMILIES",
    "Attack",
    "Budget",
    "Seed",
    "TemplateAttack",
    "Trial",
    "build_attacks",
]


def build_attacks(spec: str = "all", attacker: Backend | None = None) -> list[Attack]:
    """`all`, or a comma list of family and attack names. The direct baseline is always included.
    PAIR uses `attacker` (default: the target itself)."""
    wanted = {s.strip() for s in spec.split(",") if s.strip()}
    known = {c.name for c in ATTACK_CLASSES} | set(FAMILIES)
    unknown = wanted - known - {"all"}
    if unknown:
        raise AlignkitError(
            f"unknown attack(s) {', '.join(sorted(unknown))}; families: {', '.join(FAMILIES)}; "
            f"attacks: {', '.join(c.name for c in ATTACK_CLASSES)}"
        )
    chosen = [c for c in ATTACK_CLASSES if "all" in wanted or c.name in wanted or c.family in wanted or c is Direct]
    attacks: list[Attack] = [c(attacker=attacker) if c is PAIR else c() for c in chosen]
    return attacks
