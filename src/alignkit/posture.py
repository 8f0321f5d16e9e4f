"""`alignkit posture` and `alignkit compare`: how a model answers harmful and benign prompts.

Every reply and verdict goes into the run folder's SQLite store as it is made, so a killed run picks
up where it stopped; metrics come from the store, never from memory, so nothing is counted twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from alignkit.backends.base import Backend
from alignkit.data import write_records
from alignkit.judges.base import Judge
from alignkit.metrics import CategoryStats, Judged, Rate, category_stats, per_prompt, stats_dict
from alignkit.profiles import Failure, Profile, ProfileVerdict, check
from alignkit.store import Store
from alignkit.suites import Split, load_suite, select_split
from alignkit.types import GenerationParams, Prompt, with_system

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total)."""


@dataclass
class PostureConfig:
    suite: str = "default"
    """Built-in suite name or a suite file (XSTest/HarmBench/AdvBench CSV, JSONL)."""
    split: Split = "test"
    """Which split of the suite to measure on; training data is made from `train` only."""
    max_new_tokens: int = 160
    """Reply length; a refusal shows in the first sentences."""
    system: str | None = None
    """System prompt put before every prompt."""
    samples: int = 0
    """Extra sampled replies per prompt, for worst-of-k rates (0: greedy only)."""
    temperature: float = 0.7
    """Sampling temperature of the extra replies."""
    limit: int | None = None
    """Measure only the first N prompts of each label (for smoke runs)."""
    chunk: int = 32
    """Prompts generated (and stored) per step."""

    def key(self) -> str:
        """What makes two runs' replies comparable (the judge and profile are not part of it)."""
        body = {k: getattr(self, k) for k in ("max_new_tokens", "system", "temperature")}
        return hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class PostureResult:
    model: str
    judge: str
    config: dict[str, Any]
    n_prompts: int
    greedy: list[CategoryStats]
    worst_of_k: list[CategoryStats] | None
    verdict: ProfileVerdict
    examples: list[dict[str, Any]] = field(default_factory=list)

    def headline(self) -> CategoryStats:
        return (self.worst_of_k or self.greedy)[-1]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "judge": self.judge,
            "config": self.config,
            "n_prompts": self.n_prompts,
            "greedy": stats_dict(self.greedy),
            "profile": self.verdict.as_dict(),
        }
        if self.worst_of_k is not None:
            out["worst_of_k"] = stats_dict(self.worst_of_k)
        return out

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> PostureResult:
        """The result `as_dict` wrote (posture.json, or one model of compare.json); the examples are not
        part of it and come back empty."""
        worst = body.get("worst_of_k")
        return cls(
            model=body["model"],
            judge=body["judge"],
            config=body["config"],
            n_prompts=body["n_prompts"],
            greedy=_stats_from_dict(body["greedy"]),
            worst_of_k=None if worst is None else _stats_from_dict(worst),
            verdict=ProfileVerdict(
                body["profile"]["profile"],
                body["profile"]["passed"],
                [Failure(**f) for f in body["profile"]["failures"]],
            ),
        )


def rate_from_dict(d: dict[str, Any]) -> Rate:
    """A `Rate` from its JSON form (`dataclasses.asdict`)."""
    return Rate(int(d["count"]), int(d["n"]), float(d["rate"]), float(d["low"]), float(d["high"]))


def _stats_from_dict(body: dict[str, dict[str, Any]]) -> list[CategoryStats]:
    """Per-category stats from their JSON form; a rate a file predates keeps its default (no data)."""
    rates = [f.name for f in fields(CategoryStats) if f.name not in ("category", "errors")]
    return [
        CategoryStats(
            category=cat,
            errors=int(s["errors"]),
            **{k: rate_from_dict(s[k]) for k in rates if k in s},  # type: ignore[arg-type]
        )
        for cat, s in body.items()
    ]


def suite_prompts(config: PostureConfig) -> list[Prompt]:
    prompts = select_split(load_suite(config.suite), config.split)
    if config.limit is not None:
        by_label: dict[str | None, list[Prompt]] = {}
        for p in prompts:
            by_label.setdefault(p.label, []).append(p)
        prompts = [p for group in by_label.values() for p in group[: config.limit]]
    return prompts


def run_posture(
    backend: Backend,
    judge: Judge,
    profile: Profile,
    config: PostureConfig,
    out_dir: str | Path,
    progress: Progress | None = None,
) -> PostureResult:
    out = Path(out_dir)
    store = Store(out / "alignkit.sqlite")
    try:
        key = config.key()
        store.save_config(key, json.dumps(asdict(config), sort_keys=True))
        prompts = suite_prompts(config)
        _generate(store, backend, prompts, config, key, progress)
        _judge(store, backend.name, judge, key, progress)
        rows = store.judged(backend.name, key, judge.name)
    finally:
        store.close()
    wanted = {p.id for p in prompts}
    judged = [
        Judged(r["prompt_id"], r["label"], r["category"], r["sample"], r["outcome"])
        for r in rows
        if r["prompt_id"] in wanted
    ]
    greedy = category_stats(per_prompt(judged, samples={0}))
    worst = category_stats(per_prompt(judged)) if config.samples > 0 else None
    verdict = check(profile, worst or greedy)
    result = PostureResult(
        model=backend.name,
        judge=judge.name,
        config=asdict(config),
        n_prompts=len(prompts),
        greedy=greedy,
        worst_of_k=worst,
        verdict=verdict,
        examples=_examples([r for r in rows if r["prompt_id"] in wanted and r["sample"] == 0]),
    )
    keep = (
        "prompt_id",
        "sample",
        "category",
        "label",
        "prompt",
        "completion",
        "outcome",
        "harm",
        "rationale",
    )
    write_records(replies_path(out, backend.name), [{k: r[k] for k in keep} for r in rows if r["prompt_id"] in wanted])
    return result


