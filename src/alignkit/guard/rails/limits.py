"""Size limits: characters, approximate tokens and turns, checked before anything reads the text."""

from __future__ import annotations

import re

from alignkit.guard.base import Decision, RailContext, Side, allow

_TOKEN = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Words and punctuation marks, a word of more than 4 characters counted as several: within ~20% of
    a BPE tokenizer's count on English, and never fooled by a long run without spaces."""
    return sum(1 + (len(t) - 1) // 4 for t in _TOKEN.findall(text))


class LimitsRail:
    """Blocks inputs over `max_chars`, `max_tokens` (approximate) or a conversation over `max_turns` or
    `max_conversation_chars` in all; on
    the output side, rewrites a reply over `max_chars` by cutting it at the last space before the limit."""

    name = "limits"
    uses_model = False

    def __init__(
        self,
        side: Side = "input",
        *,
        max_chars: int | None = 32_000,
        max_tokens: int | None = 8_000,
        max_turns: int | None = 200,
        max_conversation_chars: int | None = None,
    ) -> None:
        self.side: Side = side
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.max_turns = max_turns
        self.max_conversation_chars = max_conversation_chars

    def check(self, text: str, context: RailContext) -> Decision:
        if self.side == "output":
            if self.max_chars is not None and len(text) > self.max_chars:
                cut = text.rfind(" ", 0, self.max_chars + 1)
                cut = cut if cut > self.max_chars // 2 else self.max_chars
                return Decision("rewrite", self.name, f"reply over {self.max_chars} characters", text=text[:cut])
            return allow(self.name)
        if self.max_turns is not None and len(context.conversation) > self.max_turns:
            return Decision("block", self.name, f"conversation over {self.max_turns} turns")
        if self.max_chars is not None and len(text) > self.max_chars:
            return Decision("block", self.name, f"message over {self.max_chars} characters")
        limit = self.max_conversation_chars
        if limit is not None and sum(len(m["content"]) for m in context.conversation) > limit:
            return Decision("block", self.name, f"conversation over {limit} characters")
        # Every token is at least one character long and counts at most its length: short texts need no count.
        if self.max_tokens is not None and len(text) > self.max_tokens and approx_tokens(text) > self.max_tokens:
            return Decision("block", self.name, f"message over about {self.max_tokens} tokens")
        return allow(self.name)
