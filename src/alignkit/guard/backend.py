"""A Backend behind the guard, itself a Backend: posture, red-team and the server run on it unchanged."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from alignkit.backends.base import Backend, OnResult
from alignkit.guard.engine import Guard, Screened
from alignkit.types import Completion, Conversation, GenerationParams


def _error(message: str) -> Completion:
    return Completion(text="", finish_reason="error", error=message)


class GuardedBackend:
    """Input rails on every user turn (a block answers with the constitution's refusal and never calls
    the model), the model on what passes (redacted, with the canary in the system prompt), output rails
    on each reply. Fails closed: a rail or model failure is a Completion with `error`, never a reply
    that was not checked. Conversations that pass go to the model in one batch."""

    def __init__(self, inner: Backend, guard: Guard) -> None:
        self.inner = inner
        self.guard = guard
        self.name = f"guard({inner.name})"
        self.blocked_inputs = 0
        """Conversations refused before reaching the model, over this backend's life."""
        self.blocked_outputs = 0
        """Replies replaced by a refusal."""
        self._count_lock = threading.Lock()

    def _finish(self, c: Completion, screened: Screened) -> Completion:
        if c.error is not None:
            return _error(c.error)
        try:
            reply = self.guard.screen_output(c.text, screened)
        except Exception as e:
            return _error(f"guard: {e}")
        if reply.blocked is not None:
            with self._count_lock:
                self.blocked_outputs += 1
        return Completion(
            text=reply.text,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            finish_reason="stop" if reply.blocked is not None else c.finish_reason,
            token_logprobs=None if reply.changed else c.token_logprobs,
        )

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams,
        on_result: OnResult | None = None,
    ) -> list[Completion]:
        out: list[Completion | None] = [None] * len(conversations)
        lock = threading.Lock()

        def emit(i: int, c: Completion) -> None:
            with lock:
                if out[i] is not None:
                    return
                out[i] = c
            if on_result is not None:
                on_result(i, c)

        pending: list[tuple[int, Screened]] = []
        for i, conversation in enumerate(conversations):
            try:
                screened = self.guard.screen_input(conversation)
            except Exception as e:
                emit(i, _error(f"guard: {e}"))
                continue
            if screened.blocked is not None:
                with self._count_lock:
                    self.blocked_inputs += 1
                emit(i, Completion(text=screened.refusal or "", finish_reason="stop"))
            else:
                pending.append((i, screened))
        if pending:

            def relay(j: int, c: Completion) -> None:
                i, screened = pending[j]
                emit(i, self._finish(c, screened))

            try:
                replies = self.inner.generate([s.conversation for _, s in pending], params, relay)
                for j, c in enumerate(replies):
                    if out[pending[j][0]] is None:
                        relay(j, c)
            except Exception as e:
                for i, _ in pending:
                    emit(i, _error(f"{self.inner.name}: {type(e).__name__}: {e}"))
        return [c if c is not None else _error("no reply") for c in out]
