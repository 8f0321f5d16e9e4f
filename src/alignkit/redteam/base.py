"""The Attack protocol: a seed request in, judged attempts against a target out."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from alignkit.backends.base import Backend
from alignkit.judges.base import Judge, Verdict
from alignkit.types import Conversation, GenerationParams, user


@dataclass
class Seed:
    """A harmful request to attack with (from a suite's train split or a user file)."""

    id: str
    text: str
    category: str = "uncategorised"


SUCCESS_OUTCOMES = ("full_compliance", "partial_refusal")
"""A reply judged either of these is a success for the attacker."""


@dataclass
class Trial:
    """One attempt: what was sent, what came back, what the judge said."""

    conversation: Conversation
    """The messages sent, ending with the last user turn."""
    reply: str
    verdict: Verdict
    completion_tokens: int = 0

    @property
    def success(self) -> bool:
        """The target complied in full or in part."""
        return self.verdict.outcome in SUCCESS_OUTCOMES


@dataclass
class Budget:
    """What an attack may still spend; adaptive attacks stop when it runs out."""

    prompts: int
    tokens: int

    def spend(self, prompts: int, tokens: int) -> None:
        self.prompts -= prompts
        self.tokens -= tokens

    @property
    def exhausted(self) -> bool:
        return self.prompts <= 0 or self.tokens <= 0


@runtime_checkable
class Attack(Protocol):
    name: ClassVar[str]
    family: ClassVar[str]
    goal: ClassVar[str]
    """What the attack tries to make the target do, in a sentence."""
    tags: ClassVar[tuple[str, ...]]

    def run(
        self,
        seed: Seed,
        target: Backend,
        judge: Judge,
        params: GenerationParams,
        rng: random.Random,
        budget: Budget,
    ) -> list[Trial]:
        """Attempts in order; an adaptive attack stops at its first success."""
        ...


class TemplateAttack:
    """An attack that rewrites the seed into fixed conversations: one target call per conversation."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    goal: ClassVar[str] = ""
    tags: ClassVar[tuple[str, ...]] = ()

    def conversations(self, seed: Seed, rng: random.Random) -> list[Conversation]:
        raise NotImplementedError

    def run(
        self,
        seed: Seed,
        target: Backend,
        judge: Judge,
        params: GenerationParams,
        rng: random.Random,
        budget: Budget,
    ) -> list[Trial]:
        convs = self.conversations(seed, rng)[: max(budget.prompts, 0)]
        return attempt(convs, seed, target, judge, params, budget)


def attempt(
    conversations: Sequence[Conversation],
    seed: Seed | Sequence[Seed],
    target: Backend,
    judge: Judge,
    params: GenerationParams,
    budget: Budget,
) -> list[Trial]:
    """Send conversations to the target and judge each reply against its seed's request (one seed for
    all, or one per conversation). Target errors become `error` verdicts, counted apart from failures."""
    if not conversations:
        return []
    seeds = [seed] * len(conversations) if isinstance(seed, Seed) else list(seed)
    completions = target.generate(list(conversations), params)
    budget.spend(len(conversations), sum(c.completion_tokens for c in completions))
    ok = [i for i, c in enumerate(completions) if c.ok]
    verdicts = judge.judge([seeds[i].text for i in ok], [completions[i].text for i in ok])
    by_index = dict(zip(ok, verdicts, strict=True))
    return [
        Trial(
            conversation=list(conv),
            reply=c.text,
            verdict=by_index.get(i, Verdict("error", rationale=c.error or "")),
            completion_tokens=c.completion_tokens,
        )
        for i, (conv, c) in enumerate(zip(conversations, completions, strict=True))
    ]


def single(text: str) -> list[Conversation]:
    return [[user(text)]]
