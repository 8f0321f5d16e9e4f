"""RLAIF: the policy samples replies, the feedback model compares them as a multiple-choice question
under sampled principles; the normalised option probabilities, averaged, are soft preference labels
(Bai et al. 2022, "Constitutional AI", arXiv:2212.08073, sec. 4). The judge checks each pair: it
overrules the feedback model where they disagree, and repairs pairs whose replies it rejects both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alignkit.curate.context import Context, applicable_principles
from alignkit.curate.feedback import comparison_question, prefer_first
from alignkit.curate.records import (
    Comparison,
    Curated,
    Extra,
    PairRecord,
    Reply,
    RlaifSteps,
    SftRecord,
    Source,
    Vote,
)
from alignkit.curate.repair import good, helpful_fallback, refusal_text
from alignkit.errors import AlignkitError
from alignkit.types import Conversation, Prompt


@dataclass(frozen=True)
class Compared:
    """Two sampled replies to one prompt, the feedback model's view of them and the judge's."""

    prompt: Prompt
    first: Reply
    second: Reply
    p_first: float | None
    """P(first reply better) from the feedback model, averaged; None when it gave no usable answer."""
    judge_first: bool | None
    """The judge's preference; None when it accepts both replies or neither."""


def judge_prefers_first(prompt: Prompt, a: Reply, b: Reply) -> bool | None:
    good_a, good_b = good(prompt, a.verdict), good(prompt, b.verdict)
    return None if good_a == good_b else good_a


def rlaif(ctx: Context, prompts: Sequence[Prompt]) -> list[Curated]:
    cfg = ctx.cfg
    if cfg.samples < 2:
        raise AlignkitError("rlaif needs samples >= 2 replies per prompt to compare")
    convs = [p.conversation() for p in prompts]
    samples = [ctx.generate(ctx.policy, convs, ctx.params(sample=k)) for k in range(cfg.samples)]
    judged = [ctx.judged(prompts, samples[k]) for k in range(cfg.samples)]
    by_prompt = [[judged[k][i] for k in range(cfg.samples)] for i in range(len(prompts))]
    # one question per (prompt, pair, principle, order): both orders cancel the teacher's letter bias
    questions: list[Conversation] = []
    index: list[tuple[int, int, str, bool]] = []
    for i, p in enumerate(prompts):
        rng = ctx.rng(p.id, "principles")
        pool = applicable_principles(ctx.constitution, p)
        for j in range(0, cfg.samples - 1, 2):
            a, b = by_prompt[i][j].text, by_prompt[i][j + 1].text
            for pr in rng.sample(pool, min(cfg.principles_per_comparison, len(pool))):
                questions.append(comparison_question(convs[i], a, b, pr))
                index.append((i, j, pr.id, False))
                questions.append(comparison_question(convs[i], b, a, pr))
                index.append((i, j, pr.id, True))
    probs = prefer_first(
        ctx.teacher, questions, chain_of_thought=cfg.chain_of_thought, max_new_tokens=cfg.max_new_tokens
    )
    votes: dict[tuple[int, int], list[Vote]] = {}
    for (i, j, pid, swapped), prob in zip(index, probs, strict=True):
        if prob is None:
            continue
        p_first = 1.0 - prob if swapped else prob
        votes.setdefault((i, j), []).append({"principle": pid, "swapped": swapped, "p_first": p_first})
    helpful: dict[str, str | None] = {}
    for i, p in enumerate(prompts):
        if p.label != "harmful":
            helpful[p.id] = next((r.text for r in by_prompt[i] if good(p, r.verdict)), None)
    helpful = helpful_fallback(ctx, prompts, helpful)
    out = []
    for i, p in enumerate(prompts):
        comparisons: list[Comparison] = []
        pairs: list[PairRecord] = []
        sft: SftRecord | None = None
        for j in range(0, cfg.samples - 1, 2):
            got = votes.get((i, j), [])
            compared = Compared(
                p,
                by_prompt[i][j],
                by_prompt[i][j + 1],
                sum(v["p_first"] for v in got) / len(got) if got else None,
                judge_prefers_first(p, by_prompt[i][j], by_prompt[i][j + 1]),
            )
            comparisons.append(
                {
                    "pair": [j, j + 1],
                    "p_first": compared.p_first,
                    "judge_prefers_first": compared.judge_first,
                    "votes": [{**v, "p_first": round(v["p_first"], 6)} for v in got],
                }
            )
            made = rlaif_pair(ctx, compared, helpful.get(p.id))
            if made is not None:
                pairs.append(made[0])
                if sft is None:
                    sft = made[1]
        steps = RlaifSteps(
            samples=[r.text for r in by_prompt[i]],
            outcomes=[r.verdict.outcome for r in by_prompt[i]],
            comparisons=comparisons,
        )
        out.append(Curated(p, steps, None, sft, pairs))
    return out


def rlaif_pair(ctx: Context, c: Compared, helpful: str | None) -> tuple[PairRecord, SftRecord | None] | None:
    """The preference pair of one comparison and, when its chosen reply is acceptable, an SFT record."""
    repair = ctx.cfg.repair
    if c.p_first is None and not repair:
        return None
    p, a, b = c.prompt, c.first, c.second
    ai_first = None if c.p_first is None else c.p_first >= 0.5
    if repair and not good(p, a.verdict) and not good(p, b.verdict):
        worse = a if (a.verdict.complied if p.label == "harmful" else a.verdict.refused) else b
        if p.label == "harmful":
            chosen = refusal_text(ctx, p)
            source: Source = "repaired:refusal"
        elif helpful is not None:
            chosen, source = helpful, "repaired:helpful-sample"
        else:
            return None
        return PairRecord.of(p, chosen, worse.text, source), SftRecord.of(p, chosen, source)
    if repair and c.judge_first is not None and c.judge_first != ai_first:
        chosen_r, rejected_r = (a, b) if c.judge_first else (b, a)
        overruled = PairRecord.of(
            p, chosen_r.text, rejected_r.text, "repaired:judge-overrules-feedback", extra=Extra(p_first=c.p_first)
        )
        return overruled, SftRecord.of(p, chosen_r.text, "model")
    if c.p_first is None:
        return None
    chosen_r, rejected_r, weight = (a, b, c.p_first) if ai_first else (b, a, 1.0 - c.p_first)
    confidence = Extra(confidence=round(abs(2 * c.p_first - 1), 6))
    pair = PairRecord.of(p, chosen_r.text, rejected_r.text, "model", weight, confidence)
    return pair, (SftRecord.of(p, chosen_r.text, "model") if good(p, chosen_r.verdict) else None)
