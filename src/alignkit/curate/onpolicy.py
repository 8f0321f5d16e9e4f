"""On-policy preference data: the policy's own samples, judged, best over worst.

For each prompt the policy answers greedily and `samples` more times at `temperature`; the judge reads
every reply. A harmful prompt's pair is the policy's own best refusal (full before partial, which
`partial_refusals_chosen` can rule out) over its own worst reply (full compliance, then partial
refusal, then evasion), or, when it never refused, a refusal drawn from the constitution's phrasings
(`repaired:refusal`). A benign prompt's pair is its own best helpful reply (fully compliant, not
degenerate, no refusal leaking into it) over its own refusal or evasion; with no helpful sample, a few
more are drawn (`repaired:helpful-sample`). A prompt whose replies are all good or all bad the same way
yields no pair, and the trace says why.

Run once per round from the newest model, training DPO on each round's pairs between rounds: iterative
DPO with AI feedback (Xu et al. 2023, "Some things are more CRINGE than others", arXiv:2312.16682;
Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback", arXiv:2402.04792), the
judge standing in for the AI annotator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from alignkit.curate.context import Context
from alignkit.curate.records import DROPPED, Curated, Extra, OnPolicySteps, PairRecord, Settled, SftRecord, Source
from alignkit.curate.repair import helpful_fallback
from alignkit.errors import AlignkitError
from alignkit.helpfulness.degeneration import check_reply
from alignkit.judges.base import Outcome, Verdict
from alignkit.refusals import pick_refusal
from alignkit.types import GenerationParams, Prompt

HARM_RANK: dict[Outcome, int] = {"full_refusal": 0, "evasive": 1, "partial_refusal": 2, "full_compliance": 3}
"""A harmful prompt's replies, safest first: a partial refusal still gives part of the harm."""
UNHELP_RANK: dict[Outcome, int] = {"full_compliance": 0, "evasive": 2, "partial_refusal": 3, "full_refusal": 4}
"""A benign prompt's replies, most helpful first; a degenerate compliance ranks 1."""


@dataclass(frozen=True)
class Sample:
    """One of a prompt's replies: its place (0 is the greedy one), the judge's verdict, and whether it
    is degenerate (empty or looping) or lets a refusal or deflection into an answer."""

    index: int
    text: str
    verdict: Verdict
    degenerate: bool
    hedged: bool

    @property
    def outcome(self) -> Outcome:
        return self.verdict.outcome


@dataclass(frozen=True)
class Choice:
    """A prompt's pair, or why it has none."""

    chosen: str | None
    source: Source
    chosen_sample: Sample | None = None
    rejected_sample: Sample | None = None
    skipped: str | None = None


def sample_params(ctx: Context, k: int) -> GenerationParams:
    """The k-th sampled reply's decoding: its seed depends on the run's seed, the round and k only, so a
    resumed run (or any chunking) draws the same samples and each round draws new ones."""
    digest = hashlib.sha256(f"on-policy:{ctx.cfg.seed}:{ctx.cfg.round}:{k}".encode()).hexdigest()
    return GenerationParams(
        max_new_tokens=ctx.cfg.max_new_tokens, temperature=ctx.cfg.temperature, seed=int(digest[:8], 16) % 2**31
    )


def harmful_choice(ctx: Context, prompt: Prompt, samples: Sequence[Sample]) -> Choice:
    judged = [s for s in samples if s.outcome != "error"]
    if not judged:
        return Choice(None, "model", skipped="no-verdicts")
    accepted = ("full_refusal", "partial_refusal") if ctx.cfg.partial_refusals_chosen else ("full_refusal",)
    own = [s for s in judged if s.outcome in accepted and not s.degenerate]
    best = min(own, key=lambda s: (HARM_RANK[s.outcome], s.index), default=None)
    worst = max(judged, key=lambda s: (HARM_RANK[s.outcome], -s.index))
    if best is not None and HARM_RANK[worst.outcome] > HARM_RANK[best.outcome]:
        return Choice(best.text, "model", best, worst)
    if HARM_RANK[worst.outcome] == 0:
        return Choice(None, "model", skipped="no-contrast: every reply refuses")
    if not ctx.cfg.repair:
        return Choice(None, "model", skipped="no-contrast: no clean refusal of its own (repair off)")
    refusal = pick_refusal(ctx.constitution, prompt.category, ctx.rng(prompt.id, f"round{ctx.cfg.round}:refusal"))
    return Choice(refusal, "repaired:refusal", None, worst)


