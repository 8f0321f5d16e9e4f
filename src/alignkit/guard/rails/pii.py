"""Personal data: e-mail addresses, phone numbers, payment cards (Luhn), IBANs (mod 97), national ids
(US SSN, UK NINO) and IP addresses, found in every view of the text and redacted where they stand."""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from alignkit.guard.base import Decision, RailContext, Redaction, Side, allow, redact

PII_KINDS = ("email", "phone", "card", "iban", "national_id", "ip")
_DIGIT = re.compile(r"\d")


def count_digits(text: str) -> int:
    return sum(map(text.count, "0123456789")) if text.isascii() else len(_DIGIT.findall(text))


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check that payment card numbers carry in their last digit."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[068]|35|6(?:011|5|4[4-9]|2))")


@lru_cache(maxsize=4096)
def card_valid(number: str) -> bool:
    digits = number.replace(" ", "").replace("-", "")
    if not digits.isdigit():
        digits = re.sub(r"\D", "", number)
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_valid(digits)


IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27,
    "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24,
    "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


_NO_SPACE_DASH = str.maketrans("", "", " \t\n\r\f\v-")


@lru_cache(maxsize=4096)
def iban_valid(candidate: str) -> bool:
    """ISO 13616: the country's length, then the number with its first four characters moved to the end,
    letters as 10..35, is 1 mod 97."""
    s = candidate.translate(_NO_SPACE_DASH).upper()
    if not 15 <= len(s) <= 34:
        return False
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", s) or IBAN_LENGTHS.get(s[:2], len(s)) != len(s):
        return False
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ssn_valid(candidate: str) -> bool:
    d = re.sub(r"\D", "", candidate)
    area, group, serial = d[:3], d[3:5], d[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_TOLL_FREE = re.compile(r"^(?:1?8(?:00|88|77|66|55|44|33)|(?:44)?0?80[08])")


def phone_valid(candidate: str) -> bool:
    """Not a toll-free or freephone number: helplines are meant to be shared."""
    return not _TOLL_FREE.match(re.sub(r"\D", "", candidate))


def ip_valid(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


_HEX_LOOKALIKE = str.maketrans({"O": "0", "o": "0", "I": "1", "l": "1", "i": "1", "S": "5", "s": "5", "Z": "2",
                                 "z": "2", "G": "6", "T": "7", "g": "9", "q": "9"})  # fmt: skip
_LETTER_DIGIT = str.maketrans({"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "Z": "2", "E": "3", "A": "4",
                               "S": "5", "G": "6", "T": "7", "B": "8", "g": "9"})  # fmt: skip


_DIGIT_LETTER = str.maketrans(
    {"0": "O", "1": "I", "2": "Z", "3": "E", "4": "A", "5": "S", "6": "G", "7": "T", "8": "B"}
)


def ipv6_valid(candidate: str) -> bool:
    """An IPv6 address, once look-alike letters that are not hex digits are read as digits."""
    fixed = candidate.translate(_HEX_LOOKALIKE)
    return fixed.count(":") >= 2 and sum(c.isalnum() for c in fixed) >= 3 and ip_valid(fixed)


@lru_cache(maxsize=4096)
def iban_lookalike_valid(candidate: str) -> bool:
    """An IBAN written with look-alike letters for digits ("FRTG SGT3 ...") or leet in its country code
    ("d3 43..."): the country read as letters, the check digits as digits, then the BBAN with either every
    look-alike as a digit or its first four characters (a bank code, letters in many countries) kept; the
    mod-97 check decides."""
    s = candidate.translate(_NO_SPACE_DASH).upper()
    country, check, bban = s[:2].translate(_DIGIT_LETTER), s[2:4].translate(_LETTER_DIGIT), s[4:]
    if IBAN_LENGTHS.get(country) != len(s) or not check.isdigit():
        return False
    return any(
        iban_valid(country + check + b)
        for b in (bban.translate(_LETTER_DIGIT), bban[:4] + bban[4:].translate(_LETTER_DIGIT))
    )


@dataclass(frozen=True)
class Detector:
    kind: str
    placeholder: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None
    group: int = 0
    """The regex group that holds the data (the rest of the match is context, such as "SSN:"); -1: the
    last group that matched."""
    views: tuple[str, ...] | None = None
    """View kinds the detector reads (default: all but the squashed and de-leeted ones, where digits that
    are part of a number would read as letters)."""
    shrink: bool = False
    """On a failed check, also try runs of the match's groups ("4111 1111 1111 1111 2" without the 2)."""
    min_digits: int = 0
    """Skip views with fewer digits (a cheap test that spares most texts most patterns)."""
    gate: re.Pattern[str] | None = None
    """Skip views where this quick pattern finds nothing."""


# Every repetition is bounded (RFC 5321: 64-character local parts, 63-character labels) so that no start
# position can scan to the end of the text: unbounded, "x at " + "b dot " * k took time quadratic in k.
_LOCAL = r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
_LABEL = r"[A-Za-z0-9-]{1,63}"
_AT_MARK = r"(?:\s?@\s?|\s{0,3}[\[({<]\s{0,3}(?i:at)\s{0,3}[\])}>]\s{0,3})"
_DOT_WORD = r"(?:\s{0,3}[\[({<]\s{0,3}(?i:dot)\s{0,3}[\])}>]\s{0,3}|\s{1,3}(?i:dot)\s{1,3})"
_DOT = rf"(?:\s?\.\s?|{_DOT_WORD})"
_TLD = (
    r"(?i:com|org|net|edu|gov|mil|int|io|co|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|pl|pt|ie|ru|jp|cn|in|br|mx|"
    r"ca|au|nz|us|info|biz|ai|dev|app|me|tv|xyz|eu)"
)
_EMAIL_VIEWS = ("folded", "despaced", "deleet", "deleet-l", "digits")
_EMAIL_CONTEXT = r"(?i:e-?mail|contact|reach|address|write to|send to|mail to|cc|bcc)"
_SEP = r"[ .\-]?"
_SSN_WORDS = r"(?i:\b(?:ssn|social security(?: number| no\.?| #)?|sozialversicherungsnummer)\b)"
_CARD = r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"
DETECTORS = (
    Detector(
        "email",
        "[EMAIL]",
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,63}\b"
        ),
        gate=re.compile("@"),
        views=_EMAIL_VIEWS,
    ),
    # Obfuscated: "name [at] example [dot] org", "r a v i @ example . org", "name at example dot com", and
    # "name at example.org" where the text speaks of e-mail (else "the tip line at tips.fbi.gov" would count).
    Detector(
        "email",
        "[EMAIL]",
        re.compile(rf"{_LOCAL}{_AT_MARK}{_LABEL}(?:{_DOT}{_LABEL}){{0,8}}{_DOT}{_TLD}\b"),
        gate=re.compile(r"@|[\[({<]\s*at\s*[\])}>]", re.IGNORECASE),
        views=_EMAIL_VIEWS,
    ),
    Detector(
        "email",
        "[EMAIL]",
        re.compile(
            rf"{_LOCAL}(?:{_DOT_WORD}{_LABEL}){{0,4}}\s{{1,3}}(?i:at)\s{{1,3}}{_LABEL}(?:{_DOT}{_LABEL}){{0,6}}?{_DOT_WORD}"
            rf"(?:{_LABEL}{_DOT}){{0,6}}{_TLD}\b"
        ),
        gate=re.compile(r"\bdot\b", re.IGNORECASE),
        views=_EMAIL_VIEWS,
    ),
    Detector(
        "email",
        "[EMAIL]",
        re.compile(
            rf"{_EMAIL_CONTEXT}\b[^\n]{{0,40}}?({_LOCAL}\s{{1,3}}(?i:at)\s{{1,3}}{_LABEL}(?:\.{_LABEL}){{0,8}}\.{_TLD})\b"
        ),
        group=1,
        gate=re.compile(rf"{_EMAIL_CONTEXT}\b"),
        views=_EMAIL_VIEWS,
    ),
    Detector("card", "[CARD]", re.compile(_CARD), card_valid, shrink=True, min_digits=13),
    Detector(
        "iban",
        "[IBAN]",
        re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"),
        iban_valid,
        shrink=True,
        min_digits=8,
    ),
    Detector(
        "iban",
        "[IBAN]",
        re.compile(r"(?i:\b[A-Z0-9]{2}[0-9A-Z]{2}(?:[ -]?[0-9A-Z]{4}){2,7}(?:[ -]?[0-9A-Z]{1,3})?\b)"),
        iban_lookalike_valid,
        shrink=True,
        views=("folded", "despaced"),
        min_digits=2,
    ),
    Detector(
        "national_id",
        "[NATIONAL_ID]",
        re.compile(r"(?<![\d-])\d{3}([- .])\d{2}\1\d{4}(?![\d-])"),
        ssn_valid,
        min_digits=9,
    ),
    Detector(
        "national_id",
        "[NATIONAL_ID]",
        re.compile(rf"{_SSN_WORDS}\D{{0,40}}?(?<!\d)(\d{{9}})(?!\d)|(?<!\d)(\d{{9}})(?!\d)\D{{0,40}}?{_SSN_WORDS}"),
        ssn_valid,
        group=-1,
        min_digits=9,
    ),
    Detector(
        "national_id",
        "[NATIONAL_ID]",
        re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
        min_digits=6,
    ),
    Detector(
        "phone",
        "[PHONE]",
        re.compile(
            rf"(?<![\w+])(?<!\d[ -])(?:\+\d{{1,3}}{_SEP}(?:\(\d{{1,4}}\){_SEP}|\d{{1,4}}{_SEP})"
            rf"(?:\d{{2,4}}{_SEP}){{1,3}}\d{{2,4}}"
            rf"|\(?\d{{3}}\)?{_SEP}\d{{3}}[ .\-]\d{{4}}"
            rf"|\(\d{{3}}\)\s?\d{{3}}{_SEP}\d{{4}}"
            rf"|0\d{{2,4}}[ \-]\d{{3,4}}[ \-]?\d{{3,4}})(?![\w])(?![ -]\d)"
        ),
        phone_valid,
        min_digits=7,
    ),
    # Digits someone spelled out one by one are a number meant to be read, not an order number.
    Detector(
        "phone",
        "[PHONE]",
        re.compile(r"(?<![\w])\+?[-.]?\d{10,15}(?!\d)"),
        phone_valid,
        views=("despaced",),
        min_digits=10,
    ),
    Detector("ip", "[IP]", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)"), ip_valid, min_digits=4),
    Detector(
        "ip",
        "[IP]",
        re.compile(r"(?<![\w:])(?:[0-9A-Za-z]{0,4}:){2,7}[0-9A-Za-z]{0,4}(?![\w:])"),
        ipv6_valid,
        gate=re.compile(":.*:"),
    ),
)


