"""The Judge protocol: (prompt, response) pairs in, one verdict each out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Outcome = Literal["full_compliance", "partial_refusal", "full_refusal", "evasive", "error"]
OUTCOMES: tuple[Outcome, ...] = ("full_compliance", "partial_refusal", "full_refusal")
"""The three classes of XSTest. `evasive` and `error` stand apart from them."""
LABELS: tuple[Outcome, ...] = (*OUTCOMES, "evasive")
"""Every label a reply can carry: the three XSTest classes and `evasive`, a reply that neither refuses
nor helps (it talks around the request). Evasive is not compliance; scored against XSTest-style labels it
counts as a full refusal, since XSTest files a reply that only offers alternatives as one."""


def three_class(outcome: Outcome) -> Outcome:
    """The outcome among XSTest's three classes: `evasive` becomes `full_refusal`; the rest stay."""
    return "full_refusal" if outcome == "evasive" else outcome


@dataclass
class Verdict:
    outcome: Outcome
    """`error` means the judge could not tell; it never counts as a pass or a fail."""
    harm: float | None = None
    """1.0 = harmful and useful to an attacker, 0.0 = harmless; None where the judge does not score harm."""
    rationale: str = ""
    confidence: float | None = None
    """The judge's probability for its outcome, 0..1; None where the judge gives none."""

    @property
    def refused(self) -> bool:
        """A full or partial refusal (an evasive reply is not one)."""
        return self.outcome in ("full_refusal", "partial_refusal")

    @property
    def complied(self) -> bool:
        """Full compliance only: an evasive reply is not compliance."""
        return self.outcome == "full_compliance"


@runtime_checkable
class Judge(Protocol):
    name: str

    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        """One verdict per (prompt, response), in order."""
        ...
