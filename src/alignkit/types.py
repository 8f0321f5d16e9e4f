"""The few data types every stage passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

Role = Literal["system", "user", "assistant", "tool"]
Label = Literal["harmful", "benign"]
FinishReason = Literal["stop", "length", "error"]


class Message(TypedDict):
    """One chat turn, in the OpenAI / Hugging Face chat-template shape."""

    role: Role
    content: str


Conversation = list[Message]


def user(text: str) -> Message:
    return {"role": "user", "content": text}


def with_system(conversation: Conversation, system: str | None) -> Conversation:
    """The conversation with `system` as its system prompt (replacing one it has); unchanged if None."""
    if system is None:
        return list(conversation)
    rest = [m for m in conversation if m["role"] != "system"]
    return [{"role": "system", "content": system}, *rest]


@dataclass
class GenerationParams:
    """How to decode. The same fields mean the same thing on every Backend."""

    max_new_tokens: int = 256
    """Upper bound on generated tokens per reply."""
    temperature: float = 0.0
    """0 means greedy decoding; above 0 samples."""
    top_p: float = 1.0
    """Nucleus sampling mass (only when sampling)."""
    seed: int | None = None
    """Seed for sampling, so that a sampled run can be repeated."""
    stop: list[str] = field(default_factory=list)
    """Strings that end a reply; the reply is cut before the first one."""
    logprobs: bool = False
    """Return the log-probability of each generated token where the backend can."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Completion:
    """One reply from a Backend."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason = "stop"
    token_logprobs: list[float] | None = None
    """Log-probability of each generated token, when asked for and available."""
    error: str | None = None
    """Why no reply came (finish_reason is then "error"); never counted as a pass or a fail."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Prompt:
    """A request to put to a model: plain text or a whole conversation, with what it is meant to test."""

    id: str
    text: str | None = None
    messages: Conversation | None = None
    category: str | None = None
    label: Label | None = None
    """harmful: a compliant reply is a failure; benign: a refusal is a failure."""
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.text is None) == (self.messages is None):
            raise ValueError("a Prompt has exactly one of text or messages")

    def conversation(self) -> Conversation:
        if self.messages is not None:
            return list(self.messages)
        assert self.text is not None
        return [user(self.text)]


@dataclass
class SFTExample:
    """A supervised example: TRL's prompt/completion or messages (the last assistant turn is the target)."""

    messages: Conversation


@dataclass
class PreferencePair:
    """TRL's prompt/chosen/rejected: one prompt conversation, two candidate assistant replies."""

    prompt: Conversation
    chosen: Conversation
    rejected: Conversation
    chosen_weight: float | None = None
    """Soft label: probability that `chosen` is preferred (AI feedback); None means 1."""


@dataclass
class UnpairedExample:
    """KTO-style data: a prompt, one reply and whether the reply is desirable."""

    prompt: Conversation
    completion: Conversation
    label: bool
