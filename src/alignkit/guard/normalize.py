# ruff: noqa: RUF001
"""What rails read: text normalised against the tricks that hide words from pattern matching.

`clean` is what passes on (to the model, to the client): Unicode NFKC with invisible characters
removed. Views are alternative readings of `clean` that rails check as well: `folded` (look-alike
letters from other scripts folded to ASCII, accents dropped, one character for one, so offsets hold),
`despaced` ("b o m b", "k-i-l-l" joined), `deleet` ("1gn0r3" as "ignore"), `digits` ("(3o3) SSS-0IBS" as
"(303) 555-0185") and `squashed` (lower-case letters and digits only). Each view but the squashed one maps
its characters back to offsets in `clean`, so a rail that finds PII in any view can redact it where it
stands.

`decode_views` reads payloads hidden in base64, hex, escapes, ROT13, reversed text or invisible tag
characters as further views, so that every rail checks the decoded text as well.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache

INVISIBLE = frozenset(
    [
        0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0,
        *range(0x200B, 0x2010),  # zero-width space, non-joiner, joiner, LRM, RLM
        *range(0x202A, 0x202F),  # bidi embeddings and overrides
        *range(0x2060, 0x2070),  # word joiner, invisible operators, bidi isolates
        *range(0xFE00, 0xFE10),  # variation selectors
        *range(0xE0100, 0xE01F0),  # variation selectors supplement
        *range(0xE0000, 0xE0080),  # tag characters (invisible ASCII smuggling; decoded as a view)
    ]
)  # fmt: skip
ZWJ = 0x200D

_CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "р": "p", "ԛ": "q", "г": "r", "ѕ": "s", "т": "t", "у": "y", "х": "x", "ԝ": "w",
    "ү": "y", "ѡ": "w", "ɡ": "g", "ӏ": "l", "ь": "b", "ъ": "b", "ё": "e", "ї": "i", "џ": "u", "п": "n",
    "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K", "М": "M", "О": "O",
    "Р": "P", "Ѕ": "S", "Т": "T", "Х": "X", "У": "Y", "Ү": "Y", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "l",
    "Ь": "b", "З": "3", "Ч": "4", "б": "6",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s", "σ": "o", "μ": "u",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C", "ϲ": "c", "ϳ": "j",
    # Armenian, Latin extensions, small capitals, IPA
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "ı": "i", "ȷ": "j", "ɑ": "a", "ɒ": "a", "ɛ": "e",
    "ɩ": "i", "ɪ": "i", "ʟ": "l", "ɴ": "n", "ʀ": "r", "ʏ": "y", "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d",
    "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ᴊ": "j", "ᴋ": "k", "ᴍ": "m", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s", "ᴛ": "t",
    "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ƅ": "b", "ɗ": "d", "ƒ": "f", "ɦ": "h", "ĸ": "k", "ł": "l",
    "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ß": "b", "Ø": "O", "Ł": "L", "Đ": "D",
    # punctuation look-alikes
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-", "‘": "'", "’": "'", "‚": ",",
    "“": '"', "”": '"', "„": '"', "․": ".", "‧": ".", "∙": ".", "•": ".", "⁄": "/", "∕": "/", "＠": "@",
}  # fmt: skip
# Enclosed, squared and regional-indicator letters, which NFKC leaves alone.
for _base in (0x1F130, 0x1F150, 0x1F170, 0x1F1E6):
    for _i in range(26):
        _CONFUSABLES[chr(_base + _i)] = chr(ord("A") + _i)


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    """One character for one: a confusable's ASCII twin, an accented letter's base letter, else itself."""
    if c.isascii():
        return c
    if c in _CONFUSABLES:
        return _CONFUSABLES[c]
    base = unicodedata.normalize("NFKD", c)[:1]
    return base if base.isascii() and base.isalnum() else c


def _pictograph(c: str) -> bool:
    """An emoji-like symbol: above the letters' blocks, not a letter or digit, and not a look-alike of one
    (squared and enclosed letters fold to ASCII, so a joiner between them would split a word)."""
    return ord(c) > 0x2000 and not c.isalnum() and _fold_char(c) == c


def _clean_once(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        return text
    text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    # Joiners are judged by their neighbours once every other invisible character is gone.
    text = "".join(c for c in text if ord(c) == ZWJ or ord(c) not in INVISIBLE)
    if chr(ZWJ) in text:
        n = len(text)
        text = "".join(
            c
            for i, c in enumerate(text)
            if ord(c) != ZWJ or (0 < i < n - 1 and _pictograph(text[i - 1]) and _pictograph(text[i + 1]))
        )
    return unicodedata.normalize("NFKC", text)


def clean(text: str) -> str:
    """NFKC, invisible characters removed (a zero-width joiner is kept only between two emoji-like
    symbols), line and paragraph separators as newlines. Idempotent: repeated until nothing changes
    (removing a character can let NFKC compose its neighbours, which can change what a joiner sits between)."""
    out = _clean_once(text)
    while out != text:
        text, out = out, _clean_once(out)
    return out


def fold(text: str) -> str:
    """`text` with look-alike letters folded to ASCII, one character for one."""
    return text if text.isascii() else "".join(_fold_char(c) for c in text)


@dataclass(frozen=True)
class View:
    """One reading of a clean text."""

    kind: str
    """folded, despaced, squashed, deleet, or the decoder that produced it (base64, hex, rot13, ...)."""
    text: str
    origin: tuple[int, ...] | None = None
    """Offset in the clean text of each character of `text`; None means the same offsets."""
    span: tuple[int, int] | None = None
    """For a decoded payload: the span of the clean text it was decoded from (all of it maps there)."""

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the clean text that `text[start:end]` was read from."""
        if self.span is not None:
            return self.span
        if self.origin is None:
            return start, end
        if end <= start:
            return self.origin[start], self.origin[start]
        return self.origin[start], self.origin[end - 1] + 1


