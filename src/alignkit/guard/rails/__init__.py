"""Rails, one module per family. `RAILS` names each with the sides it can guard."""

from __future__ import annotations

from alignkit.guard.base import Side
from alignkit.guard.rails.canary import CanaryRail
from alignkit.guard.rails.classifier import ClassifierRail
from alignkit.guard.rails.injection import InjectionRail
from alignkit.guard.rails.judge import JudgeRail
from alignkit.guard.rails.limits import LimitsRail
from alignkit.guard.rails.obfuscation import ObfuscationRail
from alignkit.guard.rails.pii import PIIRail
from alignkit.guard.rails.secrets import SecretsRail
from alignkit.guard.rails.topic import PhraseRail, TopicRail

RAILS: dict[str, tuple[type, tuple[Side, ...]]] = {
    "limits": (LimitsRail, ("input", "output")),
    "obfuscation": (ObfuscationRail, ("input",)),
    "injection": (InjectionRail, ("input",)),
    "pii": (PIIRail, ("input", "output")),
    "secrets": (SecretsRail, ("input", "output")),
    "phrases": (PhraseRail, ("input",)),
    "topic": (TopicRail, ("input",)),
    "classifier": (ClassifierRail, ("input",)),
    "judge": (JudgeRail, ("output",)),
    "canary": (CanaryRail, ("output",)),
}
"""Every rail, by name: its class and the sides it can check."""

__all__ = [
    "RAILS",
    "CanaryRail",
    "ClassifierRail",
    "InjectionRail",
    "JudgeRail",
    "LimitsRail",
    "ObfuscationRail",
    "PIIRail",
    "PhraseRail",
    "SecretsRail",
    "TopicRail",
]
