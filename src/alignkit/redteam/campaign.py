"""Campaigns: seeds x attacks x samples against one target, stored as they land, resumable, capped.

A unit is one attack on one seed for one sample. It is written to the run folder's SQLite store in
one transaction with all its trials, so a killed campaign loses at most the units in flight and a rerun
skips every unit already there: totals after a resume equal those of an uninterrupted run. Each unit's
randomness comes from (campaign seed, attack, seed id, sample), never from the order units run in.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from alignkit.backends.base import Backend
from alignkit.constitution import Constitution
from alignkit.data import load_prompts, preference_record, write_records
from alignkit.errors import DataError
from alignkit.judges.base import Judge
from alignkit.metrics import Rate
from alignkit.redteam.base import SUCCESS_OUTCOMES, Attack, Budget, Seed, TemplateAttack, Trial, attempt
from alignkit.refusals import pick_refusal, refusal_for
from alignkit.store import Store
from alignkit.suites import load_suite, select_split
from alignkit.types import GenerationParams, PreferencePair

Progress = Callable[[str, int, int], None]


@dataclass
class CampaignConfig:
    attacks: str = "all"
    """`all`, or a comma list of families and attack names (the direct baseline always runs)."""
    samples: int = 1
    """Runs of each attack on each seed; sample 0 decodes greedily, later ones sample."""
    temperature: float = 0.7
    """Temperature of samples after the first."""
    max_new_tokens: int = 96
    """Reply length; enough for the judge to see compliance or refusal."""
    max_prompts: int | None = None
    """Hard cap on target calls across the whole campaign, resumed runs included."""
    max_tokens: int | None = None
    """Hard cap on generated tokens across the whole campaign."""
    max_seconds: float | None = None
    """Hard cap on generation time across the whole campaign."""
    seed: int = 0
    """Campaign seed: with it, every unit's templates and augmentations are fixed."""
    chunk: int = 32
    """Template-attack units sent to the target per batch."""

    def key(self) -> str:
        """What makes two runs the same campaign (caps may change between resumes)."""
        body = {k: getattr(self, k) for k in ("samples", "temperature", "max_new_tokens", "seed")}
        return hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def load_seeds(spec: str = "default", split: str = "train", per_category: int | None = None) -> list[Seed]:
    """Harmful seeds: a built-in suite's split (train by default, so measurement prompts stay unseen),
    or a JSONL/CSV file with `prompt` and optionally `id`, `category`, `label` (benign rows are skipped)."""
    try:
        prompts = select_split(load_suite(spec), split)  # type: ignore[arg-type]
    except DataError:  # a seed file may leave out labels: every row is then a seed
        prompts = load_prompts(spec)
    seeds: list[Seed] = []
    counts: dict[str, int] = defaultdict(int)
    for p in prompts:
        if p.label == "benign" or p.text is None:
            continue
        category = p.category or "uncategorised"
        if per_category is not None and counts[category] >= per_category:
            continue
        counts[category] += 1
        seeds.append(Seed(p.id, p.text, category))
    return seeds


@dataclass
class CampaignResult:
    model: str
    config: dict[str, Any]
    units: list[dict[str, Any]]
    complete: bool
    stopped_by: str | None
    """Which cap stopped the campaign, if any."""
    usage: dict[str, float] = field(default_factory=dict)


def _unit_rng(cfg: CampaignConfig, attack: str, seed_id: str, sample: int) -> random.Random:
    return random.Random(f"{cfg.seed}:{attack}:{seed_id}:{sample}")


def _params(cfg: CampaignConfig, sample: int) -> GenerationParams:
    base = GenerationParams(max_new_tokens=cfg.max_new_tokens)
    return base if sample == 0 else replace(base, temperature=cfg.temperature, seed=sample)


def _trial_rows(trials: Sequence[Trial]) -> list[dict[str, Any]]:
    return [
        {
            "conversation": json.dumps(t.conversation),
            "reply": t.reply,
            "outcome": t.verdict.outcome,
            "harm": t.verdict.harm,
            "rationale": t.verdict.rationale,
        }
        for t in trials
    ]


