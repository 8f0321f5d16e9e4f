"""Obfuscation: payloads hidden in base64, hex, escapes, ROT13, reversed text or invisible tag characters.

`decode_views` turns each payload that decodes to readable text into views, so that every other rail
checks the decoded text as well (the guard does this for every input); `ObfuscationRail` reports what it
decoded, and blocks encoded payloads outright when configured to.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import urllib.parse

from alignkit.guard.base import Decision, RailContext, Side, allow
from alignkit.guard.normalize import Reading, View, read

_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{12,}={0,2}")
# Starting only where a run of base64 characters starts finds the same (leftmost, greedy) matches as
# starting anywhere, without rescanning the rest of every word.
_B64_LINES = re.compile(r"(?<![A-Za-z0-9+/])(?:[A-Za-z0-9+/]{20,}={0,2}[ \t]*\r?\n[ \t]*){1,}[A-Za-z0-9+/]{4,}={0,2}")
_HEX = re.compile(r"(?:(?:\\x|0x|%)?[0-9A-Fa-f]{2}[ ,:]?){6,}")
_HEX_GATE = re.compile(r"[0-9A-Fa-f]{2}[ ,:]?(?:\\x|0x|%)?[0-9A-Fa-f]{2}[ ,:]?(?:\\x|0x|%)?[0-9A-Fa-f]{2}")
_BINARY = re.compile(r"(?:[01]{8}[ ,]?){3,}")
_ESCAPE = re.compile(r"\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|&#x?[0-9A-Fa-f]+;|%[0-9A-Fa-f]{2}")
_WORD = re.compile(r"[a-z]+")
_TAGS = re.compile("[\U000e0020-\U000e007e]")
COMMON_WORDS = frozenset(
    {
        "a", "about", "above", "all", "an", "and", "any", "are", "as", "at", "be", "before", "by", "can", "code", "do",
        "does", "every", "for", "from", "give", "go", "have", "how", "i", "if", "in", "instructions", "into", "is",
        "it", "its", "just", "know", "like", "make", "me", "my", "new", "no", "not", "now", "of", "on", "or", "out",
        "over", "please", "previous", "prompt", "reveal", "rules", "say", "show", "so", "system", "tell", "that", "the",
        "their", "then", "there", "these", "this", "to", "up", "us", "use", "was", "we", "what", "when", "where",
        "which", "who", "why", "will", "with", "you", "your",
    }
)  # fmt: skip
MAX_DEPTH = 2


def english_share(text: str) -> float:
    """Share of the words of `text` that are among the most common English words."""
    words = _WORD.findall(text.lower())
    return sum(map(COMMON_WORDS.__contains__, words)) / len(words) if words else 0.0


def _readable(raw: bytes) -> str | None:
    """The bytes as text when they are UTF-8 and mostly printable, with some letters; else None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 4:
        return None
    printable = sum(c.isprintable() or c in "\n\r\t" for c in text)
    alnum = sum(c.isalnum() for c in text)
    letters = sum(c.isalpha() for c in text)
    dense = len(text.replace(" ", ""))
    if printable < 0.95 * len(text) or alnum < 0.6 * dense:
        return None
    # Words, or a number someone encoded (a card or a phone number): not random bytes that happen to print.
    return text if letters >= 3 or alnum - letters >= 6 else None


def _b64(token: str) -> str | None:
    token = re.sub(r"\s+", "", token).rstrip("=")
    if len(token) % 4 == 1:
        token = token[:-1]
    padded = token + "=" * (-len(token) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        return None
    return _readable(raw)


def _hex(token: str) -> str | None:
    digits = re.sub(r"\\x|0x|%|[ ,:]", "", token)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _readable(bytes.fromhex(digits))
    except ValueError:
        return None


def _binary(token: str) -> str | None:
    bits = re.sub(r"[ ,]", "", token)
    return _readable(bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits) - 7, 8)))


def _unescape(text: str) -> str:
    text = html.unescape(text)
    text = re.sub(r"\\u([0-9A-Fa-f]{4})", lambda m: chr(int(m.group(1), 16)), text)
    text = re.sub(r"\\x([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)
    return urllib.parse.unquote(text)


def _payloads(folded: str, raw: str, ciphers: bool = True) -> list[tuple[str, str, tuple[int, int]]]:
    """(decoder, decoded text, span in the clean text) for each payload found."""
    whole = (0, len(folded))
    found: list[tuple[str, str, tuple[int, int]]] = []
    tags = "".join(chr(ord(c) - 0xE0000) for c in _TAGS.findall(raw))
    if len(tags) >= 3:
        found.append(("tags", tags, whole))
    # Cheap necessary conditions first: base64 across lines needs a line break, hex three pairs in a row,
    # binary 24 bits.
    scans = (
        (_B64_LINES, "base64", _b64, "\n" in folded),
        (_B64, "base64", _b64, True),
        (_HEX, "hex", _hex, _HEX_GATE.search(folded) is not None),
        (_BINARY, "binary", _binary, folded.count("0") + folded.count("1") >= 24),
    )
    for pattern, kind, decode, possible in scans:
        for m in pattern.finditer(folded) if possible else ():
            decoded = decode(m.group())
            if decoded is not None:
                found.append((kind, decoded, m.span()))
    if len(_ESCAPE.findall(folded)) >= 3:
        unescaped = _unescape(folded)
        if unescaped != folded:
            found.append(("escapes", unescaped, whole))
    if not ciphers:
        return found
    # ROT13 or reversed text reads as English where the original does not: the whole text, or a line of it.
    lines = [(m.group(), m.span()) for m in re.finditer(r"[^\n]+", folded)]
    for segment, span in [(folded, whole)] + (lines if len(lines) > 1 else []):
        share = english_share(segment)
        if share >= (0.5 if span == whole else 0.2) or len(segment) < 12:
            continue
        for kind, alt in (("rot13", codecs.encode(segment, "rot13")), ("reversed", segment[::-1])):
            if english_share(alt) >= max(0.25, share + 0.15):
                found.append((kind, alt, span))
    return found


def decode_views(reading: Reading, depth: int = 0, *, ciphers: bool = True) -> list[View]:
    """Views of every payload in the text that decodes to readable text, decoded again up to MAX_DEPTH.
    `ciphers` off skips the ROT13 and reversed-text readings (replies, where they buy little)."""
    out: list[View] = []
    for kind, decoded, span in _payloads(reading.folded, reading.raw, ciphers):
        inner = read(decoded)
        out += [View(f"{kind}:{v.kind}", v.text, span=span) for v in inner.views]
        if depth + 1 < MAX_DEPTH:
            out += [
                View(f"{kind}:{v.kind}", v.text, span=span) for v in decode_views(inner, depth + 1, ciphers=ciphers)
            ]
    return out


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
