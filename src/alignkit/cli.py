"""The `alignkit` command line: each command parses, calls one library function, prints."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from alignkit import __version__
from alignkit.errors import AlignkitError
from alignkit.guard.cli import guard_app

app = typer.Typer(
    help="Measure, red-team, align and guard language models from one written constitution.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="The model registry and cache ($ALIGNKIT_HOME).", no_args_is_help=True)
app.add_typer(models_app, name="models")
constitution_app = typer.Typer(help="The constitution: principles in YAML.", no_args_is_help=True)
app.add_typer(constitution_app, name="constitution")
judge_app = typer.Typer(help="Judges: measure how well they agree with labelled replies.", no_args_is_help=True)
app.add_typer(judge_app, name="judge")
app.add_typer(guard_app, name="guard")
console = Console()
err = Console(stderr=True)


class BackendChoice(StrEnum):
    hf = "hf"
    openai = "openai"
    vllm = "vllm"


ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Registry name, HF folder, .gguf file, hub id, or the endpoint's model name."),
]
BackendOpt = Annotated[BackendChoice, typer.Option(help="hf: transformers here; openai: an endpoint; vllm: GPU.")]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1 (else $OPENAI_BASE_URL)."),
]
ApiKeyEnvOpt = Annotated[str, typer.Option(help="Environment variable that holds the endpoint's API key.")]
BatchOpt = Annotated[int, typer.Option(help="hf: prompts per batch (sorted by length).")]
ConcurrencyOpt = Annotated[int, typer.Option(help="openai: requests in flight at once.")]


def _backend(
    backend: BackendChoice,
    model: str,
    batch_size: int,
    concurrency: int,
    base_url: str | None,
    api_key_env: str,
) -> Any:
    from alignkit.backends import make_backend

    if backend is BackendChoice.hf:
        return make_backend("hf", model, batch_size=batch_size)
    if backend is BackendChoice.openai:
        return make_backend("openai", model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency)
    return make_backend("vllm", model)


@app.command()
def generate(
    model: ModelOpt = "smollm2-135m-instruct",
    prompts: Annotated[
        str, typer.Option(help="Prompt file (JSONL/CSV/Parquet/HF folder) or a built-in: demo.")
    ] = "demo",
    out: Annotated[Path, typer.Option(help="Results JSONL; rerunning skips the ids already in it.")] = Path(
        "runs/generate.jsonl"
    ),
    backend: BackendOpt = BackendChoice.hf,
    system: Annotated[str | None, typer.Option(help="System prompt put before every conversation.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    logprobs: Annotated[bool, typer.Option(help="Record each generated token's log-probability.")] = False,
    batch_size: BatchOpt = 32,
    concurrency: ConcurrencyOpt = 8,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
) -> None:
    """Answer a prompt file with a model, writing each reply to --out as it comes."""
    from alignkit.generate import generate_file
    from alignkit.types import GenerationParams

    params = GenerationParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        stop=list(stop or []),
        logprobs=logprobs,
    )
    with err.status(f"loading {model} ..."):
        b = _backend(backend, model, batch_size, concurrency, base_url, api_key_env)
    try:
        summary = _run_with_bar(
            lambda progress: generate_file(
                b, prompts, out, params, system=system, progress=lambda n, total: progress("generate", n, total)
            )
        )
    except KeyboardInterrupt:
        err.print(f"interrupted: the replies in {out} are kept; rerun the same command to resume")
        raise typer.Exit(130) from None
    rate = summary.completion_tokens / summary.seconds if summary.seconds > 0 else 0.0
    console.print(
        f"{out}: {summary.written} written, {summary.skipped} already there, {summary.failed} failed "
        f"({summary.completion_tokens} tokens in {summary.seconds:.1f}s, {rate:.1f} tok/s)"
    )
    if summary.failed:
        console.print("rerun the same command to retry the failed prompts")
        raise typer.Exit(1)


@app.command()
def serve(
    model: ModelOpt = "smollm2-135m-instruct",
    backend: BackendOpt = BackendChoice.hf,
    host: str = "127.0.0.1",
    port: int = 8000,
    batch_size: BatchOpt = 32,
    concurrency: ConcurrencyOpt = 8,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
) -> None:
    """Serve a model as an OpenAI-compatible /v1/chat/completions endpoint."""
    from alignkit.serve import serve as run_server

    with err.status(f"loading {model} ..."):
        b = _backend(backend, model, batch_size, concurrency, base_url, api_key_env)
    run_server(b, host=host, port=port)


SuiteOpt = Annotated[
    str, typer.Option(help="Built-in suite (default) or a file: XSTest/HarmBench/AdvBench CSV, or JSONL.")
]
SplitOpt = Annotated[str, typer.Option(help="Suite split to measure on: test, train or all.")]
JudgeOpt = Annotated[str, typer.Option(help="embedding (default), patterns, or llm:<model>.")]
ProfileOpt = Annotated[str, typer.Option(help="general, healthcare, legal, finance, creative, or a YAML file.")]


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )


def _posture_config(
    suite: str,
    split: str,
    max_new_tokens: int,
    system: str | None,
    samples: int,
    temperature: float,
    limit: int | None,
) -> Any:
    from alignkit.posture import PostureConfig

    if split not in ("train", "test", "all"):
        raise AlignkitError(f"--split is '{split}': use train, test or all")
    return PostureConfig(
        suite=suite,
        split=split,  # type: ignore[arg-type]
        max_new_tokens=max_new_tokens,
        system=system,
        samples=samples,
        temperature=temperature,
        limit=limit,
    )


def _run_with_bar(fn: Any) -> Any:
    with _progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        return fn(progress)


def _print_rates(result: Any) -> None:
    table = Table("category", "harmful compliance", "over-refusal", "n harmful", "n benign")
    for s in result.worst_of_k or result.greedy:
        h, o = s.harmful_compliance_rate, s.over_refusal_rate
        table.add_row(
            s.category,
            f"{h.rate:.1%} [{h.low:.1%}, {h.high:.1%}]" if h.n else "-",
            f"{o.rate:.1%} [{o.low:.1%}, {o.high:.1%}]" if o.n else "-",
            str(h.n),
            str(o.n),
        )
    console.print(table)
    v = result.verdict
    verdict = "[green]PASS[/green]" if v.passed else "[red]FAIL[/red]"
    failing = ", ".join(sorted({f.category for f in v.failures}))
    console.print(f"profile {v.profile}: {verdict}" + (f" (failing: {failing})" if failing else ""))


@app.command()
def posture(
    model: ModelOpt = "smollm2-135m-instruct",
    out: Annotated[Path, typer.Option(help="Run folder: alignkit.sqlite, posture.json, report.html.")] = Path(
        "runs/posture"
    ),
    backend: BackendOpt = BackendChoice.hf,
    suite: SuiteOpt = "default",
    split: SplitOpt = "test",
    judge: JudgeOpt = "embedding",
    profile: ProfileOpt = "general",
    system: Annotated[str | None, typer.Option(help="System prompt put before every prompt.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 160,
    samples: Annotated[int, typer.Option(min=0, help="Extra sampled replies per prompt (worst-of-k).")] = 0,
    temperature: Annotated[float, typer.Option(min=0.0, help="Temperature of the extra samples.")] = 0.7,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts of each label.")] = None,
    batch_size: BatchOpt = 32,
    concurrency: ConcurrencyOpt = 8,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
) -> None:
    """Measure harmful compliance and over-refusal per category, against a workload profile."""
    from alignkit.judges import make_judge
    from alignkit.posture import measure
    from alignkit.profiles import load_profile

    cfg = _posture_config(suite, split, max_new_tokens, system, samples, temperature, limit)
    prof = load_profile(profile)
    with err.status(f"loading {model} and the {judge} judge (the first use trains it: a few minutes) ..."):
        b = _backend(backend, model, batch_size, concurrency, base_url, api_key_env)
        j = make_judge(judge)
    result = _run_with_bar(lambda progress: measure(b, j, prof, cfg, out, progress))
    _print_rates(result)
    console.print(f"wrote {out / 'posture.json'} and {out / 'report.html'}")


@app.command()
def compare(
    models: Annotated[list[str], typer.Argument(help="Two or more models (registry names, folders, .gguf, hub ids).")],
    out: Annotated[Path, typer.Option(help="Run folder shared by all models.")] = Path("runs/compare"),
    backend: BackendOpt = BackendChoice.hf,
    suite: SuiteOpt = "default",
    split: SplitOpt = "test",
    judge: JudgeOpt = "embedding",
    profile: ProfileOpt = "general",
    system: Annotated[str | None, typer.Option(help="System prompt put before every prompt.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 160,
    samples: Annotated[int, typer.Option(min=0, help="Extra sampled replies per prompt (worst-of-k).")] = 0,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.7,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts of each label.")] = None,
    batch_size: BatchOpt = 32,
    concurrency: ConcurrencyOpt = 8,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
) -> None:
    """Measure several models on one suite: one table, the Pareto front, the recommendation."""
    from alignkit.judges import make_judge
    from alignkit.posture import compare as compare_models
    from alignkit.profiles import load_profile

    if len(models) < 2:
        raise AlignkitError("compare needs at least two models")
    cfg = _posture_config(suite, split, max_new_tokens, system, samples, temperature, limit)
    prof = load_profile(profile)
    with err.status(f"loading the {judge} judge (the first use trains it: a few minutes) ..."):
        j = make_judge(judge)

    def load(m: str) -> Any:
        with err.status(f"loading {m} ..."):
            return _backend(backend, m, batch_size, concurrency, base_url, api_key_env)

    results, front, rec = _run_with_bar(lambda progress: compare_models(models, load, j, prof, cfg, out, progress))
    table = Table("model", "harmful compliance", "over-refusal", f"profile {prof.name}", "Pareto")
    for r in results:
        h, o = r.headline().harmful_compliance_rate, r.headline().over_refusal_rate
        table.add_row(
            r.model,
            f"{h.rate:.1%} [{h.low:.1%}, {h.high:.1%}]",
            f"{o.rate:.1%} [{o.low:.1%}, {o.high:.1%}]",
            "pass" if r.verdict.passed else f"fail ({len(r.verdict.failures)})",
            "yes" if r.model in front else "",
        )
    console.print(table)
    console.print(f"recommended: {rec[0]} ({rec[1]})")
    console.print(f"wrote {out / 'compare.json'} and {out / 'report.html'}")


@app.command()
def redteam(
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
    judge: JudgeOpt = "embedding",
    attacker: Annotated[str | None, typer.Option(help="Attacker model for PAIR (default: the target itself).")] = None,
    constitution: Annotated[
        str, typer.Option(help="Constitution whose refusals become the findings' chosen replies.")
    ] = "default",
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 96,
    max_prompts: Annotated[int | None, typer.Option(help="Cap on target calls across the campaign.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Cap on generated tokens across the campaign.")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Cap on generation seconds across the campaign.")] = None,
    backend: BackendOpt = BackendChoice.hf,
    batch_size: BatchOpt = 32,
    concurrency: ConcurrencyOpt = 8,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
) -> None:
    """Attack a model with jailbreaks, encodings, escalation, best-of-N, injection and an attacker model."""
    from alignkit.judges import make_judge
    from alignkit.redteam import build_attacks
    from alignkit.redteam.campaign import CampaignConfig, load_seeds, success_table
    from alignkit.redteam.campaign import redteam as run_redteam

    cfg = CampaignConfig(
        attacks=attacks,
        samples=samples,
        max_new_tokens=max_new_tokens,
        max_prompts=max_prompts,
        max_tokens=max_tokens,
        max_seconds=max_seconds,
    )
    from alignkit.constitution import load_constitution

    principles = load_constitution(constitution)
    seed_list = load_seeds(seeds, per_category=per_category)
    if not seed_list:
        raise AlignkitError(f"no harmful seeds in {seeds}")
    with err.status(f"loading {model} and the {judge} judge ..."):
        target = _backend(backend, model, batch_size, concurrency, base_url, api_key_env)
        j = make_judge(judge)
        attacker_backend = (
            _backend(backend, attacker, batch_size, concurrency, base_url, api_key_env) if attacker else None
        )
    chosen = build_attacks(attacks, attacker_backend)
    result, body = _run_with_bar(
        lambda progress: run_redteam(target, j, seed_list, chosen, cfg, out, progress, principles)
    )
    table = success_table(result.units)
    cats = sorted({c for cells in table.values() for c in cells if c != "all"})
    grid = Table("attack", "all", *cats)
    for a, cells in sorted(table.items(), key=lambda kv: -kv[1]["all"].rate):
        grid.add_row(a, f"{cells['all'].rate:.0%}", *(f"{cells[c].rate:.0%}" if c in cells else "-" for c in cats))
    console.print(grid)
    if not result.complete:
        console.print(f"[yellow]stopped by {result.stopped_by}[/yellow]: rerun with a higher cap to continue")
    console.print(
        f"{body['findings']['pairs']} findings -> {out / 'findings'}; "
        f"wrote {out / 'redteam.json'}, {out / 'report.html'}"
    )


@app.command()
def curate(
    model: ModelOpt = "smollm2-135m-instruct",
    constitution: Annotated[str, typer.Option(help="default, healthcare, creative, or a YAML file.")] = "default",
    out: Annotated[Path, typer.Option(help="Folder: sft.jsonl, preferences.jsonl, trace.jsonl, curate.json.")] = Path(
        "runs/curate"
    ),
    method: Annotated[str, typer.Option(help="sl-cai, rlaif or distill.")] = "sl-cai",
    prompts: Annotated[
        str, typer.Option(help="A built-in suite (its --split) or a prompts file (JSONL/CSV/Parquet).")
    ] = "default",
    split: Annotated[str, typer.Option(help="train, test or all (built-in suites).")] = "train",
    teacher: Annotated[str | None, typer.Option(help="Feedback model (default: the model itself).")] = None,
    teacher_base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint serving --teacher (else it loads locally).")
    ] = None,
    judge: JudgeOpt = "embedding",
    rounds: Annotated[int, typer.Option(min=1, help="sl-cai: critique-revision rounds.")] = 1,
    samples: Annotated[int, typer.Option(min=2, help="rlaif: replies sampled per prompt.")] = 2,
    principles: Annotated[int, typer.Option(min=1, help="rlaif: principles per comparison.")] = 2,
    chain_of_thought: Annotated[bool, typer.Option(help="rlaif: feedback reasons first (clamped 40-60%).")] = False,
    repair: Annotated[bool, typer.Option(help="Replace replies the judge rejects (weak-teacher repair).")] = True,
    limit: Annotated[int | None, typer.Option(help="Curate only the first N prompts.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 160,
    seed: Annotated[int, typer.Option()] = 0,
    backend: BackendOpt = BackendChoice.hf,
    batch_size: BatchOpt = 32,
    concurrency: ConcurrencyOpt = 8,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
) -> None:
    """Turn prompts into SFT and preference data under a constitution (SL-CAI, RLAIF, context distillation)."""
    from alignkit.constitution import constitution_hash, load_constitution
    from alignkit.curate import METHODS, CurateConfig
    from alignkit.curate import curate as run_curate
    from alignkit.judges import make_judge
    from alignkit.suites import load_suite, select_split

    if method not in METHODS:
        raise AlignkitError(f"--method must be one of {', '.join(METHODS)}, not '{method}'")
    principles_doc = load_constitution(constitution)
    prompt_list = select_split(load_suite(prompts), split)  # type: ignore[arg-type]
    prompt_list = prompt_list[:limit] if limit is not None else prompt_list
    if not prompt_list:
        raise AlignkitError(f"no prompts in {prompts} (split {split})")
    cfg = CurateConfig(
        method=method,  # type: ignore[arg-type]
        rounds=rounds,
        samples=samples,
        principles_per_comparison=principles,
        chain_of_thought=chain_of_thought,
        repair=repair,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )
    with err.status(f"loading {model} and the {judge} judge ..."):
        policy = _backend(backend, model, batch_size, concurrency, base_url, api_key_env)
        if teacher is None:
            feedback = policy
        else:
            kind = BackendChoice.openai if teacher_base_url else BackendChoice.hf
            feedback = _backend(kind, teacher, batch_size, concurrency, teacher_base_url, api_key_env)
        j = make_judge(judge)
    provenance = {"constitution_sha256": constitution_hash(constitution), "prompts_source": prompts}
    result = _run_with_bar(
        lambda progress: run_curate(
            prompt_list,
            policy=policy,
            judge=j,
            constitution=principles_doc,
            out_dir=out,
            config=cfg,
            teacher=feedback,
            progress=progress,
            provenance=provenance,
        )
    )
    s = result.summary
    console.print(
        f"{s['prompts']} prompts -> {s['sft_records']} SFT records, {s['preference_pairs']} preference pairs "
        f"({s['from_model']} from the model, {s['repaired']} repaired, {s['dropped']} dropped)"
    )
    if "feedback_agreement_with_judge" in s:
        a = s["feedback_agreement_with_judge"]
        console.print(f"AI feedback agrees with the judge on {a['agree']}/{a['scored']} pairs the judge separates")
    console.print(f"wrote {result.sft_path}, {result.preferences_path}, {out / 'curate.json'}")


@app.command()
def train(
    method: Annotated[
        str, typer.Argument(help="sft, dpo, ipo, robust, simpo, orpo, kto, reward; or online: ppo, grpo.")
    ],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value settings over the config, e.g. learning_rate=1e-4 lora=false.")
    ] = None,
    model: ModelOpt = "smollm2-135m-instruct",
    data: Annotated[
        Path | None, typer.Option(help="Offline methods: TRL-format data (messages, prompt/chosen/...).")
    ] = None,
    prompts: Annotated[
        str, typer.Option(help="ppo/grpo: a built-in suite (train split) or a prompts file.")
    ] = "default",
    reward: Annotated[
        str | None,
        typer.Option(
            help="ppo/grpo: reward spec, e.g. judge:embedding, rm:runs/rm/model, 0.7*judge:patterns+0.3*rule:length."
        ),
    ] = None,
    gold: Annotated[str | None, typer.Option(help="ppo/grpo: independent gold signal for the gaming monitor.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of settings (TrainConfig or RLConfig).")] = None,
    out: Annotated[Path, typer.Option(help="Run folder; rerun the same command to resume.")] = Path("runs/train"),
) -> None:
    """Train offline (SFT, the DPO family, KTO, a reward model) or online (PPO, GRPO); LoRA by default, resumable."""
    from alignkit.train.config import METHODS

    if method in ("ppo", "grpo"):
        from alignkit.rl.config import load_rl_config
        from alignkit.rl.loop import rl_train

        if reward is None:
            raise AlignkitError(f"{method} needs --reward (e.g. judge:embedding)")
        rl_cfg = load_rl_config(config, overrides or [], method)
        rl = _run_with_bar(lambda progress: rl_train(model, prompts, out, rl_cfg, reward, gold, progress))
        shown = {k: v for k, v in rl.final_metrics.items() if isinstance(v, float)}
        console.print(", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
        if rl.gaming_step is not None:
            console.print(
                f"[yellow]specification gaming flagged at step {rl.gaming_step}[/yellow]: see {out / 'monitor.svg'}"
            )
        console.print(f"{rl.steps} steps in {rl.seconds:.0f} s; model: {rl.model_dir or rl.adapter_dir}")
        return
    from alignkit.train.config import load_train_config
    from alignkit.train.loop import train as run_train

    if method not in METHODS:
        raise AlignkitError(f"unknown method '{method}'; known: {', '.join(METHODS)}, ppo, grpo")
    if data is None or not data.exists():
        raise AlignkitError(f"{method} needs --data FILE (got {data})")
    cfg = load_train_config(config, overrides or [], method)
    result = _run_with_bar(lambda progress: run_train(model, data, out, cfg, progress))
    shown = {k: v for k, v in {**result.final_metrics, **result.eval_metrics}.items() if k not in ("step", "epoch")}
    console.print(", ".join(f"{k} {v:.4g}" for k, v in shown.items() if isinstance(v, float)))
    rate = result.examples_seen / result.train_seconds if result.train_seconds else 0.0
    console.print(f"{result.steps} steps, {rate:.3g} examples/s; model: {result.model_dir or result.adapter_dir}")


@app.command("run")
def run_loop(
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value preset settings, e.g. curate_harmful=32 profile=healthcare.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model to align (default: the preset's).")] = None,
    constitution: Annotated[str, typer.Option(help="default, healthcare, creative, or a YAML file.")] = "default",
    preset: Annotated[str, typer.Option(help="cpu-demo, smoke or gpu.")] = "cpu-demo",
    out: Annotated[Path, typer.Option(help="Run folder; rerun the same command to resume.")] = Path("runs/demo"),
) -> None:
    """The whole loop once: measure, red-team, curate, train, measure again, guard, report."""
    from alignkit.pipeline import make_preset
    from alignkit.pipeline import run as run_pipeline

    chosen = make_preset(preset, model, overrides or [])
    result = _run_with_bar(lambda progress: run_pipeline(chosen, constitution, out, progress))
    table = Table("test split", *result.headline)
    for key, label in (
        ("harmful_compliance_rate", "harmful answered"),
        ("lookalike_over_refusal_rate", "look-alikes refused"),
        ("ordinary_refusal_rate", "ordinary refused"),
    ):
        table.add_row(label, *(f"{100 * h[key]['rate']:.1f}%" for h in result.headline.values()))
    console.print(table)
    console.print(f"wrote {out / 'report.html'}, {out / 'posture_card.json'}; aligned model: {out / 'model'}")


ConstitutionArg = Annotated[str, typer.Argument(help="default, healthcare, creative, or a YAML file.")]


@constitution_app.command("validate")
def constitution_validate(constitution: ConstitutionArg = "default") -> None:
    """Check a constitution file; errors name the line and the field."""
    from alignkit.constitution import load_constitution

    c = load_constitution(constitution)
    kinds = {k: sum(p.kind == k for p in c.principles) for k in ("harmlessness", "honesty", "helpfulness")}
    console.print(
        f"{constitution}: valid, {len(c.principles)} principles ("
        + ", ".join(f"{n} {k}" for k, n in kinds.items())
        + ")"
    )
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
    judge: JudgeOpt = "embedding",
    labels: Annotated[
        str | None,
        typer.Option(help="Labelled CSV/JSONL (response, label[, prompt]); default: the built-in test split."),
    ] = None,
) -> None:
    """Accuracy, per-class precision and recall, and the confusion matrix of a judge."""
    from alignkit.judges import make_judge
    from alignkit.judges.calibrate import calibrate
    from alignkit.judges.labels import builtin_labelled, load_labelled

    examples = load_labelled(labels) if labels else [e for e in builtin_labelled() if e.split == "test"]
    with err.status(f"judging {len(examples)} replies with {judge} (the first use trains it: a few minutes) ..."):
        cal = calibrate(make_judge(judge), examples)
    console.print(
        f"{cal.judge} on {labels or 'built-in test split'}: n={cal.n}, errors={cal.errors}, "
        f"accuracy={cal.accuracy:.3f}, refusal-vs-compliance accuracy={cal.binary_accuracy:.3f}"
    )
    outcomes = list(cal.confusion)
    table = Table("true \\ judged", *outcomes, "error", "precision", "recall")
    for t in outcomes:
        row = cal.confusion[t]
        table.add_row(
            t,
            *(str(row[o]) for o in outcomes),
            str(row["error"]),
            f"{cal.precision[t]:.3f}",
            f"{cal.recall[t]:.3f}",
        )
    console.print(table)


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
def models_info(
    model: Annotated[str, typer.Argument(help="Registry name, HF folder, .gguf file or hub id.")],
) -> None:
    """Architecture, sizes and files of a model, without loading its weights."""
    from alignkit.models import info

    console.print_json(json.dumps(info(model)))


def _version(value: bool) -> None:
    if value:
        console.print(f"alignkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


def main() -> None:
    # Our own progress display replaces the libraries' per-tensor bars and advisory chatter.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        app()
    except AlignkitError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