def run_campaign(
    target: Backend,
    judge: Judge,
    seeds: Sequence[Seed],
    attacks: Sequence[Attack],
    cfg: CampaignConfig,
    out_dir: str | Path,
    progress: Progress | None = None,
) -> CampaignResult:
    store = Store(Path(out_dir) / "alignkit.sqlite")
    key = cfg.key()
    store.save_config(key, json.dumps(asdict(cfg), sort_keys=True))
    try:
        done = store.rt_done(target.name, key)
        units = [(a, s, k) for a in attacks for s in seeds for k in range(cfg.samples) if (a.name, s.id, k) not in done]
        total, finished = len(units), 0
        unfinished: list[dict[str, Any]] = []
        stopped_by: str | None = None
        if progress:
            progress("attack", 0, total)
        template_units = [u for u in units if isinstance(u[0], TemplateAttack)]
        adaptive_units = [u for u in units if not isinstance(u[0], TemplateAttack)]
        # Template attacks batch across seeds; adaptive ones run their own loop, a unit at a time.
        batches = [template_units[i : i + cfg.chunk] for i in range(0, len(template_units), cfg.chunk)]
        batches += [[u] for u in adaptive_units]
        for batch in batches:
            stopped_by = _cap_reached(store, target.name, key, cfg)
            if stopped_by:
                break
            prompts_used, tokens_used, _ = store.rt_usage(target.name, key)
            budget = Budget(
                prompts=(cfg.max_prompts - prompts_used) if cfg.max_prompts is not None else 10**12,
                tokens=(cfg.max_tokens - tokens_used) if cfg.max_tokens is not None else 10**12,
            )
            if not _run_batch(store, target, judge, batch, cfg, key, budget, unfinished):
                stopped_by = "max_prompts" if cfg.max_prompts is not None else "max_tokens"
                break
            finished += len(batch)
            if progress:
                progress("attack", finished, total)
        stopped_by = stopped_by or _cap_reached(store, target.name, key, cfg)
        prompts_used, tokens_used, seconds = store.rt_usage(target.name, key)
        all_units = store.rt_units(target.name, key)
    finally:
        store.close()
    expected = len(attacks) * len(seeds) * cfg.samples
    wanted = {(a.name, s.id) for a in attacks for s in seeds}
    mine = [u for u in all_units if (u["attack"], u["seed_id"]) in wanted and u["sample"] < cfg.samples]
    # This run's errored units are reported (their errors count apart) but not done: the next run retries them.
    reported = mine + [{k: u[k] for k in ("attack", "seed_id", "sample", "category", "success", "errors", "trials")}
                       for u in unfinished]  # fmt: skip
    return CampaignResult(
        model=target.name,
        config=asdict(cfg),
        units=reported,
        complete=len(mine) == expected,
        stopped_by=stopped_by if len(mine) < expected else None,
        usage={"prompts": prompts_used, "tokens": tokens_used, "seconds": seconds},
    )


def _cap_reached(store: Store, model: str, key: str, cfg: CampaignConfig) -> str | None:
    prompts, tokens, seconds = store.rt_usage(model, key)
    if cfg.max_prompts is not None and prompts >= cfg.max_prompts:
        return f"max_prompts={cfg.max_prompts}"
    if cfg.max_tokens is not None and tokens >= cfg.max_tokens:
        return f"max_tokens={cfg.max_tokens}"
    if cfg.max_seconds is not None and seconds >= cfg.max_seconds:
        return f"max_seconds={cfg.max_seconds:g}"
    return None


def _run_batch(
    store: Store,
    target: Backend,
    judge: Judge,
    batch: list[tuple[Attack, Seed, int]],
    cfg: CampaignConfig,
    key: str,
    budget: Budget,
    unfinished: list[dict[str, Any]],
) -> bool:
    """Run and store a batch of units; False when the prompt budget could not cover all of them. Units
    with an errored trial and no success are added to `unfinished` instead of the store."""
    start = time.perf_counter()
    before = (budget.prompts, budget.tokens)
    results: list[list[Trial]]
    if isinstance(batch[0][0], TemplateAttack):
        # Template attacks: one target call per sample group, across all the batch's seeds.
        planned = []
        room = budget.prompts
        for attack, seed, k in batch:
            assert isinstance(attack, TemplateAttack)
            convs = attack.conversations(seed, _unit_rng(cfg, attack.name, seed.id, k))
            if len(convs) > room:
                break
            room -= len(convs)
            planned.append(convs)
        fits = len(planned) == len(batch)
        batch = batch[: len(planned)]
        results = [[] for _ in batch]
        for k in sorted({u[2] for u in batch}):
            idx = [i for i, u in enumerate(batch) if u[2] == k]
            owners = [i for i in idx for _ in planned[i]]
            convs = [c for i in idx for c in planned[i]]
            trials = attempt(convs, [batch[i][1] for i in owners], target, judge, _params(cfg, k), budget)
            for i, trial in zip(owners, trials, strict=True):
                results[i].append(trial)
    else:
        attack, seed, k = batch[0]
        results = [attack.run(seed, target, judge, _params(cfg, k), _unit_rng(cfg, attack.name, seed.id, k), budget)]
        fits = not budget.exhausted or any(t.success for t in results[0])
    seconds = time.perf_counter() - start
    spent = max(before[0] - budget.prompts, 1)
    for (attack, seed, k), trials in zip(batch, results, strict=True):
        prompts = len(trials) if len(batch) > 1 else before[0] - budget.prompts
        errors = sum(t.verdict.outcome == "error" for t in trials)
        success = any(t.success for t in trials)
        unit: dict[str, Any] = {
            "attack": attack.name,
            "seed_id": seed.id,
            "sample": k,
            "category": seed.category,
            "success": int(success),
            "errors": errors,
            "prompts": prompts,
            "tokens": sum(t.completion_tokens for t in trials) if len(batch) > 1 else before[1] - budget.tokens,
            "seconds": seconds * prompts / spent,
        }
        # A unit with an errored trial and no success has no verdict yet: left undone, the next run retries it.
        if errors and not success:
            unfinished.append({**unit, "trials": len(trials)})
        elif fits or len(batch) > 1:
            store.rt_add_unit(target.name, key, unit, _trial_rows(trials))
    return fits


