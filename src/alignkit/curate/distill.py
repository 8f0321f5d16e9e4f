"""Context distillation: replies written with the constitution as the system prompt become targets
without it (Askell et al. 2021, "A General Language Assistant as a Laboratory for Alignment",
arXiv:2112.00861)."""

from __future__ import annotations

from collections.abc import Sequence

from alignkit.curate.context import Context
from alignkit.curate.records import Curated, DistillSteps, Extra
from alignkit.curate.repair import Attempt, repaired_records
from alignkit.types import Prompt, with_system


def distill(ctx: Context, prompts: Sequence[Prompt]) -> list[Curated]:
    system = ctx.constitution.as_system_prompt()
    convs = [p.conversation() for p in prompts]
    guided_texts = ctx.generate(ctx.policy, [with_system(c, system) for c in convs], ctx.params())
    plain_texts = ctx.generate(ctx.policy, convs, ctx.params())
    guided, plain = ctx.judged(prompts, guided_texts), ctx.judged(prompts, plain_texts)
    attempts = [
        Attempt(
            prompt=p,
            candidate=g,
            baseline=pl,
            steps=DistillSteps(
                with_constitution=g.text,
                with_constitution_outcome=g.verdict.outcome,
                without=pl.text,
                without_outcome=pl.verdict.outcome,
            ),
            extra=Extra(),
        )
        for p, g, pl in zip(prompts, guided, plain, strict=True)
    ]
    return repaired_records(ctx, attempts)