@dataclass(frozen=True)
class Reading:
    raw: str
    clean: str
    views: tuple[View, ...]

    @property
    def folded(self) -> str:
        return self.views[0].text


# Single characters set apart by spaces ("b o m b"); the gaps between words are wider ("i g n o r e   a l l").
# A run may start right after an opening quote, bracket or "=" ("key='s k - ...").
_SPACED = re.compile(r"(?<![^\s=:'\"(\[{<,;])\S(?:[ \t]{1,4}\S(?=[\s.,;:!?'\")\]}]|$)){2,}")
# Single letters or digits joined by one repeated mark: "k-i-l-l", "b.o.m.b", "s.k.-.p.r.o.j".
_JOINED = (
    re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9](?P<sep>[-_])[A-Za-z0-9](?:(?P=sep)[A-Za-z0-9]){1,}(?![A-Za-z0-9])"),
    re.compile(
        r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-](?P<sep>[.*|/+~:·])[A-Za-z0-9_-](?:(?P=sep)[A-Za-z0-9_-]){1,}(?![A-Za-z0-9_-])"
    ),
)
# A quick necessary condition for each (a middle unit between two gaps or marks), to spare most texts the
# full pattern, whose leading look-behind makes every position a start.
_DESPACE_GATES = (
    re.compile(r"[ \t]\S[ \t]{1,4}\S(?:[\s.,;:!?'\")\]}]|$)"),
    re.compile(r"[-_][A-Za-z0-9][-_]"),
    re.compile(r"[.*|/+~:·][A-Za-z0-9_-][.*|/+~:·]"),
)
_JOIN_MARKS = "-_.*|/+~:·"
_LEET = {"0": "o", "1": "i", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g",
         "@": "a", "$": "s", "!": "i", "+": "t", "€": "e", "£": "l", "(": "c", "¡": "i"}  # fmt: skip
_LEET_SYMBOLS = "@$!+€£(¡"
_LEET_CHARS = "0123456789" + _LEET_SYMBOLS
_LEET_MIXED = re.compile(r"[A-Za-z](?:[0-9]|[@$!+€£(¡][A-Za-z0-9])|[0-9@$!+€£(¡][A-Za-z]")
_DIGIT = re.compile(r"\d")
_NOT_ALNUM = re.compile(r"[\W_]+")
# A word with leet characters in it; symbols count only where a letter or digit follows ("$ystem", not "hi!").
_LEET_CHAR = r"(?:[A-Za-z0-9]|[@$!+€£(¡](?=[A-Za-z0-9]))"
_LEET_TOKEN = re.compile(rf"{_LEET_CHAR}+(?:'{_LEET_CHAR}+)*")
# Digits written as letters ("(3o3) SSS-0IBS", "2ZZ3oo5ZT9S34Z0G"): runs of such tokens with enough digits.
_AS_DIGIT = {
    "O": "0", "o": "0", "D": "0", "I": "1", "l": "1", "i": "1", "L": "1", "Z": "2", "z": "2",
    "E": "3", "A": "4", "S": "5", "s": "5", "G": "6", "b": "6", "T": "7", "B": "8", "g": "9", "q": "9",
}  # fmt: skip
_DIGITISH = "0-9" + "".join(_AS_DIGIT)
_DIGIT_RUN = re.compile(rf"(?<![A-Za-z0-9])[{_DIGITISH}]+(?:[ \-./():+]{{1,2}}[{_DIGITISH}]+)*(?![A-Za-z0-9])")


