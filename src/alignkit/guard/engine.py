"""The Guard: runs the input rails on every turn of a request and the output rails on every reply.

Model-free rails run inline (they take microseconds; a thread hop would cost more), rails that run a
model go to a thread pool so that they overlap. Any rail that raises makes the whole check fail
(`GuardError`): nothing unchecked ever passes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from alignkit.errors import AlignkitError
from alignkit.guard.audit import AuditLog, AuditRecord
from alignkit.guard.base import SEVERITY, Decision, Rail, RailContext, Redaction, Side, apply_redactions
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
) -> list[Rail]:
    """The rails `config` turns on for `side`, cheapest first. `encoder` (a SentenceEncoder) and `judge`
    are built from the config when not given."""
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
    if side == "output" and c.judge.enabled:
        if judge is None:
            from alignkit.judges import make_judge

            judge = make_judge(c.judge.judge, backend=c.judge.backend, base_url=c.judge.base_url)
        rails.append(JudgeRail(judge, side, max_harm=c.judge.max_harm))
    return rails


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
        workers: int = 4,
    ) -> None:
        self.config = config
        self.input_rails = (
            list(input_rails) if input_rails is not None else build_rails(config, "input", encoder=encoder)
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
             request_id: str, audited: bool = True) -> list[list[Decision]]:  # fmt: skip
        """decisions[r][i]: rail r on item i. Failing rails are audited as errors, then GuardError."""

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
            if keep and decisions:
                d = _most_severe(decisions)
                records.append(AuditRecord(request_id, rail.name, side, d.action, d.reason, d.category, ms, now))
        if self.audit is not None and records:
            self.audit.record_many(records)
        if failed is not None:
            rail, err = failed
            raise GuardError(f"rail {rail.name} failed: {type(err).__name__}: {err}") from (
                err if isinstance(err, BaseException) else None
            )
        return out

    def _combine(self, text: str, ctx: RailContext, rails: Sequence[Rail],
                 decisions: Iterable[Decision]) -> tuple[str, Decision | None]:  # fmt: skip
        """The text after every redaction and rewrite, or the first blocking decision."""
        ds = list(decisions)
        blocked = next((d for d in ds if d.blocked), None)
        if blocked is not None:
            return text, blocked
        redactions: list[Redaction] = [r for d in ds if d.action == "redact" for r in d.redactions]
        out = apply_redactions(text, redactions) if redactions else text
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
        for k, i in enumerate(turns if items else []):
            text, blocked = self._combine(items[k][0], items[k][1], rest, [ds[k] for ds in per_rail])
            if blocked is not None:
                return refused(blocked)
            if text != items[k][0]:
                upstream[i]["content"] = text
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
            suspected=frozenset(suspected),
        )  # fmt: skip

    def screen_output(
        self, text: str, screened: Screened, *, rails: Sequence[Rail] | None = None, audited: bool = True
    ) -> Reply:
        """Check a reply to `screened`; `rails` narrows the check (streaming windows use the fast ones,
        unaudited: the final check records the decisions)."""
        chosen = self.output_rails if rails is None else list(rails)
        c = clean(text)
        if not chosen:
            return Reply(c, [], None, changed=c != text)
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
        out, blocked = self._combine(c, ctx, chosen, decisions)
        if blocked is not None:
            return Reply(self.config.refusal(blocked), decisions, blocked, changed=True)
        return Reply(out, decisions, None, changed=out != text)

    def stream(self, screened: Screened, *, final_rails: Sequence[Rail] | None = None) -> StreamGuard:
        return StreamGuard(self, screened, final_rails=final_rails)


class StreamGuard:
    """Output rails over a stream: text is released only once the fast output rails have seen it with
    `window` more characters after it (so a pattern that straddles chunks is whole when checked), and
    only up to a space. At `finish` every output rail (model-backed ones too) checks the whole reply
    before the held-back rest is released (`final_rails` narrows that check when the model-backed rails
    have already judged the whole reply). After a block nothing more is released."""

    def __init__(self, guard: Guard, screened: Screened, *, final_rails: Sequence[Rail] | None = None) -> None:
        self.guard = guard
        self.screened = screened
        self.final_rails = final_rails
        self.window = guard.config.stream_window
        self.fast_rails = [r for r in guard.output_rails if not r.uses_model]
        self.received = ""
        self.released = ""
        self.blocked: Decision | None = None
        self.refusal: str | None = None
        self.reply: Reply | None = None

    def _check(self, text: str, final: bool) -> str | None:
        """The safe text so far, or None when blocked."""
        if final:
            reply = self.reply = self.guard.screen_output(text, self.screened, rails=self.final_rails)
        else:
            reply = self.guard.screen_output(text, self.screened, rails=self.fast_rails, audited=False)
        if reply.blocked is not None:
            self.blocked, self.refusal = reply.blocked, reply.text
            return None
        if not reply.text.startswith(self.released):
            # A redaction reached text already sent: stop rather than send an inconsistent reply.
            self.blocked = Decision("block", "stream", "redaction reached released text")
            self.refusal = self.guard.config.default_refusal
            return None
        return reply.text

    def feed(self, delta: str) -> str | None:
        """Text now safe to send (may be empty), or None when the stream must stop (see `refusal`)."""
        if self.blocked is not None:
            return None
        self.received += delta
        safe = self._check(self.received, final=False)
        if safe is None:
            return None
        limit = len(safe) - self.window
        if limit <= len(self.released):
            return ""
        cut = max(safe.rfind(" ", len(self.released), limit + 1), safe.rfind("\n", len(self.released), limit + 1))
        if cut <= len(self.released):
            # Text without spaces (CJK, a long token): release at the window edge once it runs long.
            if limit - len(self.released) < 4 * max(self.window, 16):
                return ""
            cut = limit
        out = safe[len(self.released) : cut]
        self.released += out
        return out

    def finish(self) -> str | None:
        """The rest of the reply once every output rail has passed it, or None when blocked."""
        if self.blocked is not None:
            return None
        safe = self._check(self.received, final=True)
        if safe is None:
            return None
        out = safe[len(self.released) :]
        self.released += out
        return out
