"""The Rail protocol: one text and its context in, one Decision out."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

from alignkit.guard.normalize import View, decode_views, read
from alignkit.types import Conversation

Side = Literal["input", "output"]
Action = Literal["allow", "block", "redact", "rewrite"]
SEVERITY: dict[Action, int] = {"allow": 0, "redact": 1, "rewrite": 2, "block": 3}


@dataclass(frozen=True)
class Redaction:
    """Replace `text[start:end]` with `placeholder`; offsets are into the text the rail was given."""

    start: int
    end: int
    placeholder: str


@dataclass(frozen=True)
class Decision:
    action: Action
    rail: str
    reason: str = ""
    """Why, in words that never quote the text checked (it may hold the very PII being redacted)."""
    text: str | None = None
    """The redacted or rewritten text when the action is redact or rewrite."""
    category: str | None = None
    """The hazard category, when the rail knows it."""
    redactions: tuple[Redaction, ...] = ()
    """For redact: the spans replaced, so that redactions from several rails can be merged."""

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


def allow(rail: str, reason: str = "", category: str | None = None) -> Decision:
    return Decision("allow", rail, reason, category=category)


def redact(rail: str, text: str, redactions: list[Redaction], reason: str) -> Decision:
    """A redact decision with `text` rebuilt from the merged spans."""
    merged = merge_redactions(redactions)
    return Decision("redact", rail, reason, text=apply_redactions(text, merged), redactions=tuple(merged))


def merge_redactions(redactions: list[Redaction]) -> list[Redaction]:
    """Sorted, with overlapping spans joined (the earlier span's placeholder wins)."""
    out: list[Redaction] = []
    for r in sorted(redactions, key=lambda r: (r.start, -r.end)):
        if out and r.start < out[-1].end:
            last = out[-1]
            out[-1] = replace(last, end=max(last.end, r.end))
        else:
            out.append(r)
    return out


def apply_redactions(text: str, redactions: list[Redaction]) -> str:
    parts, pos = [], 0
    for r in merge_redactions(redactions):
        parts += [text[pos : r.start], r.placeholder]
        pos = r.end
    parts.append(text[pos:])
    return "".join(parts)


@dataclass(frozen=True)
class RailContext:
    """What a rail may read besides the text itself."""

    views: tuple[View, ...]
    """Readings of the text, the folded one first, then de-spaced, de-leeted and decoded payloads."""
    side: Side = "input"
    conversation: Conversation = field(default_factory=list)
    """The whole conversation as the guard received it (normalised)."""
    turn: int | None = None
    """Index into `conversation` of the message checked; None for a reply."""
    prompt: str = ""
    """The last user message: what a reply answers."""
    system_prompt: str = ""
    """The system prompt the model was given, without the canary."""
    canary: str | None = None
    """The random token placed in the system prompt for this request."""
    suspected: frozenset[str] = frozenset()
    """Hazard categories the input rails noted for this request (blocked or not)."""
    request_id: str = ""

    @classmethod
    def of(cls, text: str, *, raw: str | None = None, decode: bool = True, **fields: object) -> RailContext:
        """A context whose views are read from `text`, the clean text rails check; `raw`, the text as
        received, when there is one (invisible tag characters, which cleaning drops, are decoded from it).
        Decoded payloads are included unless `decode` is off."""
        reading = read(raw if raw is not None else text)
        if reading.clean != text:
            reading = read(text)
        if decode:
            views = (*reading.views, *decode_views(reading, ciphers=fields.get("side", "input") == "input"))
        else:
            views = reading.views
        return cls(views=views, **fields)  # type: ignore[arg-type]


@runtime_checkable
class Rail(Protocol):
    name: str
    side: Side
    uses_model: bool
    """True for rails that run a model: they run in the guard's thread pool, the fast ones inline."""

    def check(self, text: str, context: RailContext) -> Decision:
        """Decide on `text` (already normalised: NFKC, invisible characters removed)."""
        ...
