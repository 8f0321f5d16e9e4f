"""Obfuscation: payloads hidden in base64, hex, escapes, ROT13, reversed text or invisible tag characters.

`decode_views` (in `alignkit.guard.normalize`) turns each payload that decodes to readable text into views,
so that every other rail checks the decoded text as well (the guard does this for every input);
`ObfuscationRail` reports what it decoded, and blocks encoded payloads outright when configured to.
"""

from __future__ import annotations

from alignkit.guard.base import Decision, RailContext, Side, allow
from alignkit.guard.normalize import COMMON_WORDS, decode_views, english_share

__all__ = ["COMMON_WORDS", "ObfuscationRail", "decode_views", "english_share"]


class ObfuscationRail:
    """Reports payloads that had to be decoded (base64, hex, escapes, ROT13, reversed, tag characters) and
    heavy character-level disguise (spacing, leetspeak); the other rails read the decoded text. With
    `block_encoded`, any decodable payload is blocked outright."""

    name = "obfuscation"
    uses_model = False

    def __init__(self, side: Side = "input", *, block_encoded: bool = False) -> None:
        self.side: Side = side
        self.block_encoded = block_encoded

    def check(self, text: str, context: RailContext) -> Decision:
        decoded = sorted({v.kind.split(":")[0] for v in context.views if ":" in v.kind})
        disguised = sorted({v.kind for v in context.views if v.kind in ("despaced", "deleet")})
        if decoded and self.block_encoded:
            return Decision("block", self.name, f"encoded payload ({', '.join(decoded)})")
        if decoded or disguised:
            return allow(self.name, f"read through {', '.join(decoded + disguised)}")
        return allow(self.name)
