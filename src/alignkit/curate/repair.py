"""Weak-teacher repair: a judge checks every candidate and replaces the ones it rejects.

A weak teacher writes weak revisions. For a harmful request a reply that still complies is replaced
by the principle's refusal; for a benign one a refusal is replaced by the best helpful sample (or the
prompt is dropped when there is none). Benign look-alikes answered well also yield a contrast pair,
the helpful answer over a refusal, so the data never teaches over-refusal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from alignkit.curate.context import Context
from alignkit.curate.records import (
    Curated,
    DistillSteps,
    Extra,
    PairRecord,
    Reply,
    Settled,
    SftRecord,
    SlCaiSteps,
)
from alignkit.judges.base import Verdict
from alignkit.refusals import pick_refusal
from alignkit.types import Prompt


def refusal_text(ctx: Context, prompt: Prompt) -> str:
    """The constitution's refusal for the prompt's category, one of its phrasings drawn per prompt (the
    same on a rerun), so the data does not teach one template per category."""
    return pick_refusal(ctx.constitution, prompt.category, ctx.rng(prompt.id, "refusal"))


def good(prompt: Prompt, v: Verdict) -> bool:
    """What the judge accepts: a refusal of a harmful request, an answer to anything else."""
    if v.outcome == "error":
        return False
    return v.refused if prompt.label == "harmful" else v.complied


def helpful_fallback(ctx: Context, prompts: Sequence[Prompt], have: dict[str, str | None]) -> dict[str, str | None]:
    """For benign prompts with no helpful candidate yet, sample replies until the judge accepts one."""
    need = [p for p in prompts if p.label != "harmful" and have.get(p.id) is None]
    for k in range(ctx.cfg.helpful_samples):
        if not need:
            break
        replies = ctx.generate(ctx.policy, [p.conversation() for p in need], ctx.params(sample=k + 1))
        verdicts = ctx.verdicts(need, replies)
        for p, r, v in zip(need, replies, verdicts, strict=True):
            if good(p, v):
                have[p.id] = r
        need = [p for p in need if have.get(p.id) is None]
    return have


def settle(ctx: Context, prompt: Prompt, final: Reply, helpful: str | None) -> Settled:
    """A reply the judge accepts stays `model`; compliant harm becomes the constitution's refusal; a
    refused benign request gets the best helpful sample, or is dropped when there is none."""
    if good(prompt, final.verdict) or not ctx.cfg.repair:
        return Settled(final.text, "model")
    if prompt.label == "harmful":
        return Settled(refusal_text(ctx, prompt), "repaired:refusal")
    if helpful is not None:
        return Settled(helpful, "repaired:helpful-sample")
    return Settled(None, "dropped:no-helpful-reply")


def contrast(ctx: Context, prompt: Prompt, helpful: str, refusals: Sequence[str]) -> PairRecord:
    """A benign look-alike's pair: the helpful answer chosen, a refusal rejected (the model's own when
    it gave one, else the refusal the constitution would give for the category it resembles)."""
    if refusals:
        return PairRecord.of(prompt, helpful, refusals[0], "contrast:model-refusal")
    return PairRecord.of(prompt, helpful, refusal_text(ctx, prompt), "contrast:constitution-refusal")


def first_sentence(text: str) -> str:
    """Up to and including the first sentence end followed by a space (the whole text if none)."""
    return re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]


def refusal_prefix(ctx: Context, prompt: Prompt, chosen: str, reply: str) -> PairRecord:
    """`chosen` over `reply` opened by the first sentence of one of the constitution's refusals (drawn
    apart from the prompt's other refusal): for a benign prompt `reply` is the answer itself, for a
    harmful one the compliance its refusal replaced."""
    opening = first_sentence(pick_refusal(ctx.constitution, prompt.category, ctx.rng(prompt.id, "refusal-prefix")))
    return PairRecord.of(prompt, chosen, f"{opening} {reply.lstrip()}", "contrast:refusal-prefix")


@dataclass(frozen=True)
class Attempt:
    """One prompt's candidate (a revision, a constitution-guided reply) and the baseline it should beat
    (the original reply, the unguided one), with the steps that made them."""

    prompt: Prompt
    candidate: Reply
    baseline: Reply
    steps: SlCaiSteps | DistillSteps
    extra: Extra


def repaired_records(ctx: Context, attempts: Sequence[Attempt]) -> list[Curated]:
    """Repair the candidates against the judge, then per prompt its SFT record and pairs: the final
    reply over a baseline the judge rejects, or for a benign prompt answered well, a contrast pair
    against a refusal."""
    prompts = [a.prompt for a in attempts]
    helpful: dict[str, str | None] = {}
    for a in attempts:
        if a.prompt.label != "harmful":
            c, b = a.candidate, a.baseline
            helpful[a.prompt.id] = (
                c.text if good(a.prompt, c.verdict) else b.text if good(a.prompt, b.verdict) else None
            )
    helpful = helpful_fallback(ctx, prompts, helpful)
    out = []
    for a in attempts:
        p = a.prompt
        settled = settle(ctx, p, a.candidate, helpful.get(p.id))
        sft, pairs = None, []
        if settled.reply is not None:
            sft = SftRecord.of(p, settled.reply, settled.source, a.extra)
            if not good(p, a.baseline.verdict):
                pairs.append(PairRecord.of(p, settled.reply, a.baseline.text, settled.source, extra=a.extra))
            elif p.label != "harmful":
                own = [r.text for r in (a.baseline, a.candidate) if r.verdict.refused]
                pairs.append(contrast(ctx, p, settled.reply, own))
            if ctx.cfg.refusal_prefix_pairs:
                if p.label != "harmful":
                    pairs.append(refusal_prefix(ctx, p, settled.reply, settled.reply))
                elif a.baseline.verdict.complied:  # full compliance: never what the judge accepts here
                    pairs.append(refusal_prefix(ctx, p, settled.reply, a.baseline.text))
        out.append(Curated(p, a.steps, settled, sft, pairs))
    return out
