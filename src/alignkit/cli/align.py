"""Aligning commands: curate, train, and the whole loop (run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from alignkit.cli.base import (
    DEFAULT_JUDGE,
    ConstitutionOpt,
    JudgeOpt,
    LimitOpt,
    MaxNewOpt,
    ModelOpt,
    _run_with_bar,
    app,
    console,
    with_backend,
)
from alignkit.jobs.backend import BackendSpec


@app.command()
@with_backend
def curate(
    backend: BackendSpec,
    model: ModelOpt = "smollm2-135m-instruct",
    constitution: ConstitutionOpt = "default",
    out: Annotated[Path, typer.Option(help="Folder: sft.jsonl, preferences.jsonl, trace.jsonl, curate.json.")] = Path(
        "runs/curate"
    ),
    method: Annotated[str, typer.Option(help="sl-cai, rlaif, distill or on-policy.")] = "sl-cai",
    prompts: Annotated[str, typer.Option(help="A built-in suite (its --split) or a prompts file.")] = "default",
    split: Annotated[str, typer.Option(help="train, test or all (built-in suites).")] = "train",
    teacher: Annotated[str | None, typer.Option(help="Feedback model (default: the model itself).")] = None,
    teacher_base_url: Annotated[
        str | None, typer.Option(help="Endpoint serving --teacher (else it loads here).")
    ] = None,
    judge: JudgeOpt = DEFAULT_JUDGE,
    rounds: Annotated[int, typer.Option(min=1, help="sl-cai: critique-revision rounds.")] = 1,
    samples: Annotated[
        int, typer.Option(min=1, help="rlaif: replies sampled per prompt (2+); on-policy: besides the greedy one.")
    ] = 2,
    temperature: Annotated[float, typer.Option(min=0.0, help="Temperature of sampled replies.")] = 0.8,
    round_: Annotated[
        int, typer.Option("--round", min=1, help="on-policy: the round of iterated DPO (reseeds the samples).")
    ] = 1,
    partial_refusals_chosen: Annotated[
        bool, typer.Option(help="on-policy: a partial refusal may be chosen when no reply refuses fully.")
    ] = True,
    principles: Annotated[int, typer.Option(min=1, help="rlaif: principles per comparison.")] = 2,
    chain_of_thought: Annotated[bool, typer.Option(help="rlaif: feedback reasons first (clamped 40-60%).")] = False,
    repair: Annotated[bool, typer.Option(help="Replace replies the judge rejects (weak-teacher repair).")] = True,
    refusal_prefix_pairs: Annotated[
        bool, typer.Option(help="sl-cai, distill: also each reply over itself opened by a refusal sentence.")
    ] = False,
    limit: LimitOpt = None,
    max_new_tokens: MaxNewOpt = 160,
    seed: int = 0,
) -> None:
    """Turn prompts into SFT and preference data under a constitution (SL-CAI, RLAIF, context distillation, the
    policy's own judged samples for iterative DPO)."""
    from alignkit.curate import CurateConfig
    from alignkit.jobs.curate import CurateSpec, run_curate

    if method == "rlaif" and samples < 2:
        raise typer.BadParameter("rlaif compares replies in pairs: at least 2", param_hint="--samples")
    cfg = CurateConfig(method, rounds, samples=samples, principles_per_comparison=principles,  # type: ignore[arg-type]
                       chain_of_thought=chain_of_thought, repair=repair, max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed, round=round_,
                       partial_refusals_chosen=partial_refusals_chosen,
                       refusal_prefix_pairs=refusal_prefix_pairs)  # fmt: skip
    spec = CurateSpec(model, out, judge, prompts, split, limit, constitution, cfg, teacher, teacher_base_url, backend)
    result = _run_with_bar(lambda progress: run_curate(spec, progress))
    s = result.summary
    console.print(f"{s['prompts']} prompts -> {s['sft_records']} SFT records, {s['preference_pairs']} preference "
                  f"pairs ({s['from_model']} from the model, {s['repaired']} repaired, "
                  f"{s['dropped']} dropped)")  # fmt: skip
    if "feedback_agreement_with_judge" in s:
        a = s["feedback_agreement_with_judge"]
        console.print(f"AI feedback agrees with the judge on {a['agree']}/{a['scored']} pairs the judge separates")
    if s.get("skipped"):
        console.print("skipped: " + ", ".join(f"{n} ({why})" for why, n in s["skipped"].items()))
    console.print(f"wrote {result.sft_path}, {result.preferences_path}, {out / 'curate.json'}")


@app.command()
def train(
    method: Annotated[str, typer.Argument(help="sft, dpo, ipo, robust, simpo, orpo, kto, reward; online: ppo, grpo.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value settings, e.g. learning_rate=1e-4.")] = None,
    model: ModelOpt = "smollm2-135m-instruct",
    data: Annotated[
        Path | None, typer.Option(help="Offline methods: TRL-format data (messages, prompt/chosen/...).")
    ] = None,
    prompts: Annotated[
        str, typer.Option(help="ppo/grpo: a built-in suite (train split) or a prompts file.")
    ] = "default",
    reward: Annotated[
        str | None,
        typer.Option(help="ppo/grpo: e.g. judge:pair, rm:runs/rm/model, 0.7*judge:patterns+0.3*rule:length."),
    ] = None,
    gold: Annotated[str | None, typer.Option(help="ppo/grpo: independent gold signal for the gaming monitor.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of settings (TrainConfig or RLConfig).")] = None,
    out: Annotated[Path, typer.Option(help="Run folder; rerun the same command to resume.")] = Path("runs/train"),
) -> None:
    """Train offline (SFT, the DPO family, KTO, a reward model) or online (PPO, GRPO); LoRA by default, resumable."""
    from alignkit.jobs.train import TrainSpec, final_metrics, load_method_config, run_train

    spec = TrainSpec(load_method_config(method, config, overrides or []), model, out, data, prompts, reward, gold)
    result = _run_with_bar(lambda progress: run_train(spec, progress))
    console.print(", ".join(f"{k} {v:.4g}" for k, v in final_metrics(result).items()))
    if getattr(result, "gaming_step", None) is not None:
        console.print(f"[yellow]specification gaming flagged at step {result.gaming_step}[/yellow]: see "
                      f"{out / 'monitor.svg'}")  # fmt: skip
    console.print(f"{result.steps} steps; model: {result.model_dir or result.adapter_dir}")


@app.command("run")
def run_loop(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="key=value preset settings, e.g. methods=[sft,orpo] train.dpo.beta=0.2 profile=healthcare."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model to align (default: the preset's).")] = None,
    constitution: ConstitutionOpt = "default",
    preset: Annotated[str, typer.Option(help="cpu-demo, smoke or gpu.")] = "cpu-demo",
    out: Annotated[Path, typer.Option(help="Run folder; rerun the same command to resume.")] = Path("runs/demo"),
) -> None:
    """The whole loop once: measure, red-team, curate, train, measure again, guard, report."""
    from alignkit.pipeline import run as run_pipeline
    from alignkit.presets import make_preset

    chosen = make_preset(preset, model, overrides or [])
    result = _run_with_bar(lambda progress: run_pipeline(chosen, constitution, out, progress))
    table = Table("test split", *result.headline)
    for key, label in (("harmful_compliance_rate", "harmful answered"),
                       ("lookalike_over_refusal_rate", "look-alikes refused"),
                       ("ordinary_refusal_rate", "ordinary refused")):  # fmt: skip
        table.add_row(label, *(f"{100 * h[key]['rate']:.1f}%" for h in result.headline.values()))
    console.print(table)
    console.print(f"wrote {out / 'report.html'}, {out / 'posture_card.json'}; aligned model: {out / 'model'}")


@app.command()
def sweep(
    grid: Annotated[Path, typer.Argument(help="Sweep YAML: preset, shared settings, grid and/or named variants.")],
    out: Annotated[Path, typer.Option(help="Sweep folder: one run folder per variant, sweep.json/.md/.html.")] = Path(
        "runs/sweep"
    ),
) -> None:
    """Run many recipes on one preset (stages before training shared), one table and one Pareto plot."""
    from alignkit.report.sweep import sweep_table_markdown
    from alignkit.sweep import load_sweep, run_sweep

    body = _run_with_bar(lambda progress: run_sweep(load_sweep(grid), out, progress))
    console.print(sweep_table_markdown(body["variants"]))
    console.print(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'}, {out / 'sweep.html'}")