def unhelpfulness(s: Sample) -> int:
    return 1 if s.outcome == "full_compliance" and s.degenerate else UNHELP_RANK[s.outcome]


def benign_choice(ctx: Context, samples: Sequence[Sample], fallback: str | None) -> Choice:
    judged = [s for s in samples if s.outcome != "error"]
    if not judged:
        return Choice(None, "model", skipped="no-verdicts")
    helpful = [s for s in judged if unhelpfulness(s) == 0]
    worst = max(judged, key=lambda s: (unhelpfulness(s), -s.index))
    if unhelpfulness(worst) == 0:
        return Choice(None, "model", skipped="no-contrast: every reply helps")
    if helpful:
        best = min(helpful, key=lambda s: (s.hedged, s.index))
        return Choice(best.text, "model", best, worst)
    if fallback is not None:
        return Choice(fallback, "repaired:helpful-sample", None, worst)
    return Choice(None, DROPPED)


def on_policy(ctx: Context, prompts: Sequence[Prompt]) -> list[Curated]:
    cfg = ctx.cfg
    if cfg.samples < 1 or cfg.round < 1:
        raise AlignkitError(
            f"on-policy needs samples >= 1 and round >= 1 (got samples={cfg.samples}, round={cfg.round})"
        )
    convs = [p.conversation() for p in prompts]
    texts = [ctx.generate(ctx.policy, convs, ctx.params())]
    texts += [ctx.generate(ctx.policy, convs, sample_params(ctx, k)) for k in range(cfg.samples)]
    n = len(prompts)
    verdicts = ctx.verdicts([p for _ in texts for p in prompts], [t for batch in texts for t in batch])
    by_prompt: list[list[Sample]] = []
    for i in range(n):
        row = []
        for k, batch in enumerate(texts):
            check = check_reply(batch[i])
            row.append(Sample(k, batch[i], verdicts[k * n + i], check.degenerate, check.evasive))
        by_prompt.append(row)
    have: dict[str, str | None] = {}
    if cfg.repair:
        for p, row in zip(prompts, by_prompt, strict=True):
            judged = [s for s in row if s.outcome != "error"]
            if p.label != "harmful" and judged and not any(unhelpfulness(s) == 0 for s in judged):
                have[p.id] = None
        need = [p for p in prompts if p.id in have]
        have = helpful_fallback(ctx, need, have)
        # a helpful fall-back that loops is no better than none
        have = {pid: t if t is not None and not check_reply(t).degenerate else None for pid, t in have.items()}
    return [
        curated(
            ctx,
            p,
            row,
            harmful_choice(ctx, p, row) if p.label == "harmful" else benign_choice(ctx, row, have.get(p.id)),
        )
        for p, row in zip(prompts, by_prompt, strict=True)
    ]


def curated(ctx: Context, prompt: Prompt, row: Sequence[Sample], choice: Choice) -> Curated:
    steps = OnPolicySteps(
        round=ctx.cfg.round,
        samples=[s.text for s in row],
        outcomes=[s.outcome for s in row],
        degenerate=[s.degenerate for s in row],
        chosen=None if choice.chosen_sample is None else choice.chosen_sample.index,
        rejected=None if choice.rejected_sample is None else choice.rejected_sample.index,
        skipped=choice.skipped,
    )
    rejected = choice.rejected_sample
    if choice.chosen is None or rejected is None:
        settled = Settled(None, DROPPED) if choice.source == DROPPED else None
        return Curated(prompt, steps, settled, None, [])
    if choice.chosen_sample is not None:
        chosen_outcome: Outcome | None = choice.chosen_sample.outcome
    else:
        chosen_outcome = "full_compliance" if choice.source == "repaired:helpful-sample" else None
    extra = Extra(round=ctx.cfg.round, chosen_outcome=chosen_outcome, rejected_outcome=rejected.outcome)
    pair = PairRecord.of(prompt, choice.chosen, rejected.text, choice.source, extra=extra)
    sft = SftRecord.of(prompt, choice.chosen, choice.source, extra)
    return Curated(prompt, steps, Settled(choice.chosen, choice.source), sft, [pair])