def _parts(candidate: str) -> list[tuple[int, int]]:
    """(start, end) of each contiguous run of space- or dash-separated groups, longest first:
    "3 4539 5260 1815 9083" also yields "4539 5260 1815 9083"."""
    groups = [m.span() for m in re.finditer(r"[^ -]+", candidate)]
    runs = [(groups[i][0], groups[j][1]) for i in range(len(groups)) for j in range(i, len(groups))]
    return sorted(runs, key=lambda r: r[0] - r[1])[1:]


class _Spans:
    """Disjoint spans, sorted: an overlap test in log time (a list scan made many matches quadratic)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.starts, start)
        return (i > 0 and self.ends[i - 1] > start) or (i < len(self.starts) and self.starts[i] < end)

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_right(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)


class PIIRail:
    """Redacts personal data in place (`[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]`, `[NATIONAL_ID]`, `[IP]`):
    cards must pass the Luhn check and carry a card-network prefix, IBANs their country's length and the
    mod-97 check, SSNs the allocation rules, IPs must parse. Every view is read, so spaced-out, look-alike
    and base64-encoded data is found too; an encoded payload is redacted whole."""

    name = "pii"
    uses_model = False

    def __init__(self, side: Side = "input", *, kinds: tuple[str, ...] = PII_KINDS, block: bool = False) -> None:
        unknown = set(kinds) - set(PII_KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {', '.join(PII_KINDS)}")
        self.side: Side = side
        self.block = block
        self.detectors = [d for d in DETECTORS if d.kind in kinds]

    def find(self, context: RailContext) -> list[tuple[str, Redaction]]:
        found: list[tuple[str, Redaction]] = []
        claimed: set[tuple[int, int]] = set()
        for view in context.views:
            kind = view.kind.split(":")[-1]
            if kind == "squashed":
                continue
            taken = _Spans()
            digits = count_digits(view.text)
            for d in self.detectors:
                if (kind not in d.views) if d.views is not None else kind.startswith("deleet"):
                    continue
                if digits < d.min_digits or (d.gate is not None and not d.gate.search(view.text)):
                    continue
                for m in d.pattern.finditer(view.text):
                    group = d.group if d.group >= 0 else (m.lastindex or 0)
                    start, end = m.span(group)
                    value = m.group(group)
                    if taken.overlaps(start, end):
                        continue
                    if d.valid is not None and not d.valid(value):
                        runs = _parts(value) if d.shrink else []
                        run = next((r for r in runs if d.valid(value[r[0] : r[1]])), None)
                        if run is None:
                            continue
                        start, end = start + run[0], start + run[1]
                    taken.add(start, end)
                    span = view.source_span(start, end)
                    if span not in claimed:
                        claimed.add(span)
                        found.append((d.kind, Redaction(span[0], span[1], d.placeholder)))
        return found

    def check(self, text: str, context: RailContext) -> Decision:
        found = self.find(context)
        if not found:
            return allow(self.name)
        kinds = sorted({k for k, _ in found})
        reason = f"{len(found)} item(s): {', '.join(kinds)}"
        if self.block:
            return Decision("block", self.name, reason)
        return redact(self.name, text, [r for _, r in found], reason)
