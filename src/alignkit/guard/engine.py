"""The Guard: runs the input rails on every turn of a request and the output rails on every reply.

Model-free rails run inline (they take microseconds; a thread hop would cost more), rails that run a
model go to a thread pool so that they overlap. Any rail that raises makes the whole check fail
(`GuardError`): nothing unchecked ever passes.
"""

from __future__ import annotations

import bisect
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from alignkit.errors import AlignkitError
from alignkit.guard.audit import AuditLog, AuditRecord
from alignkit.guard.base import (
    SEVERITY,
    Decision,
    Rail,
    RailContext,
    Redaction,
    Side,
    apply_redactions,
    merge_redactions,
)
from alignkit.guard.config import GuardConfig
from alignkit.guard.normalize import clean
from alignkit.guard.rails.canary import new_canary, with_canary
from alignkit.judges.base import Judge
from alignkit.types import Conversation, Message

CHECKED_ROLES = ("system", "user", "assistant", "tool")
"""Roles whose messages the input rails read: every one (a client's system or assistant turn is as much
the client's text as a user turn)."""


class GuardError(AlignkitError):
    """A rail failed; the request fails closed."""


@dataclass
class Screened:
    """An input after the input rails: what goes upstream, or why nothing does."""

    request_id: str
    conversation: Conversation
    """What the model gets: normalised, redacted, with the canary in the system prompt."""
    decisions: list[Decision]
    blocked: Decision | None = None
    refusal: str | None = None
    """The refusal to reply with when blocked."""
    canary: str | None = None
    system_prompt: str = ""
    """The system prompt the model gets, without the canary line."""
    prompt: str = ""
    """The last user message, normalised: what the reply answers."""
    suspected: frozenset[str] = frozenset()
    redacted: bool = False
    """True when a rail redacted or rewrote some turn before it went upstream."""


@dataclass
class Reply:
    """A reply after the output rails."""

    text: str
    """What the client gets: the (redacted) reply, or the refusal when blocked."""
    decisions: list[Decision] = field(default_factory=list)
    blocked: Decision | None = None
    changed: bool = False
    """True when the text differs from what the model said (redacted, rewritten or refused)."""


def _most_severe(decisions: Sequence[Decision]) -> Decision:
    return max(decisions, key=lambda d: SEVERITY[d.action])


def build_rails(
    config: GuardConfig,
    side: Side,
    *,
    encoder: Any | None = None,
    judge: Judge | None = None,
    classifier: Any | None = None,
) -> list[Rail]:
    """The rails `config` turns on for `side`, cheapest first. `encoder` (a SentenceEncoder), `judge` and
    `classifier` (a trained ClassifierModel) are built from the config when not given."""
    from alignkit.guard.rails import (
        CanaryRail,
        InjectionRail,
        JudgeRail,
        LimitsRail,
        ObfuscationRail,
        PhraseRail,
        PIIRail,
        SecretsRail,
        TopicRail,
    )

    rails: list[Rail] = []
    c = config
    if c.limits.enabled:
        if side == "input":
            rails.append(
                LimitsRail(
                    side,
                    max_chars=c.limits.max_input_chars,
                    max_tokens=c.limits.max_input_tokens,
                    max_turns=c.limits.max_turns,
                    max_conversation_chars=c.limits.max_conversation_chars,
                )
            )
        elif c.limits.max_output_chars is not None:
            rails.append(LimitsRail(side, max_chars=c.limits.max_output_chars, max_tokens=None, max_turns=None))
    if side == "input" and c.obfuscation.enabled:
        rails.append(ObfuscationRail(side, block_encoded=c.obfuscation.block_encoded))
    if side == "input" and c.injection.enabled:
        rails.append(InjectionRail(side))
    pii_action = c.pii.input if side == "input" else c.pii.output
    if c.pii.enabled and pii_action != "off":
        rails.append(PIIRail(side, kinds=tuple(c.pii.kinds), block=pii_action == "block"))
    secrets_action = c.secrets.input if side == "input" else c.secrets.output
    if c.secrets.enabled and secrets_action != "off":
        rails.append(SecretsRail(side, block=secrets_action == "block"))
    if side == "output" and c.canary.enabled:
        rails.append(CanaryRail(side, min_leak_words=c.canary.min_leak_words))
    if side == "input" and c.phrases.enabled and c.phrases.phrases:
        rails.append(PhraseRail(c.phrases.phrases, side))
    if side == "input" and c.topic.enabled and c.topic.exemplars:
        from alignkit.guard.rails.topic import SentenceEncoder

        t = c.topic
        rails.append(
            TopicRail(
                encoder if encoder is not None else SentenceEncoder(t.encoder),
                t.exemplars,
                t.benign,
                t.threshold,
                side=side,
                k=t.k,
                temperature=t.temperature,
                max_benign_share=t.max_benign_share,
                suite_exemplars=t.suite_exemplars,
                suspect_margin=t.suspect_margin,
                action=t.action,
                categories=t.categories,
            )
        )
    if side == "input" and c.classifier.enabled:
        from alignkit.guard.rails.classifier import ClassifierRail, ClassifierSettings, trained_classifier

        k = c.classifier
        settings = ClassifierSettings(max_val_false_positive=k.max_val_false_positive)
        rails.append(
            ClassifierRail(
                classifier if classifier is not None else trained_classifier(k.hazards, settings, k.encoder),
                side=side,
                threshold=k.threshold,
                categories=k.categories,
                action=k.action,
                suspect_margin=k.suspect_margin,
            )
        )
    if side == "output" and c.judge.enabled:
        if judge is None:
            from alignkit.judges import make_judge

            judge = make_judge(c.judge.judge, backend=c.judge.backend, base_url=c.judge.base_url)
        rails.append(JudgeRail(judge, side, max_harm=c.judge.max_harm))
    return rails