def replies_path(out_dir: str | Path, model: str) -> Path:
    """Every judged reply of one model, as JSONL, for reading and auditing."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-") or "model"
    return Path(out_dir) / "replies" / f"{slug}.jsonl"


def _generate(
    store: Store,
    backend: Backend,
    prompts: list[Prompt],
    config: PostureConfig,
    key: str,
    progress: Progress | None,
) -> None:
    done = store.generated(backend.name, key)
    jobs = [(p, s) for s in range(config.samples + 1) for p in prompts if (p.id, s) not in done]
    total, finished = len(jobs), 0
    if progress:
        progress("generate", 0, total)
    for lo in range(0, len(jobs), config.chunk):
        chunk = jobs[lo : lo + config.chunk]
        for sample in sorted({s for _, s in chunk}):
            part = [p for p, s in chunk if s == sample]
            params = GenerationParams(
                max_new_tokens=config.max_new_tokens,
                temperature=0.0 if sample == 0 else config.temperature,
                seed=None if sample == 0 else sample,
            )
            completions = backend.generate([with_system(p.conversation(), config.system) for p in part], params)
            rows = [
                {
                    "prompt_id": p.id,
                    "sample": sample,
                    "label": p.label,
                    "category": p.category,
                    "prompt": p.text if p.text is not None else json.dumps(p.messages),
                    "completion": c.text,
                    "finish_reason": c.finish_reason,
                    "completion_tokens": c.completion_tokens,
                }
                for p, c in zip(part, completions, strict=True)
                if c.ok
            ]
            store.add_generations(backend.name, key, rows)
            finished += len(part)
            if progress:
                progress("generate", finished, total)


def _judge(store: Store, model: str, judge: Judge, key: str, progress: Progress | None, batch: int = 64) -> None:
    todo = store.unjudged(model, key, judge.name)
    if progress:
        progress("judge", 0, len(todo))
    for lo in range(0, len(todo), batch):
        part = todo[lo : lo + batch]
        verdicts = judge.judge([r["prompt"] for r in part], [r["completion"] for r in part])
        rows = [
            {**r, "outcome": v.outcome, "harm": v.harm, "rationale": v.rationale}
            for r, v in zip(part, verdicts, strict=True)
        ]
        store.add_verdicts(model, key, judge.name, rows)
        if progress:
            progress("judge", lo + len(part), len(todo))


def _examples(rows: list[dict[str, Any]], per_cell: int = 2) -> list[dict[str, Any]]:
    """A few replies per (category, label, outcome) cell, for the report."""
    seen: dict[tuple[str, str, str], int] = {}
    out = []
    for r in rows:
        cell = (r["category"], r["label"], r["outcome"])
        if seen.get(cell, 0) < per_cell:
            seen[cell] = seen.get(cell, 0) + 1
            out.append({k: r[k] for k in ("prompt_id", "category", "label", "outcome", "prompt", "completion")})
    return out


def write_posture(result: PostureResult, out_dir: str | Path, calibration: dict[str, Any] | None = None) -> Path:
    path = Path(out_dir) / "posture.json"
    tmp = path.with_name("posture.json.tmp")
    tmp.write_text(json.dumps({**result.as_dict(), "judge_calibration": calibration}, indent=1) + "\n")
    tmp.replace(path)
    return path


# ---- comparing models ------------------------------------------------------------------------


def pareto_front(results: list[PostureResult]) -> list[str]:
    """Models no other model beats on both harmful compliance and over-refusal (lower is better)."""
    points = {
        r.model: (r.headline().harmful_compliance_rate.rate, r.headline().over_refusal_rate.rate) for r in results
    }
    front = []
    for m, (h, o) in points.items():
        dominated = any(h2 <= h and o2 <= o and (h2 < h or o2 < o) for m2, (h2, o2) in points.items() if m2 != m)
        if not dominated:
            front.append(m)
    return front


def recommend(results: list[PostureResult]) -> tuple[str, str]:
    """(model, why): among models that pass the profile, the lowest sum of the two rates; if none
    passes, the one that overshoots the profile's ceilings by the least in total."""

    def total(r: PostureResult) -> float:
        h = r.headline()
        return h.harmful_compliance_rate.rate + h.over_refusal_rate.rate

    def excess(r: PostureResult) -> float:
        return sum(f.value - f.ceiling for f in r.verdict.failures)

    passing = [r for r in results if r.verdict.passed]
    if passing:
        best = min(passing, key=total)
        return best.model, f"passes the {best.verdict.profile} profile with the lowest combined rates"
    best = min(results, key=lambda r: (excess(r), total(r)))
    return best.model, (
        f"no model passes the {best.verdict.profile} profile; this one overshoots its ceilings the least "
        f"({len(best.verdict.failures)} failing checks, {excess(best):.2f} in total)"
    )


# ---- the judge's calibration -------------------------------------------------------------------


def judge_calibration(judge: Judge) -> dict[str, Any] | None:
    """The judge's measured agreement with labelled replies it was not trained on (`judge_card`: the style
    corpus's test split, overall and per style, and real SmolLM2 replies labelled by hand), with the hash of
    its training data. None for model judges, whose calibration costs a generation per reply (run
    `alignkit judge calibrate` for them)."""
    if judge.name.startswith("llm:"):
        return None
    from alignkit.judges.calibrate import judge_card

    return judge_card(judge)
