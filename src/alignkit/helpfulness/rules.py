"""Rule scoring of checkable answers: phrase match for facts and extraction, number match for
arithmetic and unit conversions. Robust to the usual phrasing: case, trailing punctuation, curly
quotes, thousands separators and small numbers written as words ("twenty-four" reads as 24)."""

from __future__ import annotations

import re

from alignkit.helpfulness.items import HelpfulnessItem

_UNIT_WORDS = [
    *["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
    *["eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"],
]
_UNITS = {w: i for i, w in enumerate(_UNIT_WORDS)}
_TENS_WORDS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_TENS = {w: 10 * (i + 2) for i, w in enumerate(_TENS_WORDS)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORD = "|".join([*_UNITS, *_TENS, *_SCALES])
_NUMBER_RUN = re.compile(rf"\b(?:{_NUMBER_WORD})(?:(?:[\s-]+|\s+and\s+)(?:{_NUMBER_WORD}))*\b")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_CUE = re.compile(
    r"(?:=|≈|\bequals?\b|\bis\b|\bare\b|\bgets?\b|\bgives?\b|\bmakes?\b|\bleaves?\b|\bhas\b|\bhave\b|:)"
    r"\s*(?:about|approximately|roughly|around|exactly|just|only|a total of|\$|£|€)?\s*(-?\d+(?:\.\d+)?)"
)


def _words_value(run: str) -> int | None:
    """'one hundred and five' -> 105; None for a bare scale word ('hundred')."""
    total, current, seen_value = 0, 0, False
    for w in re.split(r"[\s-]+", run):
        if w == "and" or not w:
            continue
        if w in _UNITS:
            current += _UNITS[w]
            seen_value = True
        elif w in _TENS:
            current += _TENS[w]
            seen_value = True
        elif w in _SCALES:
            if not seen_value:
                return None
            scale = _SCALES[w]
            if scale == 100:
                current *= 100
            else:
                total += current * scale
                current = 0
    return total + current if seen_value else None


def words_to_digits(text: str) -> str:
    """Number words in lower-case text replaced by digits."""

    def swap(m: re.Match[str]) -> str:
        value = _words_value(m.group(0))
        return m.group(0) if value is None else str(value)

    return _NUMBER_RUN.sub(swap, text)


def normalise(text: str) -> str:
    """Lower case, straight quotes, digits for number words, no thousands separators, punctuation as
    spaces (except inside numbers and '&'), single spaces."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("\u2212", "-")
    t = words_to_digits(t)
    t = _THOUSANDS.sub("", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)
    t = re.sub(r"[^\w.&'\s]|_", " ", t)
    return " ".join(t.split())


def _strip_article(answer: str) -> str:
    for article in ("the ", "a ", "an "):
        if answer.startswith(article) and len(answer) > len(article):
            return answer[len(article) :]
    return answer


def phrase_match(reply: str, answers: tuple[str, ...] | list[str], pattern: str | None = None) -> bool:
    """Whether any accepted answer stands in the reply as a whole phrase (after `normalise`), or the
    pattern matches the raw reply."""
    if pattern is not None and re.search(pattern, reply, re.IGNORECASE):
        return True
    text = f" {normalise(reply)} "
    for answer in answers:
        a = _strip_article(normalise(answer))
        if a and re.search(rf"(?<![\w]){re.escape(a)}(?![\w])", text):
            return True
    return False


def numbers_in(reply: str) -> list[float]:
    """Every number in the reply, in order, number words included."""
    return [float(m) for m in _NUMBER.findall(normalise_numbers(reply))]


def normalise_numbers(reply: str) -> str:
    t = reply.lower().replace("\u2212", "-")
    return _THOUSANDS.sub("", words_to_digits(t))


def stated_numbers(reply: str) -> list[float]:
    """The numbers a reply puts forward as its answer: each number right after a cue ('=', 'is',
    'equals', 'makes', ':' ...) and the last number of the reply."""
    t = normalise_numbers(reply)
    out = [float(m) for m in _CUE.findall(t)]
    every = _NUMBER.findall(t)
    if every:
        out.append(float(every[-1]))
    return out


def number_match(reply: str, value: float, tolerance: float = 0.0) -> bool:
    """Whether a number the reply puts forward (`stated_numbers`) is within
    tolerance * max(|value|, 1) of value (1e-9 when the tolerance is 0: exact)."""
    slack = max(tolerance, 1e-9) * max(abs(value), 1.0)
    return any(abs(x - value) <= slack for x in stated_numbers(reply))


def score_rule(item: HelpfulnessItem, reply: str) -> bool:
    """Right or wrong, for every checkable kind but code (see `alignkit.helpfulness.code`)."""
    if item.kind in ("fact", "extraction"):
        return phrase_match(reply, item.answers, item.pattern)
    if item.kind in ("arithmetic", "unit_conversion"):
        assert item.value is not None
        return number_match(reply, item.value, item.tolerance)
    raise ValueError(f"{item.kind} items are not scored by a rule")
