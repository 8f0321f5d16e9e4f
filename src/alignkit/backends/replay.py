"""Replies a model already gave, answered again without generating: a Backend in front of another.

A run measures the aligned model twice on the same prompts: bare (`after`), then behind the guard
(`guarded`). Every request the guard lets through reaches the model unchanged, so with greedy decoding its
reply is the one `after` already generated. `ReplayBackend` keeps such replies in a JSONL file, keyed by
the model's fingerprint, the conversation and the decoding settings, and answers from it; everything else
goes to the model behind it. Sampled requests always go to the model: a replay would fix one sample.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from alignkit.backends.base import Backend, OnResult
from alignkit.types import Completion, Conversation, GenerationParams


def reply_key(fingerprint: str, conversation: Conversation, params: GenerationParams) -> str:
    body = json.dumps([fingerprint, conversation, asdict(params)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


class ReplayBackend:
    """`inner` with a record of its greedy replies in `path`: conversations on record are answered from it,
    the rest by `inner`; with `record`, each new greedy reply without an error is appended (a reply is on
    disk once its line is, so a killed run keeps what it had). `fingerprint` names the model's weights: a
    record made under another fingerprint never answers."""

    def __init__(self, inner: Backend, path: str | Path, *, fingerprint: str, record: bool = False) -> None:
        self.inner = inner
        self.name = inner.name
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.record = record
        self.replayed = 0
        """Replies answered from the record, over this backend's life."""
        self._held: dict[str, Completion] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8")
            if record and text and not text.endswith("\n"):
                with self.path.open("a", encoding="utf-8") as f:
                    f.write("\n")  # the torn last line stays alone on its line
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                    self._held[str(row["key"])] = Completion(**row["completion"])
                except (ValueError, TypeError, KeyError):
                    continue  # a line torn by a kill: that reply is generated again

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams,
        on_result: OnResult | None = None,
    ) -> list[Completion]:
        keys = [reply_key(self.fingerprint, c, params) for c in conversations] if params.greedy else []
        out: list[Completion | None] = [None] * len(conversations)
        missing: list[int] = []
        for i in range(len(conversations)):
            held = self._held.get(keys[i]) if keys else None
            if held is None:
                missing.append(i)
                continue
            out[i] = held
            self.replayed += 1
            if on_result is not None:
                on_result(i, held)
        if not missing:
            return [c for c in out if c is not None]

        def relay(j: int, c: Completion) -> None:
            i = missing[j]
            with self._lock:
                if out[i] is not None:
                    return
                out[i] = c
                if keys and self.record and c.ok:
                    self._keep(keys[i], c)
            if on_result is not None:
                on_result(i, c)

        replies = self.inner.generate([conversations[i] for i in missing], params, relay)
        for j, c in enumerate(replies):
            relay(j, c)
        return [c if c is not None else Completion("", finish_reason="error", error="no reply") for c in out]

    def _keep(self, key: str, c: Completion) -> None:
        self._held[key] = c
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "completion": asdict(c)}, ensure_ascii=False) + "\n")