def _despace(text: str) -> tuple[str, list[int] | None]:
    """`text` with spaced-out and mark-joined letters run together, and the offset in `text` of each of
    its characters (None when nothing changed)."""
    origin: list[int] | None = None
    for pattern, gate in zip((_SPACED, *_JOINED), _DESPACE_GATES, strict=True):
        matches = list(pattern.finditer(text)) if gate.search(text) else []
        if not matches:
            continue
        if origin is None:
            origin = list(range(len(text)))
        out: list[str] = []
        out_origin: list[int] = []
        pos = 0
        for m in matches:
            out.append(text[pos : m.start()])
            out_origin.extend(origin[pos : m.start()])
            run = m.group()
            sep = m.groupdict().get("sep")
            units = [(i, ch) for i, ch in enumerate(run) if ch not in " \t" and ch != sep]
            gaps = [units[i + 1][0] - units[i][0] - 1 for i in range(len(units) - 1)]
            narrow = min(gaps)
            for i, (offset, unit) in enumerate(units):
                if i and gaps[i - 1] > narrow:
                    out.append(" ")
                    out_origin.append(origin[m.start() + offset - 1])
                out.append(unit)
                out_origin.append(origin[m.start() + offset])
            pos = m.end()
        out.append(text[pos:])
        out_origin.extend(origin[pos:])
        text, origin = "".join(out), out_origin
    return text, origin


_NOT_ALNUM_ASCII = bytes(b for b in range(128) if not chr(b).isalnum())


def _squash(text: str) -> str:
    if text.isascii():
        return text.encode().translate(None, _NOT_ALNUM_ASCII).decode().lower()
    return _NOT_ALNUM.sub("", text).lower()


def _deleet(text: str, one: str) -> str | None:
    """Leet characters inside words read as letters ("1" as `one`); None when the text has none. In a
    text written mostly in leet, short all-digit words are read as letters too ("41" as "ai"), and an
    "@" between the parts of an e-mail address stays an "@"."""
    if not any(c in text for c in _LEET_CHARS) or not _LEET_MIXED.search(text):
        return None
    tokens = _LEET_TOKEN.findall(text)
    mixed = sum(1 for t in tokens if any(c.isalpha() for c in t) and not t.replace("'", "").isalpha())
    mostly_leet = mixed >= 3 and mixed >= 0.3 * len(tokens)
    changed = False

    def swap(m: re.Match[str]) -> str:
        nonlocal changed
        token = m.group()
        letters = sum(c.isalpha() for c in token)
        if letters == len(token.replace("'", "")) or (letters == 0 and not (mostly_leet and len(token) <= 3)):
            return token
        changed = True
        email = "@" in token and text[m.end() : m.end() + 1] == "."
        return "".join(one if c == "1" else c if (c == "@" and email) else _LEET.get(c, c) for c in token)

    out = _LEET_TOKEN.sub(swap, text)
    return out if changed else None


def _digits(text: str) -> str | None:
    """Look-alike letters read as digits inside number-like runs; None when there are none."""
    if len(_DIGIT.findall(text)) < 3:
        return None
    changed = False

    def swap(m: re.Match[str]) -> str:
        nonlocal changed
        run = m.group()
        digits = sum(c.isdigit() for c in run)
        alnum = sum(c.isalnum() for c in run)
        if digits < 3 or digits == alnum or digits < 0.3 * alnum:
            return run
        changed = True
        return "".join(_AS_DIGIT.get(c, c) for c in run)

    out = _DIGIT_RUN.sub(swap, text)
    return out if changed else None


def read(text: str) -> Reading:
    """Normalise `text` and derive the views rails check."""
    c = clean(text)
    folded = fold(c)
    despaced, origin = _despace(folded)
    same = despaced == folded
    offsets = None if same or origin is None else tuple(origin)
    views = [View("folded", folded)]
    if not same:
        views.append(View("despaced", despaced, offsets))
    base = despaced
    deleeted = _deleet(despaced, "i")
    if deleeted is not None:
        views.append(View("deleet", deleeted, offsets))
        base = deleeted
        if "1" in despaced:
            views.append(View("deleet-l", _deleet(despaced, "l") or deleeted, offsets))
    digits = _digits(despaced)
    if digits is not None:
        views.append(View("digits", digits, offsets))
    # Squashed text cannot say where a match was, so it maps to the whole text.
    views.append(View("squashed", _squash(base), span=(0, len(c))))
    return Reading(text, c, tuple(views))


# ---- decoding: payloads hidden in base64, hex, escapes, ROT13, reversed text or tag characters

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
