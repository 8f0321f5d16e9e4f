"""The Backend protocol: conversations in, completions out, batched."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from alignkit.types import Completion, Conversation, GenerationParams

OnResult = Callable[[int, Completion], None]
"""Called with (index into the input, completion) as each reply is ready, in any order."""


@runtime_checkable
class Backend(Protocol):
    name: str
    """What produced the replies (a model name or endpoint), recorded next to every result."""

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams,
        on_result: OnResult | None = None,
    ) -> list[Completion]:
        """One completion per conversation, in input order. A failed reply comes back with
        `error` set rather than raising, so that one bad prompt never loses the batch."""
        ...


@dataclass
class Scored:
    """The log-probability of a given completion under the model."""

    logprob: float
    """Sum of `token_logprobs` (natural log)."""
    token_logprobs: list[float]
    """One entry per completion token."""

    @property
    def num_tokens(self) -> int:
        return len(self.token_logprobs)


@runtime_checkable
class ScoringBackend(Backend, Protocol):
    def score(
        self, conversations: Sequence[Conversation], completions: Sequence[str], *, include_eos: bool = False
    ) -> list[Scored]:
        """log p(completion | conversation) for each pair, with the assistant turn opened by the chat
        template; `include_eos` also scores the end-of-turn token."""
        ...
