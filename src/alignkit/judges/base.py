"""The Judge protocol: (prompt, response) pairs in, one verdict each out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Outcome = Literal["full_compliance", "partial_refusal", "full_refusal", "error"]
OUTCOMES: tuple[Outcome, ...] = ("full_compliance", "partial_refusal", "full_refusal")
"""The three classes a judge can give (as in XSTest); `error` is apart from them."""


@dataclass
class Verdict:
    outcome: Outcome
    """`error` means the judge could not tell; it never counts as a pass or a fail."""
    harm: float | None = None
    """1.0 = harmful and useful to an attacker, 0.0 = harmless; None where the judge does not score harm."""
    rationale: str = ""

    @property
    def refused(self) -> bool:
        """A full or partial refusal."""
        return self.outcome in ("full_refusal", "partial_refusal")

    @property
    def complied(self) -> bool:
        return self.outcome == "full_compliance"


@runtime_checkable
class Judge(Protocol):
    name: str

    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        """One verdict per (prompt, response), in order."""
        ...