def pieces(text: str) -> list[str]:
    """`text` split after each run of whitespace: pieces that normalise independently (NFKC composes
    nothing across a space, and the joiner rule reads only a joiner's neighbours)."""
    return re.findall(r"\S*\s+|\S+$", text) if text else []


def redact_in_place(raw: str, redactions: list[Redaction]) -> str:
    """`raw` with `redactions` (offsets into clean(raw)) applied: pieces they touch are normalised and
    redacted, every other piece keeps the sender's own characters."""
    merged = merge_redactions(redactions)
    out: list[str] = []
    touched: list[str] = []
    pos = 0
    start = 0
    for piece in pieces(raw):
        c = clean(piece)
        end = pos + len(c)
        hits = any(r.start < end and pos < r.end for r in merged)
        spans_on = any(r.start < pos < r.end for r in merged)
        if hits or spans_on:
            if not touched:
                start = pos
            touched.append(c)
        else:
            if touched:
                out.append(_redact_run("".join(touched), start, merged))
                touched = []
            out.append(piece)
        pos = end
    if touched:
        out.append(_redact_run("".join(touched), start, merged))
    return "".join(out)


def _redact_run(text: str, offset: int, redactions: list[Redaction]) -> str:
    end = offset + len(text)
    local = [
        Redaction(max(r.start, offset) - offset, min(r.end, end) - offset, r.placeholder if r.start >= offset else "")
        for r in redactions
        if r.start < end and offset < r.end
    ]
    return apply_redactions(text, local)


