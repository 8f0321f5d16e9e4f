"""SL-CAI: the policy answers, a feedback model critiques the answer under a principle drawn at random
and revises it, for N rounds (Bai et al. 2022, "Constitutional AI", arXiv:2212.08073, sec. 3). A revision
that is no reply (the critique again, or a sentence about "the response") is discarded: the reply stays
as it was, and the judge and the repair decide what becomes of it."""

from __future__ import annotations

from collections.abc import Sequence

from alignkit.curate.context import Context, applicable_principles
from alignkit.curate.feedback import clean_revision, critique_conversation, revision_conversation, revision_problem
from alignkit.curate.records import Curated, Extra, Round, SlCaiSteps
from alignkit.curate.repair import Attempt, repaired_records
from alignkit.types import Prompt


def sl_cai(ctx: Context, prompts: Sequence[Prompt]) -> list[Curated]:
    convs = [p.conversation() for p in prompts]
    originals = ctx.generate(ctx.policy, convs, ctx.params())
    current = list(originals)
    rounds: list[list[Round]] = [[] for _ in prompts]
    critiqued = [i for i, p in enumerate(prompts) if ctx.cfg.critique_benign or p.label == "harmful"]
    for r in range(ctx.cfg.rounds):
        principles = {
            i: ctx.rng(prompts[i].id, f"round{r}").choice(applicable_principles(ctx.constitution, prompts[i]))
            for i in critiqued
        }
        critiques = ctx.generate(
            ctx.teacher, [critique_conversation(convs[i], current[i], principles[i]) for i in critiqued], ctx.params()
        )
        revisions = ctx.generate(
            ctx.teacher,
            [
                revision_conversation(convs[i], current[i], principles[i], crit)
                for i, crit in zip(critiqued, critiques, strict=True)
            ],
            ctx.params(),
        )
        for i, crit, rev in zip(critiqued, critiques, revisions, strict=True):
            text = clean_revision(rev)
            problem = revision_problem(text, crit)
            step: Round = {"principle": principles[i].id, "critique": crit, "revision": current[i]}
            if problem is None:
                current[i] = step["revision"] = text
            else:
                step["discarded"] = f"{problem}: {text}"
            rounds[i].append(step)
    original = ctx.judged(prompts, originals)
    revised = ctx.judged(prompts, current)
    attempts = [
        Attempt(
            prompt=p,
            candidate=rev,
            baseline=orig,
            steps=SlCaiSteps(
                original=orig.text,
                original_outcome=orig.verdict.outcome,
                rounds=r,
                revision_outcome=rev.verdict.outcome,
            ),
            extra=Extra(principle=r[-1]["principle"] if r else None),
        )
        for p, orig, rev, r in zip(prompts, original, revised, rounds, strict=True)
    ]
    return repaired_records(ctx, attempts)
