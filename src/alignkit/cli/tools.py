"""Everyday commands: generate, serve, and the models, constitution and judge groups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from alignkit.cli.base import (
    DEFAULT_JUDGE,
    JudgeOpt,
    MaxNewOpt,
    ModelOpt,
    _run_with_bar,
    app,
    console,
    constitution_app,
    err,
    judge_app,
    models_app,
    with_backend,
)
from alignkit.jobs.backend import BackendSpec


@app.command()
@with_backend
def generate(
    backend: BackendSpec,
    model: ModelOpt = "smollm2-135m-instruct",
    prompts: Annotated[
        str, typer.Option(help="Prompt file (JSONL/CSV/Parquet/HF folder) or a built-in: demo.")
    ] = "demo",
    out: Annotated[Path, typer.Option(help="Results JSONL; rerunning skips the ids in it.")] = Path(
        "runs/generate.jsonl"
    ),
    system: Annotated[str | None, typer.Option(help="System prompt put before every conversation.")] = None,
    max_new_tokens: MaxNewOpt = 256,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    logprobs: Annotated[bool, typer.Option(help="Record each generated token's log-probability.")] = False,
) -> None:
    """Answer a prompt file with a model, writing each reply to --out as it comes."""
    from alignkit.generate import generate_file
    from alignkit.types import GenerationParams

    params = GenerationParams(max_new_tokens, temperature, top_p, seed=seed, stop=list(stop or []), logprobs=logprobs)
    with err.status(f"loading {model} ..."):
        b = backend.build(model)
    try:
        s = _run_with_bar(
            lambda p: generate_file(b, prompts, out, params, system=system, progress=lambda n, t: p("generate", n, t))
        )
    except KeyboardInterrupt:
        err.print(f"interrupted: the replies in {out} are kept; rerun the same command to resume")
        raise typer.Exit(130) from None
    rate = s.completion_tokens / s.seconds if s.seconds > 0 else 0.0
    console.print(f"{out}: {s.written} written, {s.skipped} already there, {s.failed} failed "
                  f"({s.completion_tokens} tokens in {s.seconds:.1f}s, {rate:.1f} tok/s)")  # fmt: skip
    if s.failed:
        console.print("rerun the same command to retry the failed prompts")
        raise typer.Exit(1)


@app.command()
@with_backend
def serve(
    backend: BackendSpec,
    model: ModelOpt = "smollm2-135m-instruct",
    host: str = "127.0.0.1",
    port: int = 8000,
    keys_file: Annotated[Path | None, typer.Option(help="API keys, one per line (else $ALIGNKIT_API_KEYS).")] = None,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Larger request bodies get 413.")] = 1_000_000,
) -> None:
    """Serve a model as an OpenAI-compatible /v1/chat/completions endpoint (no keys anywhere: no auth)."""
    from alignkit.serve import load_api_keys
    from alignkit.serve import serve as run_server

    with err.status(f"loading {model} ..."):
        b = backend.build(model)
    run_server(b, host=host, port=port, api_keys=load_api_keys(keys_file), max_body_bytes=max_body_bytes)


ConstitutionArg = Annotated[str, typer.Argument(help="default, healthcare, creative, or a YAML file.")]


@constitution_app.command("validate")
def constitution_validate(constitution: ConstitutionArg = "default") -> None:
    """Check a constitution file; errors name the line and the field."""
    from alignkit.constitution import load_constitution

    c = load_constitution(constitution)
    kinds = {k: sum(p.kind == k for p in c.principles) for k in ("harmlessness", "honesty", "helpfulness")}
    console.print(f"{constitution}: valid, {len(c.principles)} principles ("
                  + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")")  # fmt: skip
    if c.uncovered():
        console.print(f"[yellow]warning:[/yellow] no principle governs {', '.join(c.uncovered())}")


@constitution_app.command("show")
def constitution_show(constitution: ConstitutionArg = "default") -> None:
    """The principles of a constitution, one row each."""
    from alignkit.constitution import load_constitution

    c = load_constitution(constitution)
    console.print(f"[b]{c.name}[/b]: {c.description}")
    table = Table("id", "kind", "categories", "statement", "refusal")
    for p in c.principles:
        table.add_row(p.id, p.kind, ", ".join(p.categories) or "-", p.statement, p.refusal or "-")
    console.print(table)


@judge_app.command("calibrate")
def judge_calibrate(
    judge: JudgeOpt = DEFAULT_JUDGE,
    labels: Annotated[
        str | None,
        typer.Option(
            help="Labelled CSV/JSONL (response, label[, prompt, style, source]); default: the built-in test split."
        ),
    ] = None,
) -> None:
    """Accuracy overall, per reply style and per source, precision and recall, and the confusion matrix."""
    from alignkit.jobs.judge import calibrate_judge

    with err.status(f"judging with {judge} (the first use trains it: a few minutes) ..."):
        cal = calibrate_judge(judge, labels)
    console.print(f"{cal.judge} on {labels or 'built-in test split'}: n={cal.n}, errors={cal.errors}, "
                  f"accuracy={cal.accuracy:.3f}, refusal-vs-compliance accuracy={cal.binary_accuracy:.3f}")  # fmt: skip
    outcomes = list(cal.confusion)
    table = Table("true \\ judged", *outcomes, "error", "precision", "recall")
    for t in outcomes:
        row = cal.confusion[t]
        table.add_row(t, *(str(row[o]) for o in outcomes), str(row["error"]), f"{cal.precision[t]:.3f}",
                      f"{cal.recall[t]:.3f}")  # fmt: skip
    console.print(table)
    for title, groups in (("style", cal.per_style), ("source", cal.per_source)):
        by = Table(title, "n", "refusal-vs-compliance", "three-class")
        for name, a in sorted(groups.items(), key=lambda kv: kv[1].binary_accuracy):
            by.add_row(name, str(a.n), f"{a.binary_accuracy:.3f}", f"{a.accuracy:.3f}")
        console.print(by)


@judge_app.command("review")
def judge_review(
    run_dir: Annotated[Path, typer.Argument(help="A posture or `alignkit run` folder (its replies/*.jsonl).")],
    out: Annotated[Path, typer.Option(help="CSV to write: prompt, response, verdict, confidence, label.")] = Path(
        "review.csv"
    ),
    judge: JudgeOpt = DEFAULT_JUDGE,
    limit: Annotated[int, typer.Option(min=1, help="Rows: the verdicts the judge is least sure of.")] = 200,
) -> None:
    """Export the verdicts a judge is least sure of, for people to label (fill in the `label` column)."""
    from alignkit.jobs.judge import review_judge

    with err.status(f"judging the replies under {run_dir} with {judge} ..."):
        rows = review_judge(run_dir, judge, out, limit)
    console.print(f"wrote {len(rows)} rows to {out}; fill in `label` (full_compliance, partial_refusal, "
                  f"full_refusal, evasive), then `alignkit judge calibrate --labels {out}` or "
                  f"`alignkit judge train --labels {out}`")  # fmt: skip


@judge_app.command("train")
def judge_train(
    labels: Annotated[list[Path], typer.Option(help="Labelled CSV/JSONL files (prompt, response, label) to add.")],
) -> None:
    """Retrain the pair judge on the built-in data plus your labelled replies (cached by their hash)."""
    from alignkit.jobs.judge import train_pair_judge

    folder = train_pair_judge(labels, log=err.print)
    console.print(f"trained: {folder}; use it with --judge pair:{folder}")


@models_app.command("list")
def models_list() -> None:
    """The registry's models and what is cached."""
    from alignkit.models import home, list_models

    table = Table("name", "pulled", "path", "description")
    for row in list_models():
        table.add_row(row.name, "yes" if row.pulled else "no", row.path or "-", row.description)
    console.print(table)
    console.print(f"cache: {home()}")


@models_app.command("pull")
def models_pull(model: Annotated[str, typer.Argument(help="Registry name or a .gguf file.")]) -> None:
    """Fetch and convert a model into the cache (once; later loads take about a second)."""
    from alignkit.models import pull

    with err.status(f"pulling {model} (dequantizing to safetensors) ..."):
        path = pull(model)
    console.print(path)


@models_app.command("info")
def models_info(model: Annotated[str, typer.Argument(help="Registry name, HF folder, .gguf file or hub id.")]) -> None:
    """Architecture, sizes and files of a model, without loading its weights, and where it would run."""
    from alignkit.models import info

    console.print_json(json.dumps(info(model)))
