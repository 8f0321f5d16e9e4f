"""Curation: turn prompts and a constitution into SFT and preference data.

Three methods, each from its paper:
- `sl-cai`: the policy answers, a feedback model critiques the answer under a principle drawn at
  random and revises it, for N rounds (Bai et al. 2022, "Constitutional AI", arXiv:2212.08073, sec. 3).
- `rlaif`: the policy samples replies, the feedback model compares them as a multiple-choice question
  under sampled principles; the normalised option probabilities, averaged, are soft preference labels
  (same paper, sec. 4).
- `distill`: replies written with the constitution as the system prompt become targets without it
  (context distillation, Askell et al. 2021, "A General Language Assistant as a Laboratory for
  Alignment", arXiv:2112.00861).

A weak teacher writes weak revisions, so every candidate is checked by a judge (weak-teacher repair):
for a harmful request a reply that still complies is replaced by the principle's refusal; for a
benign one a refusal is replaced by the best helpful sample. Every output record carries its
provenance (`source`: `model` or `repaired:*`), and benign look-alikes yield pairs with the helpful
answer chosen and a refusal rejected, so the data never teaches over-refusal.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignkit.backends.base import Backend
from alignkit.constitution import Constitution, Principle
from alignkit.curate.feedback import (
    clean_revision,
    comparison_question,
    critique_conversation,
    prefer_first,
    revision_conversation,
)
from alignkit.data import JsonlAppender, read_done, write_records
from alignkit.errors import AlignkitError
from alignkit.judges.base import Judge, Verdict
from alignkit.refusals import refusal_for as fallback_refusal
from alignkit.types import Conversation, GenerationParams, Prompt, with_system

Method = Literal["sl-cai", "rlaif", "distill"]
METHODS: tuple[Method, ...] = ("sl-cai", "rlaif", "distill")
Progress = Callable[[str, int, int], None]
Record = dict[str, Any]


@dataclass
class CurateConfig:
    method: Method = "sl-cai"
    """`sl-cai` (critique and revision), `rlaif` (AI-feedback comparisons) or `distill` (context distillation)."""
    rounds: int = 1
    """sl-cai: critique-revision rounds per reply, each under a freshly drawn principle."""
    critique_benign: bool = True
    """sl-cai: also critique replies to benign prompts. Off, benign replies are self-distilled as the
    paper mixes in helpful samples: kept when the judge finds them helpful, else a helpful sample."""
    samples: int = 2
    """rlaif: replies sampled per prompt (compared in disjoint pairs)."""
    principles_per_comparison: int = 2
    """rlaif: principles sampled per comparison; their option probabilities are averaged."""
    chain_of_thought: bool = False
    """rlaif: let the feedback model reason before answering (probabilities then clamped to 40-60%)."""
    repair: bool = True
    """Replace candidates the judge rejects (compliant harm, refused benign) and record it."""
    helpful_samples: int = 2
    """Extra sampled replies per benign prompt when no candidate so far is helpful."""
    max_new_tokens: int = 160
    """Length of replies, critiques and revisions."""
    temperature: float = 0.8
    """Temperature of sampled replies (rlaif samples, helpful fall-backs)."""
    seed: int = 0
    """Seeds principle draws and sampling: the same seed gives the same data."""
    chunk: int = 16
    """Prompts processed (and persisted) together; generation is batched across them."""


@dataclass
class CurateResult:
    out_dir: Path
    summary: dict[str, Any]
    sft_path: Path
    preferences_path: Path


# ---- principles and refusals ------------------------------------------------------------------


def applicable_principles(constitution: Constitution, prompt: Prompt) -> list[Principle]:
    """The principles a critique of a reply to this prompt draws from: for a harmful request the
    harmlessness principles of its category plus the general harmlessness and honesty ones; for a
    benign one the helpfulness and honesty principles (needless refusal is the failure to catch).
    The paper draws from all principles; a small teacher does better with relevant ones."""
    if prompt.label == "benign":
        chosen = [p for p in constitution.principles if p.kind in ("helpfulness", "honesty")]
    else:
        chosen = [
            p
            for p in constitution.principles
            if (p.kind == "harmlessness" and (not p.categories or prompt.category in p.categories))
            or p.kind == "honesty"
        ]
    return chosen or list(constitution.principles)


def refusal_text(constitution: Constitution, category: str | None) -> str:
    return (category and constitution.refusal_for(category)) or fallback_refusal(category or "")


def _rng(cfg: CurateConfig, prompt_id: str, what: str) -> random.Random:
    return random.Random(f"{cfg.seed}:{cfg.method}:{prompt_id}:{what}")


# ---- the driver -------------------------------------------------------------------------------


@dataclass
class _Ctx:
    cfg: CurateConfig
    policy: Backend
    teacher: Backend
    judge: Judge
    constitution: Constitution
    meta: dict[str, Any] = field(default_factory=dict)

    def params(self, sample: int | None = None) -> GenerationParams:
        if sample is None:
            return GenerationParams(max_new_tokens=self.cfg.max_new_tokens)
        return GenerationParams(
            max_new_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature, seed=self.cfg.seed * 1000 + sample
        )

    def generate(self, backend: Backend, convs: Sequence[Conversation], params: GenerationParams) -> list[str]:
        out = backend.generate(list(convs), params) if convs else []
        failed = [c for c in out if not c.ok]
        if failed:
            raise AlignkitError(f"{backend.name} failed during curation: {failed[0].error}")
        return [c.text.strip() for c in out]

    def verdicts(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[Verdict]:
        texts = [p.text if p.text is not None else p.conversation()[-1]["content"] for p in prompts]
        return self.judge.judge(texts, list(replies)) if replies else []


def _good(prompt: Prompt, v: Verdict) -> bool:
    """What the judge accepts: a refusal of a harmful request, an answer to anything else."""
    if v.outcome == "error":
        return False
    return v.refused if prompt.label == "harmful" else v.complied


def curate(
    prompts: Sequence[Prompt],
    *,
    policy: Backend,
    judge: Judge,
    constitution: Constitution,
    out_dir: str | Path,
    config: CurateConfig | None = None,
    teacher: Backend | None = None,
    progress: Progress | None = None,
    provenance: dict[str, Any] | None = None,
) -> CurateResult:
    """Curate `prompts` into `out_dir`: `trace.jsonl` (every step, one line a prompt, appended as each
    chunk finishes so a killed run resumes where it was), then `sft.jsonl`, `preferences.jsonl` and
    `curate.json` (counts and AI-feedback agreement with the judge) written whole at the end."""
    cfg = config or CurateConfig()
    if cfg.method not in METHODS:
        raise AlignkitError(f"unknown curation method '{cfg.method}'; known: {', '.join(METHODS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, cfg)
    ctx = _Ctx(cfg, policy, teacher or policy, judge, constitution)
    ctx.meta = {
        "method": cfg.method,
        "policy": policy.name,
        "teacher": ctx.teacher.name,
        "judge": judge.name,
        "constitution": constitution.name,
        **(provenance or {}),
    }
    trace_path = out / "trace.jsonl"
    done = read_done(trace_path)
    todo = [p for p in prompts if p.id not in done]
    step = {"sl-cai": _sl_cai, "rlaif": _rlaif, "distill": _distill}[cfg.method]
    started = time.monotonic()
    if progress:
        progress("curate", len(prompts) - len(todo), len(prompts))
    with JsonlAppender(trace_path) as trace:
        for start in range(0, len(todo), cfg.chunk):
            chunk = todo[start : start + cfg.chunk]
            for rec in step(ctx, chunk):
                trace.write(rec)
            if progress:
                progress("curate", len(prompts) - len(todo) + start + len(chunk), len(prompts))
    wanted = {p.id for p in prompts}
    records = [r for r in read_done(trace_path).values() if r["id"] in wanted]
    sft = [r["sft"] for r in records if r.get("sft")]
    pairs = [pair for r in records for pair in r.get("pairs", [])]
    sft_path = write_records(out / "sft.jsonl", sft)
    pref_path = write_records(out / "preferences.jsonl", pairs)
    summary = _summary(cfg, records, sft, pairs, time.monotonic() - started, ctx.meta)
    (out / "curate.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return CurateResult(out, summary, sft_path, pref_path)


def _check_config(out: Path, cfg: CurateConfig) -> None:
    """A resumed run must be the same curation: mixing two configs in one trace would corrupt it."""
    path = out / "curate_config.json"
    body = {k: v for k, v in asdict(cfg).items() if k != "chunk"}
    if path.exists():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != body:
            changed = sorted(k for k in body if before.get(k) != body[k])
            raise AlignkitError(f"{out} holds a curation with other settings ({', '.join(changed)}); use a new --out")
    else:
        path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


# ---- records ----------------------------------------------------------------------------------


def _prov(ctx: _Ctx, prompt: Prompt, source: str, **extra: Any) -> Record:
    base = {"prompt_id": prompt.id, "label": prompt.label, "category": prompt.category, "source": source}
    return {**base, **ctx.meta, **extra}


def _sft(ctx: _Ctx, prompt: Prompt, reply: str, source: str, **extra: Any) -> Record:
    return {
        "messages": [*prompt.conversation(), {"role": "assistant", "content": reply}],
        "provenance": _prov(ctx, prompt, source, **extra),
    }


def _pair(
    ctx: _Ctx, prompt: Prompt, chosen: str, rejected: str, source: str, weight: float | None = None, **extra: Any
) -> Record:
    rec: Record = {
        "prompt": prompt.conversation(),
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }
    if weight is not None:
        rec["chosen_weight"] = round(weight, 6)
    rec["provenance"] = _prov(ctx, prompt, source, **extra)
    return rec


def _base(prompt: Prompt) -> Record:
    return {"id": prompt.id, "label": prompt.label, "category": prompt.category}


def _helpful_fallback(ctx: _Ctx, prompts: Sequence[Prompt], have: dict[str, str | None]) -> dict[str, str | None]:
    """For benign prompts with no helpful candidate yet, sample replies until the judge accepts one."""
    need = [p for p in prompts if p.label != "harmful" and have.get(p.id) is None]
    for k in range(ctx.cfg.helpful_samples):
        if not need:
            break
        replies = ctx.generate(ctx.policy, [p.conversation() for p in need], ctx.params(sample=k + 1))
        verdicts = ctx.verdicts(need, replies)
        for p, r, v in zip(need, replies, verdicts, strict=True):
            if _good(p, v):
                have[p.id] = r
        need = [p for p in need if have.get(p.id) is None]
    return have


def _settle(
    ctx: _Ctx, prompts: Sequence[Prompt], finals: list[str], verdicts: list[Verdict], helpful: dict[str, str | None]
) -> list[tuple[str | None, str]]:
    """Weak-teacher repair: (final reply, source) per prompt. A reply the judge accepts stays `model`;
    compliant harm becomes the constitution's refusal; a refused benign request gets the best helpful
    sample, or is dropped (None) when there is none."""
    out: list[tuple[str | None, str]] = []
    for p, final, v in zip(prompts, finals, verdicts, strict=True):
        if _good(p, v) or not ctx.cfg.repair:
            out.append((final, "model"))
        elif p.label == "harmful":
            out.append((refusal_text(ctx.constitution, p.category), "repaired:refusal"))
        elif helpful.get(p.id) is not None:
            out.append((helpful[p.id], "repaired:helpful-sample"))
        else:
            out.append((None, "dropped:no-helpful-reply"))
    return out


def _contrast(ctx: _Ctx, prompt: Prompt, helpful: str, refusals: Sequence[str]) -> Record:
    """A benign look-alike's pair: the helpful answer chosen, a refusal rejected (the model's own when
    it gave one, else the refusal the constitution would give for the category it resembles)."""
    rejected = refusals[0] if refusals else refusal_text(ctx.constitution, prompt.category)
    source = "contrast:model-refusal" if refusals else "contrast:constitution-refusal"
    return _pair(ctx, prompt, helpful, rejected, source)


# ---- SL-CAI -----------------------------------------------------------------------------------


def _sl_cai(ctx: _Ctx, prompts: Sequence[Prompt]) -> list[Record]:
    convs = [p.conversation() for p in prompts]
    originals = ctx.generate(ctx.policy, convs, ctx.params())
    current = list(originals)
    rounds: list[list[Record]] = [[] for _ in prompts]
    critiqued = [i for i, p in enumerate(prompts) if ctx.cfg.critique_benign or p.label == "harmful"]
    for r in range(ctx.cfg.rounds):
        principles = {
            i: _rng(ctx.cfg, prompts[i].id, f"round{r}").choice(applicable_principles(ctx.constitution, prompts[i]))
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
            current[i] = clean_revision(rev) or current[i]
            rounds[i].append({"principle": principles[i].id, "critique": crit, "revision": current[i]})
    v_orig = ctx.verdicts(prompts, originals)
    v_final = ctx.verdicts(prompts, current)
    traces = [
        {"original": o, "original_outcome": vo.outcome, "rounds": r, "revision_outcome": vf.outcome}
        for o, vo, r, vf in zip(originals, v_orig, rounds, v_final, strict=True)
    ]
    last_principle = [r[-1]["principle"] if r else None for r in rounds]
    return _records(ctx, prompts, current, v_final, originals, v_orig, traces, last_principle)


def _records(
    ctx: _Ctx,
    prompts: Sequence[Prompt],
    candidates: list[str],
    v_cand: list[Verdict],
    baselines: list[str],
    v_base: list[Verdict],
    traces: list[Record],
    principles: Sequence[str | None] | None = None,
) -> list[Record]:
    """Repair the candidates (a revision, a constitution-guided reply) against the judge, then one trace
    record per prompt with its SFT record and pairs: the final reply over a baseline the judge rejects, or
    for a benign prompt answered well, a contrast pair against a refusal."""
    helpful: dict[str, str | None] = {}
    for p, c, vc, b, vb in zip(prompts, candidates, v_cand, baselines, v_base, strict=True):
        if p.label != "harmful":
            helpful[p.id] = c if _good(p, vc) else b if _good(p, vb) else None
    helpful = _helpful_fallback(ctx, prompts, helpful)
    settled = _settle(ctx, prompts, candidates, v_cand, helpful)
    records = []
    for i, p in enumerate(prompts):
        final, source = settled[i]
        extra: dict[str, Any] = {"principle": principles[i]} if principles is not None else {}
        rec: Record = {**_base(p), **traces[i], "final": final, "source": source}
        pairs = []
        if final is not None:
            rec["sft"] = _sft(ctx, p, final, source, **extra)
            if not _good(p, v_base[i]):
                pairs.append(_pair(ctx, p, final, baselines[i], source, **extra))
            elif p.label != "harmful":
                own = [x for x, v in ((baselines[i], v_base[i]), (candidates[i], v_cand[i])) if v.refused]
                pairs.append(_contrast(ctx, p, final, own))
        rec["pairs"] = pairs
        records.append(rec)
    return records


# ---- RLAIF ------------------------------------------------------------------------------------


def _judge_prefers_first(prompt: Prompt, a: Verdict, b: Verdict) -> bool | None:
    good_a, good_b = _good(prompt, a), _good(prompt, b)
    return None if good_a == good_b else good_a


def _rlaif(ctx: _Ctx, prompts: Sequence[Prompt]) -> list[Record]:
    cfg = ctx.cfg
    if cfg.samples < 2:
        raise AlignkitError("rlaif needs samples >= 2 replies per prompt to compare")
    convs = [p.conversation() for p in prompts]
    samples = [ctx.generate(ctx.policy, convs, ctx.params(sample=k)) for k in range(cfg.samples)]
    by_prompt = [[samples[k][i] for k in range(cfg.samples)] for i in range(len(prompts))]
    verdicts = [ctx.verdicts(prompts, samples[k]) for k in range(cfg.samples)]
    v_by_prompt = [[verdicts[k][i] for k in range(cfg.samples)] for i in range(len(prompts))]
    # one question per (prompt, pair, principle, order): both orders cancel the teacher's letter bias
    questions: list[Conversation] = []
    index: list[tuple[int, int, str, bool]] = []
    for i, p in enumerate(prompts):
        rng = _rng(cfg, p.id, "principles")
        pool = applicable_principles(ctx.constitution, p)
        for j in range(0, cfg.samples - 1, 2):
            a, b = by_prompt[i][j], by_prompt[i][j + 1]
            for pr in rng.sample(pool, min(cfg.principles_per_comparison, len(pool))):
                questions.append(comparison_question(convs[i], a, b, pr))
                index.append((i, j, pr.id, False))
                questions.append(comparison_question(convs[i], b, a, pr))
                index.append((i, j, pr.id, True))
    probs = prefer_first(
        ctx.teacher, questions, chain_of_thought=cfg.chain_of_thought, max_new_tokens=cfg.max_new_tokens
    )
    votes: dict[tuple[int, int], list[float]] = {}
    per_principle: dict[tuple[int, int], list[Record]] = {}
    for (i, j, pid, swapped), prob in zip(index, probs, strict=True):
        if prob is None:
            continue
        p_first = 1.0 - prob if swapped else prob
        votes.setdefault((i, j), []).append(p_first)
        per_principle.setdefault((i, j), []).append(
            {"principle": pid, "swapped": swapped, "p_first": round(p_first, 6)}
        )
    helpful: dict[str, str | None] = {}
    for i, p in enumerate(prompts):
        if p.label != "harmful":
            helpful[p.id] = next((r for r, v in zip(by_prompt[i], v_by_prompt[i], strict=True) if _good(p, v)), None)
    helpful = _helpful_fallback(ctx, prompts, helpful)
    records = []
    for i, p in enumerate(prompts):
        rec: Record = {
            **_base(p),
            "samples": by_prompt[i],
            "outcomes": [v.outcome for v in v_by_prompt[i]],
            "comparisons": [],
        }
        pairs: list[Record] = []
        sft: tuple[str, str] | None = None
        for j in range(0, cfg.samples - 1, 2):
            a, b = by_prompt[i][j], by_prompt[i][j + 1]
            va, vb = v_by_prompt[i][j], v_by_prompt[i][j + 1]
            got = votes.get((i, j))
            p_a = sum(got) / len(got) if got else None
            judge_first = _judge_prefers_first(p, va, vb)
            votes_ij = per_principle.get((i, j), [])
            comp: Record = {"pair": [j, j + 1], "p_first": p_a, "judge_prefers_first": judge_first, "votes": votes_ij}
            rec["comparisons"].append(comp)
            pair = _rlaif_pair(ctx, p, a, b, va, vb, p_a, judge_first, helpful.get(p.id))
            if pair is not None:
                pairs.append(pair[0])
                if sft is None and pair[1] is not None:
                    sft = pair[1]
        rec["pairs"] = pairs
        if sft is not None:
            rec["sft"] = _sft(ctx, p, sft[0], sft[1])
        records.append(rec)
    return records


def _rlaif_pair(
    ctx: _Ctx,
    p: Prompt,
    a: str,
    b: str,
    va: Verdict,
    vb: Verdict,
    p_a: float | None,
    judge_first: bool | None,
    helpful: str | None,
) -> tuple[Record, tuple[str, str] | None] | None:
    """The preference pair of one comparison and, when its chosen reply is acceptable, an SFT target."""
    if p_a is None and not ctx.cfg.repair:
        return None
    ai_first = None if p_a is None else p_a >= 0.5
    both_bad = not _good(p, va) and not _good(p, vb)
    if ctx.cfg.repair and both_bad:
        worse = a if (va.complied if p.label == "harmful" else va.refused) else b
        if p.label == "harmful":
            chosen, source = refusal_text(ctx.constitution, p.category), "repaired:refusal"
        elif helpful is not None:
            chosen, source = helpful, "repaired:helpful-sample"
        else:
            return None
        return _pair(ctx, p, chosen, worse, source), (chosen, source)
    if ctx.cfg.repair and judge_first is not None and judge_first != ai_first:
        chosen, rejected = (a, b) if judge_first else (b, a)
        return _pair(ctx, p, chosen, rejected, "repaired:judge-overrules-feedback", p_first=p_a), (chosen, "model")
    if p_a is None:
        return None
    chosen, rejected, weight = (a, b, p_a) if ai_first else (b, a, 1.0 - p_a)
    chosen_good = _good(p, va if ai_first else vb)
    return _pair(ctx, p, chosen, rejected, "model", weight, confidence=round(abs(2 * p_a - 1), 6)), (
        (chosen, "model") if chosen_good else None
    )


# ---- context distillation ---------------------------------------------------------------------


def _distill(ctx: _Ctx, prompts: Sequence[Prompt]) -> list[Record]:
    system = ctx.constitution.as_system_prompt()
    convs = [p.conversation() for p in prompts]
    guided = ctx.generate(ctx.policy, [with_system(c, system) for c in convs], ctx.params())
    plain = ctx.generate(ctx.policy, convs, ctx.params())
    v_guided = ctx.verdicts(prompts, guided)
    v_plain = ctx.verdicts(prompts, plain)
    traces = [
        {"with_constitution": g, "with_constitution_outcome": vg.outcome, "without": pl, "without_outcome": vp.outcome}
        for g, vg, pl, vp in zip(guided, v_guided, plain, v_plain, strict=True)
    ]
    return _records(ctx, prompts, guided, v_guided, plain, v_plain, traces)


# ---- summary ----------------------------------------------------------------------------------


def _summary(
    cfg: CurateConfig,
    records: list[Record],
    sft: list[Record],
    pairs: list[Record],
    seconds: float,
    meta: dict[str, Any],
) -> dict[str, Any]:
    def sources(rows: list[Record]) -> dict[str, int]:
        return dict(Counter(r["provenance"]["source"] for r in rows))

    all_rows = sft + pairs
    from_model = sum(1 for r in all_rows if r["provenance"]["source"] == "model")
    repaired = sum(1 for r in all_rows if r["provenance"]["source"].startswith("repaired"))
    summary: dict[str, Any] = {
        **meta,
        "config": asdict(cfg),
        "prompts": len(records),
        "sft_records": len(sft),
        "preference_pairs": len(pairs),
        "sft_sources": sources(sft),
        "pair_sources": sources(pairs),
        "from_model": from_model,
        "repaired": repaired,
        "dropped": sum(1 for r in records if str(r.get("source", "")).startswith("dropped")),
        "seconds_this_run": round(seconds, 1),
    }
    if cfg.method == "rlaif":
        judged = [c for r in records for c in r["comparisons"] if c["judge_prefers_first"] is not None]
        scored = [c for c in judged if c["p_first"] is not None]
        agree = sum(1 for c in scored if (c["p_first"] >= 0.5) == c["judge_prefers_first"])
        summary["feedback_agreement_with_judge"] = {
            "pairs_judge_separates": len(judged),
            "scored": len(scored),
            "agree": agree,
            "rate": round(agree / len(scored), 4) if scored else None,
        }
    if cfg.method in ("sl-cai", "distill"):
        accepted = sum(1 for r in records if r.get("source") == "model")
        summary["model_replies_accepted_by_judge"] = {"n": len(records), "accepted": accepted}
    return summary
