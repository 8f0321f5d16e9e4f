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

app = typer.Typer(
    help="Measure, red-team, align and guard language models from one written constitution.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="The model registry and cache ($ALIGNKIT_HOME).", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()
err = Console(stderr=True)


class BackendChoice(StrEnum):
    hf = "hf"
    openai = "openai"
    vllm = "vllm"


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="Registry name, HF folder, .gguf file, hub id, or the endpoint's model name."
    ),
]
BackendOpt = Annotated[
    BackendChoice, typer.Option(help="hf: transformers here; openai: an endpoint; vllm: GPU.")
]
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
        return make_backend(
            "openai", model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency
        )
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
    columns = (
        TextColumn("generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task("generate", total=None)
            summary = generate_file(
                b,
                prompts,
                out,
                params,
                system=system,
                progress=lambda n, total: bar.update(task, completed=n, total=total),
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
