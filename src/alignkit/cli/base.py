"""What every command shares: the app and its groups, option bundles declared once, the progress bar."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from alignkit.errors import AlignkitError
from alignkit.guard.cli import guard_app
from alignkit.jobs.backend import BackendSpec
from alignkit.judges import DEFAULT_JUDGE as DEFAULT_JUDGE

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
judge_app = typer.Typer(
    help="Judges: measure and adapt how well they agree with labelled replies.", no_args_is_help=True
)
app.add_typer(judge_app, name="judge")
app.add_typer(guard_app, name="guard")
console = Console()
err = Console(stderr=True)


class BackendChoice(StrEnum):
    hf = "hf"
    openai = "openai"
    vllm = "vllm"


Option = tuple[str, Any, Any]
"""A command option declared once: (parameter name, Annotated type, default)."""


def bundle(
    name: str, options: list[Option], make: Callable[..., Any]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator that gives a command `options`, declared once for every command that takes them, and
    passes them on as one object `name=make(**values)`."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(command, eval_str=True)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values() if p.name != name]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in options]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            command(**{name: make(**{n: kwargs.pop(n) for n, _, _ in options})}, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
        return wrapper

    return decorate


def _backend_spec(backend: BackendChoice, **rest: Any) -> BackendSpec:
    return BackendSpec(kind=backend.value, **rest)


with_backend = bundle("backend", [
    ("backend", Annotated[BackendChoice, typer.Option(help="hf: transformers here; openai: an endpoint; vllm: GPU.")],
     BackendChoice.hf),
    ("batch_size", Annotated[int | None, typer.Option(min=1, help="hf: prompts per batch (default: 32 on CPU).")],
     None),
    ("device", Annotated[str | None, typer.Option(help="hf: cpu, cuda, cuda:1 (default: $ALIGNKIT_DEVICE, else CUDA "
                                                       "when available).")], None),
    ("steer", Annotated[str | None, typer.Option(help="hf: a steering folder (a run's cast/adapter) to apply.")],
     None),
    ("concurrency", Annotated[int, typer.Option(min=1, help="openai: requests in flight at once.")], 8),
    ("base_url", Annotated[str | None, typer.Option(help="openai: base URL, e.g. http://localhost:8000/v1 (else "
                                                          "$OPENAI_BASE_URL).")], None),
    ("api_key_env", Annotated[str, typer.Option(help="openai: environment variable holding the API key.")],
     "OPENAI_API_KEY"),
], _backend_spec)  # fmt: skip


ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Registry name, HF folder, .gguf file, hub id, or the endpoint's model name."),
]
SuiteOpt = Annotated[
    str, typer.Option(help="Built-in suite (default) or a file: XSTest/HarmBench/AdvBench CSV, JSONL.")
]
SplitOpt = Annotated[str, typer.Option(help="Suite split: test, train or all.")]
JudgeOpt = Annotated[str, typer.Option(help="pair (default), pair:FOLDER, embedding, patterns, llm:<model>.")]
ProfileOpt = Annotated[str, typer.Option(help="general, healthcare, legal, finance, creative, or a YAML file.")]
ConstitutionOpt = Annotated[str, typer.Option(help="default, healthcare, creative, or a YAML file.")]
MaxNewOpt = Annotated[int, typer.Option(min=1, help="Longest reply, in tokens.")]
LimitOpt = Annotated[int | None, typer.Option(help="Only the first N prompts (of each label, for suites).")]


def _run_with_bar(fn: Callable[[Callable[[str, int, int], None]], Any]) -> Any:
    """Call `fn(progress)` under a progress display with one bar per stage it reports."""
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=err) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        return fn(progress)


def _rate(r: Any) -> str:
    return f"{r.rate:.1%} [{r.low:.1%}, {r.high:.1%}]" if r.n else "-"


def _posture_settings(judge: str, profile: str, split: str, **config: Any) -> dict[str, Any]:
    from alignkit.posture import PostureConfig

    if split not in ("train", "test", "all"):
        raise AlignkitError(f"--split is '{split}': use train, test or all")
    return {"judge": judge, "profile": profile, "config": PostureConfig(split=split, **config)}  # type: ignore[arg-type]


with_posture = bundle("posture", [
    ("suite", SuiteOpt, "default"),
    ("split", SplitOpt, "test"),
    ("judge", JudgeOpt, DEFAULT_JUDGE),
    ("profile", ProfileOpt, "general"),
    ("system", Annotated[str | None, typer.Option(help="System prompt put before every prompt.")], None),
    ("max_new_tokens", MaxNewOpt, 160),
    ("samples", Annotated[int, typer.Option(min=0, help="Extra sampled replies per prompt (worst-of-k).")], 0),
    ("temperature", Annotated[float, typer.Option(min=0.0, help="Temperature of the extra samples.")], 0.7),
    ("limit", LimitOpt, None),
], _posture_settings)  # fmt: skip