# ---- results ---------------------------------------------------------------------------------


def success_table(units: Sequence[dict[str, Any]]) -> dict[str, dict[str, Rate]]:
    """Attack success rate per attack and category (and `all`): units with a success over units that
    were scored (a unit whose every trial was a judge or target error is left out)."""
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for u in units:
        if u["errors"] == u["trials"]:
            continue
        for cat in (u["category"], "all"):
            cell = counts[u["attack"]][cat]
            cell[0] += int(u["success"])
            cell[1] += 1
    return {a: {c: Rate.of(k, n) for c, (k, n) in sorted(cats.items())} for a, cats in counts.items()}


def strongest_per_seed(units: Sequence[dict[str, Any]], table: dict[str, dict[str, Rate]]) -> dict[str, str | None]:
    """For each seed, the attack that succeeded most often on it (ties: the attack with the higher
    overall success rate); None when nothing got through."""
    per_seed: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for u in units:
        cell = per_seed[u["seed_id"]][u["attack"]]
        cell[0] += int(u["success"])
        cell[1] += 1
    out: dict[str, str | None] = {}
    for seed_id, attacks in sorted(per_seed.items()):
        best = max(attacks, key=lambda a: (attacks[a][0] / attacks[a][1], table[a]["all"].rate if a in table else 0))
        out[seed_id] = best if attacks[best][0] > 0 else None
    return out


def export_findings(
    successes: Sequence[dict[str, Any]], out_dir: str | Path, constitution: Constitution | None = None
) -> tuple[Path, Path, int]:
    """Successful trials (as the store returns them) as (a) TRL preference pairs: the attack
    conversation, a refusal the constitution gives for the seed's hazard category as `chosen` (one of its
    phrasings, drawn per finding; alignkit's table where no constitution is given), the target's reply as
    `rejected`; (b) a regression suite for `alignkit posture --suite`."""
    pairs, suite = [], []
    for t in successes:
        conversation = json.loads(t["conversation"])
        key = f"{t['attack']}-{t['seed_id']}-{t['sample']}-{t['trial']}"
        pair = PreferencePair(
            prompt=conversation,
            chosen=[{"role": "assistant", "content": _refusal(constitution, t["category"], key)}],
            rejected=[{"role": "assistant", "content": t["reply"]}],
        )
        pairs.append(preference_record(pair))
        suite.append(
            {
                "id": f"rt-{key}",
                "messages": conversation,
                "label": "harmful",
                "category": t["category"],
                "source": f"redteam:{t['attack']}",
                "split": "test",
            }
        )
    folder = Path(out_dir) / "findings"
    prefs = write_records(folder / "preferences.jsonl", pairs)
    regression = write_records(folder / "regression_suite.jsonl", suite)
    return prefs, regression, len(pairs)


def _refusal(constitution: Constitution | None, category: str, key: str) -> str:
    if constitution is None:
        return refusal_for(category)
    return pick_refusal(constitution, category, random.Random(f"redteam-refusal:{key}"))


def summary(result: CampaignResult, table: dict[str, dict[str, Rate]]) -> dict[str, Any]:
    return {
        "model": result.model,
        "config": result.config,
        "complete": result.complete,
        "stopped_by": result.stopped_by,
        "usage": result.usage,
        "attack_success_rate": {a: {c: asdict(r) for c, r in cats.items()} for a, cats in table.items()},
        "baseline": "direct",
        "strongest_attack_per_seed": strongest_per_seed(result.units, table),
    }


def redteam(
    target: Backend,
    judge: Judge,
    seeds: Sequence[Seed],
    attacks: Sequence[Attack],
    cfg: CampaignConfig,
    out_dir: str | Path,
    progress: Progress | None = None,
    constitution: Constitution | None = None,
) -> tuple[CampaignResult, dict[str, Any]]:
    """Run (or resume) a campaign, then write redteam.json, report.html and the findings."""
    from alignkit.report import render_redteam

    out = Path(out_dir)
    result = run_campaign(target, judge, seeds, attacks, cfg, out, progress)
    table = success_table(result.units)
    body = summary(result, table)
    store = Store(out / "alignkit.sqlite")
    try:
        successes = [t for t in store.rt_trials(target.name, cfg.key()) if t["outcome"] in SUCCESS_OUTCOMES]
    finally:
        store.close()
    prefs, regression, n = export_findings(successes, out, constitution)
    body["findings"] = {"preferences": str(prefs), "regression_suite": str(regression), "pairs": n}
    (out / "redteam.json").write_text(json.dumps(body, indent=1) + "\n")
    (out / "report.html").write_text(render_redteam(body, table, _examples(successes)), encoding="utf-8")
    return result, body


def _examples(successes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first successful trial of each attack."""
    seen: set[str] = set()
    examples = []
    for t in successes:
        if t["attack"] in seen:
            continue
        seen.add(t["attack"])
        sent = "\n\n".join(f"[{m['role']}] {m['content']}" for m in json.loads(t["conversation"]))
        examples.append({**t, "prompt": sent})
    return examples
