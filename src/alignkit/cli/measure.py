"""Measuring commands: posture, compare, redteam."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from alignkit.cli.base import (
    DEFAULT_JUDGE,
    ConstitutionOpt,
    JudgeOpt,
    MaxNewOpt,
    ModelOpt,
    _rate,
    _run_with_bar,
    app,
    console,
    err,
    with_backend,
    with_posture,
)
from alignkit.jobs.backend import BackendSpec


def _print_rates(result: Any) -> None:
    table = Table("category", "harmful compliance", "over-refusal", "n harmful", "n benign")
    for s in result.worst_of_k or result.greedy:
        h, o = s.harmful_compliance_rate, s.over_refusal_rate
        table.add_row(s.category, _rate(h), _rate(o), str(h.n), str(o.n))
    console.print(table)
    v = result.verdict
    failing = ", ".join(sorted({f.category for f in v.failures}))
    verdict = "[green]PASS[/green]" if v.passed else "[red]FAIL[/red]"
    console.print(f"profile {v.profile}: {verdict}" + (f" (failing: {failing})" if failing else ""))


@app.command()
@with_backend
@with_posture
def posture(
    backend: BackendSpec,
    posture: dict[str, Any],
    model: ModelOpt = "smollm2-135m-instruct",
    out: Annotated[Path, typer.Option(help="Run folder: alignkit.sqlite, posture.json, report.html.")] = Path(
        "runs/posture"
    ),
    helpfulness: Annotated[bool, typer.Option(help="Also measure helpfulness (checkable answers, ...).")] = True,
) -> None:
    """Measure harmful compliance and over-refusal per category, against a workload profile, and helpfulness."""
    from alignkit.jobs.posture import PostureSpec, load, measure_posture

    spec = PostureSpec([model], out, backend=backend, helpfulness=helpfulness, **posture)
    with err.status(f"loading {model} and the {spec.judge} judge (the first use trains it: a few minutes) ..."):
        loaded = load(spec)
    result, helpful = _run_with_bar(lambda progress: measure_posture(spec, progress, loaded))
    _print_rates(result)
    if helpful is not None:
        m = helpful.reference_loglik
        reference = f", reference log-prob/token {m.mean:.3f}" if m else ""
        console.print(f"helpfulness: checkable answers right {_rate(helpful.checkable_accuracy)}, degenerate "
                      f"{_rate(helpful.degenerate_rate)}{reference}")  # fmt: skip
    console.print(f"wrote {out / 'posture.json'}, {out / 'helpfulness.json'} and {out / 'report.html'}")


@app.command()
@with_backend
@with_posture
def compare(
    backend: BackendSpec,
    posture: dict[str, Any],
    models: Annotated[list[str], typer.Argument(help="Two or more models (registry names, folders, .gguf, hub ids).")],
    out: Annotated[Path, typer.Option(help="Run folder shared by all models.")] = Path("runs/compare"),
) -> None:
    """Measure several models on one suite: one table, the Pareto front, the recommendation."""
    from alignkit.jobs.posture import PostureSpec, compare_posture, load

    spec = PostureSpec(models, out, backend=backend, **posture)
    with err.status(f"loading the {spec.judge} judge (the first use trains it: a few minutes) ..."):
        loaded = load(spec, models=False)
    results, front, rec = _run_with_bar(lambda progress: compare_posture(spec, progress, loaded))
    table = Table("model", "harmful compliance", "over-refusal", f"profile {spec.profile}", "Pareto")
    for r in results:
        h = r.headline()
        passed = "pass" if r.verdict.passed else f"fail ({len(r.verdict.failures)})"
        table.add_row(r.model, _rate(h.harmful_compliance_rate), _rate(h.over_refusal_rate), passed,
                      "yes" if r.model in front else "")  # fmt: skip
    console.print(table)
    console.print(f"recommended: {rec[0]} ({rec[1]})")
    console.print(f"wrote {out / 'compare.json'} and {out / 'report.html'}")


@app.command()
@with_backend
def redteam(
    backend: BackendSpec,
    model: ModelOpt = "smollm2-135m-instruct",
    out: Annotated[
        Path, typer.Option(help="Run folder: alignkit.sqlite, redteam.json, report.html, findings/.")
    ] = Path("runs/redteam"),
    attacks: Annotated[str, typer.Option(help="all, or a comma list of families and attack names.")] = "all",
    seeds: Annotated[
        str, typer.Option(help="Seed requests: a built-in suite (its train split) or a file.")
    ] = "default",
    per_category: Annotated[int | None, typer.Option(help="At most N seeds per hazard category.")] = 3,
    samples: Annotated[int, typer.Option(min=1, help="Runs of each attack on each seed.")] = 1,
    judge: JudgeOpt = DEFAULT_JUDGE,
    attacker: Annotated[str | None, typer.Option(help="Attacker model for PAIR (default: the target itself).")] = None,
    constitution: ConstitutionOpt = "default",
    max_new_tokens: MaxNewOpt = 96,
    max_prompts: Annotated[int | None, typer.Option(help="Cap on target calls across the campaign.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Cap on generated tokens across the campaign.")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Cap on generation seconds across the campaign.")] = None,
) -> None:
    """Attack a model with jailbreaks, encodings, escalation, best-of-N, injection and an attacker model."""
    from alignkit.jobs.redteam import RedteamSpec, run_redteam
    from alignkit.redteam.campaign import CampaignConfig, success_table

    campaign = CampaignConfig(attacks, samples, max_new_tokens=max_new_tokens, max_prompts=max_prompts,
                              max_tokens=max_tokens, max_seconds=max_seconds)  # fmt: skip
    spec = RedteamSpec(model, out, judge, seeds, per_category=per_category, campaign=campaign, attacker=attacker,
                       constitution=constitution, backend=backend)  # fmt: skip
    result, body = _run_with_bar(lambda progress: run_redteam(spec, progress))
    table = success_table(result.units)
    cats = sorted({c for cells in table.values() for c in cells if c != "all"})
    grid = Table("attack", "all", *cats)
    for a, cells in sorted(table.items(), key=lambda kv: -kv[1]["all"].rate):
        grid.add_row(a, f"{cells['all'].rate:.0%}", *(f"{cells[c].rate:.0%}" if c in cells else "-" for c in cats))
    console.print(grid)
    if not result.complete:
        console.print(f"[yellow]stopped by {result.stopped_by}[/yellow]: rerun with a higher cap to continue")
    console.print(f"{body['findings']['pairs']} findings -> {out / 'findings'}; wrote {out / 'redteam.json'}, "
                  f"{out / 'report.html'}")  # fmt: skip