class Guard:
    """Runs the configured rails; records every decision in the audit log when one is given."""

    def __init__(
        self,
        config: GuardConfig,
        *,
        input_rails: Sequence[Rail] | None = None,
        output_rails: Sequence[Rail] | None = None,
        audit: AuditLog | None = None,
        encoder: Any | None = None,
        judge: Judge | None = None,
        classifier: Any | None = None,
        workers: int = 4,
    ) -> None:
        self.config = config
        self.input_rails = (
            list(input_rails)
            if input_rails is not None
            else build_rails(config, "input", encoder=encoder, classifier=classifier)
        )
        self.output_rails = (
            list(output_rails) if output_rails is not None else build_rails(config, "output", judge=judge)
        )
        self.audit = audit
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="guard-rail")

    @property
    def uses_model(self) -> bool:
        """True when some rail runs a model (callers on an event loop should then run checks in a thread)."""
        return any(r.uses_model for r in (*self.input_rails, *self.output_rails))

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    def _context(self, text: str, **fields: Any) -> RailContext:
        return RailContext.of(text, decode=self.config.obfuscation.enabled, **fields)

    def _run(self, rails: Sequence[Rail], items: Sequence[tuple[str, RailContext]], side: Side,
             request_id: str, audited: bool = True, tally: Tally | None = None) -> list[list[Decision]]:  # fmt: skip
        """decisions[r][i]: rail r on item i. Failing rails are audited as errors (with what `tally` holds),
        then GuardError. With `tally`, decisions are added to it instead of the audit log (a stream's
        windows: the tally is written once, when the stream ends, as one reply's decisions would be)."""

        def run_one(rail: Rail) -> tuple[list[Decision], float]:
            start = time.perf_counter()
            out = [rail.check(text, ctx) for text, ctx in items]
            return out, (time.perf_counter() - start) * 1000

        results: list[tuple[list[Decision], float] | BaseException | None] = [None] * len(rails)
        futures = {i: self._pool.submit(run_one, r) for i, r in enumerate(rails) if r.uses_model}
        for i, rail in enumerate(rails):
            if i not in futures:
                try:
                    results[i] = run_one(rail)
                except Exception as e:
                    results[i] = e
        for i, f in futures.items():
            try:
                results[i] = f.result()
            except Exception as e:
                results[i] = e
        now = time.time()
        keep = audited and self.audit is not None
        records: list[AuditRecord] = []
        failed = None
        out: list[list[Decision]] = []
        for rail, result in zip(rails, results, strict=True):
            if isinstance(result, BaseException) or result is None:
                failed = failed or (rail, result)
                if keep:
                    records.append(
                        AuditRecord(request_id, rail.name, side, "error", type(result).__name__, None, 0.0, now)
                    )
                out.append([])
                continue
            decisions, ms = result
            out.append(decisions)
            if decisions and tally is not None:
                tally.add(rail.name, _most_severe(decisions), ms)
            elif keep and decisions:
                d = _most_severe(decisions)
                records.append(AuditRecord(request_id, rail.name, side, d.action, d.reason, d.category, ms, now))
        if failed is not None and tally is not None:
            records = tally.records(request_id, side, now) + records if keep else records
            tally.clear()
        if self.audit is not None and records:
            self.audit.record_many(records)
        if failed is not None:
            rail, err = failed
            raise GuardError(f"rail {rail.name} failed: {type(err).__name__}: {err}") from (
                err if isinstance(err, BaseException) else None
            )
        return out

    def _combine(self, text: str, ctx: RailContext, rails: Sequence[Rail], decisions: Iterable[Decision],
                 raw: str | None = None) -> tuple[str, Decision | None]:  # fmt: skip
        """The text after every redaction and rewrite, or the first blocking decision. With `raw` (what
        `text` is the clean form of), redactions are made in `raw`'s own wording wherever they allow."""
        ds = list(decisions)
        blocked = next((d for d in ds if d.blocked), None)
        if blocked is not None:
            return text, blocked
        redactions: list[Redaction] = [r for d in ds if d.action == "redact" for r in d.redactions]
        if not redactions:
            out = text if raw is None else raw
        elif raw is None:
            out = apply_redactions(text, redactions)
        else:
            out = redact_in_place(raw, redactions)
        for rail, d in zip(rails, ds, strict=True):
            if d.action == "rewrite":
                again = rail.check(out, self._context(out, side=ctx.side)) if out != text else d
                out = again.text if again.action == "rewrite" and again.text is not None else out
        return out, None

    def screen_input(self, conversation: Conversation, request_id: str | None = None) -> Screened:
        """Check every turn, whatever its role (a client's system, developer or assistant turn can carry
        what a user turn can); build what goes upstream. `limits` runs first, over every turn, and when it
        blocks no other rail runs. A turn no rail redacted goes upstream as the client wrote it."""
        rid = request_id or uuid.uuid4().hex
        cleaned: Conversation = [{"role": m["role"], "content": clean(m["content"])} for m in conversation]
        operator = self.config.system_prompt or ""
        system = "\n\n".join([s for s in [operator] if s] + [m["content"] for m in cleaned if m["role"] == "system"])
        prompt = next((m["content"] for m in reversed(cleaned) if m["role"] == "user"), "")
        turns = list(range(len(cleaned))) if self.input_rails else []
        fields: dict[str, Any] = {"side": "input", "conversation": cleaned, "prompt": prompt,
                                  "system_prompt": system, "request_id": rid}  # fmt: skip
        first = [r for r in self.input_rails if r.name == "limits"]
        rest = [r for r in self.input_rails if r.name != "limits"]
        decisions: list[Decision] = []
        suspected: set[str] = set()

        def refused(blocked: Decision) -> Screened:
            return Screened(
                rid, cleaned, decisions, blocked=blocked, refusal=self.config.refusal(blocked),
                system_prompt=system, prompt=prompt, suspected=frozenset(suspected),
            )  # fmt: skip

        if first and turns:
            # Limits read sizes only: no views, so an oversized text is refused before anything reads it.
            bare = [(cleaned[i]["content"], RailContext(views=(), turn=i, **fields)) for i in turns]
            per_rail = self._run(first, bare, "input", rid)
            decisions += [_most_severe(ds) for ds in per_rail if ds]
            blocked = next((d for ds in per_rail for d in ds if d.blocked), None)
            if blocked is not None:
                return refused(blocked)
        items = [
            (cleaned[i]["content"], self._context(cleaned[i]["content"], raw=conversation[i]["content"], turn=i,
                                                  **fields))
            for i in turns
        ] if rest else []  # fmt: skip
        per_rail = self._run(rest, items, "input", rid) if items else [[] for _ in rest]
        decisions += [_most_severe(ds) for ds in per_rail if ds]
        suspected |= {d.category for ds in per_rail for d in ds if d.category}
        upstream: list[dict[str, Any]] = [dict(m) for m in conversation]
        redacted = False
        for k, i in enumerate(turns if items else []):
            text, blocked = self._combine(items[k][0], items[k][1], rest, [ds[k] for ds in per_rail],
                                          raw=conversation[i]["content"])  # fmt: skip
            if blocked is not None:
                return refused(blocked)
            upstream[i]["content"] = text
            redacted = redacted or text != conversation[i]["content"]
        upstream_system = "\n\n".join(
            [s for s in [operator] if s] + [m["content"] for m in upstream if m["role"] == "system"]
        )
        canary = None
        messages: Conversation = [m for m in upstream if m["role"] != "system"]  # type: ignore[misc]
        if upstream_system:
            if self.config.canary.enabled:
                canary = new_canary()
            head: Message = {
                "role": "system",
                "content": with_canary(upstream_system, canary) if canary else upstream_system,
            }
            messages = [head, *messages]
        upstream_prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), prompt)
        return Screened(
            rid, messages, decisions, canary=canary, system_prompt=upstream_system, prompt=upstream_prompt,
            suspected=frozenset(suspected), redacted=redacted,
        )  # fmt: skip

    def screen_output(
        self, text: str, screened: Screened, *, rails: Sequence[Rail] | None = None, audited: bool = True
    ) -> Reply:
        """Check a reply to `screened`; `rails` narrows the check (streaming windows use the fast ones,
        unaudited: the final check records the decisions)."""
        chosen = self.output_rails if rails is None else list(rails)
        if not chosen:
            return Reply(text, [], None)
        c = clean(text)
        ctx = self._context(
            c,
            raw=text,
            side="output",
            conversation=screened.conversation,
            prompt=screened.prompt,
            system_prompt=screened.system_prompt,
            canary=screened.canary,
            suspected=screened.suspected,
            request_id=screened.request_id,
        )
        per_rail = self._run(chosen, [(c, ctx)], "output", screened.request_id, audited) if chosen else []
        decisions = [ds[0] for ds in per_rail]
        out, blocked = self._combine(c, ctx, chosen, decisions, raw=text)
        if blocked is not None:
            return Reply(self.config.refusal(blocked), decisions, blocked, changed=True)
        # Nothing redacted or rewritten: the model's own text, not its normalisation.
        return Reply(out, decisions, None, changed=out != text)

    def stream(self, screened: Screened, *, final_rails: Sequence[Rail] | None = None) -> StreamGuard:
        return StreamGuard(self, screened, final_rails=final_rails)


