"""A scripted backend so that evaluation, red-team, CAI and guard logic run offline in tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from alignkit.backends.base import OnResult
from alignkit.types import Completion, Conversation, FinishReason, GenerationParams

Script = Sequence[str | Exception] | Mapping[str, str | Exception] | Callable[[Conversation], str | Exception]


class MockBackend:
    """Replies from a script.

    - a sequence: the replies in call order, cycling;
    - a mapping: the reply of the first key found in the last user message, else `default`;
    - a callable: called with the conversation.

    A script entry that is an exception becomes a Completion with `error` set. Every conversation
    seen is kept in `calls`.
    """

    def __init__(self, script: Script = ("OK",), *, default: str = "OK", name: str = "mock") -> None:
        self.script = script
        self.default = default
        self.name = name
        self.calls: list[Conversation] = []

    def _reply(self, conversation: Conversation) -> str | Exception:
        n = len(self.calls)
        self.calls.append(list(conversation))
        if callable(self.script):
            return self.script(conversation)
        if isinstance(self.script, Mapping):
            last = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")
            return next((v for k, v in self.script.items() if k in last), self.default)
        if not self.script:
            return self.default
        return self.script[n % len(self.script)]

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams,
        on_result: OnResult | None = None,
    ) -> list[Completion]:
        out = []
        for i, conv in enumerate(conversations):
            reply = self._reply(conv)
            if isinstance(reply, Exception):
                c = Completion(text="", finish_reason="error", error=str(reply))
            else:
                words = reply.split()
                reason: FinishReason = "length" if len(words) > params.max_new_tokens else "stop"
                text = " ".join(words[: params.max_new_tokens]) if reason == "length" else reply
                for s in params.stop:
                    if s in text:
                        text = text[: text.index(s)]
                c = Completion(
                    text=text,
                    prompt_tokens=sum(len(m["content"].split()) for m in conv),
                    completion_tokens=min(len(words), params.max_new_tokens),
                    finish_reason=reason,
                )
            out.append(c)
            if on_result is not None:
                on_result(i, c)
        return out
