"""Curation: turn prompts and a constitution into SFT and preference data.

Four methods, a module each: `sl-cai` (critique and revision), `rlaif` (AI-feedback comparisons),
`distill` (context distillation), `on-policy` (the policy's own judged samples, iterated in rounds).
Every candidate is checked by a judge (`repair`), and every record carries its provenance
(`records.Source`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alignkit.backends.base import Backend
from alignkit.constitution import Constitution
from alignkit.curate.config import METHODS, CurateConfig, Method
from alignkit.curate.context import Context
from alignkit.curate.distill import distill
from alignkit.curate.onpolicy import on_policy
from alignkit.curate.records import DROPPED, Curated, Record, is_repaired
from alignkit.curate.rlaif import rlaif
from alignkit.curate.sl_cai import sl_cai
from alignkit.data import JsonlAppender, read_done, write_records
from alignkit.errors import AlignkitError
from alignkit.judges.base import Judge
from alignkit.types import Prompt

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total)."""
Step = Callable[[Context, Sequence[Prompt]], list[Curated]]
STEPS: dict[Method, Step] = {"sl-cai": sl_cai, "rlaif": rlaif, "distill": distill, "on-policy": on_policy}


@dataclass
class CurateResult:
    out_dir: Path
    summary: dict[str, Any]
    sft_path: Path
    preferences_path: Path


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
    ctx = Context(cfg, policy, teacher or policy, judge, constitution)
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
    step = STEPS[cfg.method]
    started = time.monotonic()
    if progress:
        progress("curate", len(prompts) - len(todo), len(prompts))
    with JsonlAppender(trace_path) as trace:
        for start in range(0, len(todo), cfg.chunk):
            chunk = todo[start : start + cfg.chunk]
            for curated in step(ctx, chunk):
                trace.write(curated.as_dict(ctx.meta))
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
        # a field added since the folder was written reads as its default there
        defaults = asdict(CurateConfig())
        before = {k: defaults[k] for k in body} | json.loads(path.read_text(encoding="utf-8"))
        if before != body:
            changed = sorted(k for k in body if before.get(k) != body[k])
            raise AlignkitError(f"{out} holds a curation with other settings ({', '.join(changed)}); use a new --out")
    else:
        path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


def _summary(
    cfg: CurateConfig,
    records: list[Record],
    sft: list[Record],
    pairs: list[Record],
    seconds: float,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Counts by source, and how often the AI feedback (rlaif) or the model (sl-cai, distill) agreed
    with the judge. Built from the trace as written, so a resumed run counts every prompt once."""

    def sources(rows: list[Record]) -> dict[str, int]:
        return dict(Counter(r["provenance"]["source"] for r in rows))

    all_rows = sft + pairs
    summary: dict[str, Any] = {
        **meta,
        "config": asdict(cfg),
        "prompts": len(records),
        "sft_records": len(sft),
        "preference_pairs": len(pairs),
        "sft_sources": sources(sft),
        "pair_sources": sources(pairs),
        "from_model": sum(1 for r in all_rows if r["provenance"]["source"] == "model"),
        "repaired": sum(1 for r in all_rows if is_repaired(r["provenance"]["source"])),
        "dropped": sum(1 for r in records if r.get("source") == DROPPED),
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
    if cfg.method == "on-policy":
        summary["round"] = cfg.round
        summary["skipped"] = dict(Counter(r["skipped"] for r in records if r.get("skipped")))
    if cfg.method in ("sl-cai", "distill"):
        accepted = sum(1 for r in records if r.get("source") == "model")
        summary["model_replies_accepted_by_judge"] = {"n": len(records), "accepted": accepted}
    return summary