@dataclass
class Tally:
    """Per rail, the most severe decision over a stream's windows and the time they took together."""

    worst: dict[str, tuple[Decision, float]] = field(default_factory=dict)

    def add(self, rail: str, decision: Decision, ms: float) -> None:
        old = self.worst.get(rail)
        if old is None:
            self.worst[rail] = (decision, ms)
        else:
            worse = decision if SEVERITY[decision.action] > SEVERITY[old[0].action] else old[0]
            self.worst[rail] = (worse, old[1] + ms)

    def records(self, request_id: str, side: Side, now: float) -> list[AuditRecord]:
        return [
            AuditRecord(request_id, rail, side, d.action, d.reason, d.category, ms, now)
            for rail, (d, ms) in self.worst.items()
        ]

    def clear(self) -> None:
        self.worst.clear()


STREAM_OVERLAP = 256
"""Characters of already-screened text each stream window re-reads, so that a pattern straddling two
windows is seen whole: longer than any PII or credential pattern's start and the canary's 12-word runs."""


class StreamGuard:
    """Output rails over a stream, linear in the reply: each window screens only text not screened
    before, with `STREAM_OVERLAP` characters of what came before it. Text is released only once it has
    been screened with `window` more characters after it, and only in whole pieces (split after
    whitespace, each normalised on its own, which NFKC and the joiner rule allow): a piece no redaction
    touches goes out as the model wrote it. A redaction that would reach text already released stops the
    stream. The rails' decisions are tallied over the windows and audited once, when the stream finishes
    or blocks, as a reply's would be. Rails that need the whole reply (model rails, unless `final_rails`
    leaves them out, and an output length limit) run once at `finish`."""

    def __init__(self, guard: Guard, screened: Screened, *, final_rails: Sequence[Rail] | None = None) -> None:
        self.guard = guard
        self.screened = screened
        self.window = guard.config.stream_window
        final = list(guard.output_rails if final_rails is None else final_rails)
        self.window_rails = [r for r in final if not r.uses_model and r.name != "limits"]
        self.final_rails = [r for r in final if r.uses_model or r.name == "limits"]
        self.tally = Tally()
        self.raw: list[str] = []
        """Pieces as received, each ending after whitespace (the last may be open)."""
        self.clean: list[str] = []
        self.ends: list[int] = []
        """Offset in the clean text where each closed piece ends."""
        self.open = ""
        self.text = ""
        """The clean text of the closed pieces."""
        self.screened_to = 0
        self.released_pieces = 0
        self.released = ""
        self.redactions: list[Redaction] = []
        """Found and not yet released, in clean-text offsets."""
        self.done: list[Redaction] = []
        """Released recently (those an overlap can still see)."""
        self.blocked: Decision | None = None
        self.refusal: str | None = None
        self.reply: Reply | None = None

    @property
    def _released_to(self) -> int:
        return self.ends[self.released_pieces - 1] if self.released_pieces else 0

    def _close_pieces(self, final: bool) -> None:
        cut = max(self.open.rfind(" "), self.open.rfind("\n"), self.open.rfind("\t")) + 1
        if final:
            cut = len(self.open)
        elif cut == 0 and len(self.open) > 4 * max(self.window, 16):
            # Text without spaces (CJK, a long token): close the piece anyway once it runs long.
            cut = len(self.open) - self.window
        if cut <= 0:
            return
        piece, self.open = self.open[:cut], self.open[cut:]
        c = clean(piece)
        self.raw.append(piece)
        self.clean.append(c)
        self.text += c
        self.ends.append(len(self.text))

    def _block(self, decision: Decision, refusal: str) -> None:
        self.blocked, self.refusal = decision, refusal
        self._audit()

    def _audit(self) -> None:
        if self.guard.audit is not None and self.tally.worst:
            self.guard.audit.record_many(self.tally.records(self.screened.request_id, "output", time.time()))
        self.tally.clear()

    def _screen(self) -> bool:
        """Screen the clean text not screened yet; False when blocked."""
        if self.screened_to >= len(self.text) or not self.window_rails:
            self.screened_to = len(self.text)
            return True
        # From a piece boundary: a window that began mid-word could read a fragment as something else.
        k = bisect.bisect_right(self.ends, self.screened_to - STREAM_OVERLAP)
        start = self.ends[k - 1] if k else 0
        part = self.text[start:]
        s = self.screened
        ctx = self.guard._context(
            part, side="output", conversation=s.conversation, prompt=s.prompt, system_prompt=s.system_prompt,
            canary=s.canary, suspected=s.suspected, request_id=s.request_id,
        )  # fmt: skip
        per_rail = self.guard._run(self.window_rails, [(part, ctx)], "output", s.request_id, tally=self.tally)
        decisions = [ds[0] for ds in per_rail]
        blocked = next((d for d in decisions if d.blocked), None)
        if blocked is not None:
            self._block(blocked, self.guard.config.refusal(blocked))
            return False
        found = [
            Redaction(start + r.start, start + r.end, r.placeholder)
            for d in decisions if d.action == "redact" for r in d.redactions
        ]  # fmt: skip
        # Redactions already applied to released text show again in the overlap: those are done.
        found = [r for r in found if not any(d.start <= r.start and r.end <= d.end for d in self.done)]
        if any(r.start < self._released_to for r in found):
            self._block(Decision("block", "stream", "redaction reached released text"),
                        self.guard.config.default_refusal)  # fmt: skip
            return False
        self.redactions = merge_redactions(self.redactions + found)
        self.screened_to = len(self.text)
        return True

    def _release(self, upto: int) -> str:
        """Release the closed pieces that end at or before `upto` and cut no redaction."""
        n = self.released_pieces
        while n < len(self.ends) and self.ends[n] <= upto:
            n += 1
        while n > self.released_pieces and any(r.start < self.ends[n - 1] < r.end for r in self.redactions):
            n -= 1
        if n == self.released_pieces:
            return ""
        lo, hi = self._released_to, self.ends[n - 1]
        touched = [r for r in self.redactions if r.start < hi and lo < r.end]
        if touched:
            shifted = [Redaction(r.start - lo, r.end - lo, r.placeholder) for r in touched]
            out = redact_in_place("".join(self.raw[self.released_pieces : n]), shifted)
            self.done = [d for d in self.done if d.end > lo - STREAM_OVERLAP] + touched
            self.redactions = [r for r in self.redactions if r.end > hi]
        else:
            out = "".join(self.raw[self.released_pieces : n])
        self.released_pieces = n
        self.released += out
        return out

    def feed(self, delta: str) -> str | None:
        """Text now safe to send (may be empty), or None when the stream must stop (see `refusal`)."""
        if self.blocked is not None:
            return None
        self.open += delta
        self._close_pieces(final=False)
        # Screen in windows of at least `window` new characters: fewer passes, each re-reading the overlap.
        if len(self.text) - self.screened_to < max(self.window, 64):
            return ""
        if not self._screen():
            return None
        return self._release(len(self.text) - self.window)

    def finish(self) -> str | None:
        """The rest of the reply once every output rail has passed it, or None when blocked."""
        if self.blocked is not None:
            return None
        self._close_pieces(final=True)
        if not self._screen():
            return None
        if self.final_rails:
            s = self.screened
            whole = "".join(self.raw)
            reply = self.guard.screen_output(whole, s, rails=self.final_rails, audited=False)
            ctx_tally = Tally()
            for d in reply.decisions:
                ctx_tally.add(d.rail, d, 0.0)
            for rail, (d, ms) in ctx_tally.worst.items():
                self.tally.add(rail, d, ms)
            if reply.blocked is not None:
                self._block(reply.blocked, reply.text)
                return None
            if reply.changed:
                # A rewrite (an output length limit): release what is left of the rewritten reply.
                done = len(self.released)
                rewritten = reply.text
                if not rewritten.startswith(self.released) and self.released:
                    self._block(Decision("block", "stream", "rewrite reached released text"),
                                self.guard.config.default_refusal)  # fmt: skip
                    return None
                self.released = rewritten
                self._audit()
                self.reply = Reply(rewritten, reply.decisions, None, changed=True)
                return rewritten[done:]
        out = self._release(len(self.text))
        decisions = [d for d, _ in self.tally.worst.values()]
        self._audit()
        self.reply = Reply(self.released, decisions, None, changed=self.released != "".join(self.raw))
        return out
