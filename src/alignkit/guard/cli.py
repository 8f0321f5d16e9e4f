"""`alignkit guard ...`: serve a guarded proxy, check a text, write the default config."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from alignkit.errors import AlignkitError

guard_app = typer.Typer(
    help="Runtime guardrails: an OpenAI-compatible proxy that checks what goes in and out of a model.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Guard config YAML (default: derived from --constitution).")
]
ConstitutionOpt = Annotated[str, typer.Option(help="Built-in constitution name or a constitution YAML file.")]


class SideChoice(StrEnum):
    input = "input"
    output = "output"


@guard_app.command()
def serve(
    upstream: Annotated[
        str, typer.Option(help="Model name or folder to run here, or the base URL of an OpenAI-compatible endpoint.")
    ],
    config: ConfigOpt = None,
    constitution: ConstitutionOpt = "default",
    host: str = "127.0.0.1",
    port: int = 8000,
    keys_file: Annotated[
        Path | None, typer.Option(help="API keys, one per line (also read: $ALIGNKIT_API_KEYS, comma-separated).")
    ] = None,
    audit: Annotated[Path, typer.Option(help="SQLite audit log: one row per rail decision.")] = Path(
        "guard-audit.sqlite"
    ),
    upstream_model: Annotated[
        str | None, typer.Option(help="For a URL upstream: the model name the endpoint expects.")
    ] = None,
    upstream_key_env: Annotated[
        str, typer.Option(help="For a URL upstream: environment variable holding its API key.")
    ] = "OPENAI_API_KEY",
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes (uvicorn workers); they share the audit log.")
    ] = 1,
) -> None:
    """Serve an OpenAI-compatible proxy with the guard's rails in front of --upstream."""
    from alignkit.guard.proxy import KEYS_ENV, load_api_keys, redact_url
    from alignkit.jobs.guard import GuardServeSpec, serve_guard_proxy

    if not load_api_keys(keys_file):
        raise AlignkitError(f"no API keys: set ${KEYS_ENV} (comma-separated) or pass --keys-file")
    keys = str(keys_file) if keys_file else None
    spec = GuardServeSpec(upstream, str(config) if config else None, constitution, keys, str(audit), upstream_model,
                          upstream_key_env)  # fmt: skip
    where = f"http://{host}:{port}/v1 (audit: {audit}, {workers} worker{'s' * (workers > 1)})"
    typer.echo(f"guarding {redact_url(upstream)} on {where}", err=True)
    serve_guard_proxy(spec, host, port, workers)


@guard_app.command()
def check(
    text: Annotated[str, typer.Argument(help="The text to check (a user message, or a reply with --side output).")],
    config: ConfigOpt = None,
    constitution: ConstitutionOpt = "default",
    side: Annotated[SideChoice, typer.Option(help="Check as a user message (input) or a model reply (output).")] = (
        SideChoice.input
    ),
    system: Annotated[str | None, typer.Option(help="System prompt (for the canary and leak checks).")] = None,
) -> None:
    """Run the rails on one text and print their decisions as JSON."""
    from alignkit.jobs.guard import check_text, guard_config

    result = check_text(text, side.value, guard_config(config, constitution), system)  # type: ignore[arg-type]
    typer.echo(json.dumps(result, indent=1, ensure_ascii=False))


@guard_app.command("config")
def write_config(
    out: Annotated[Path, typer.Argument(help="Where to write the YAML.")] = Path("guard.yaml"),
    constitution: ConstitutionOpt = "default",
    calibrate: Annotated[
        bool, typer.Option(help="Calibrate the topic threshold now and write it into the file.")
    ] = False,
) -> None:
    """Write the guard config derived from a constitution, to edit and pass to `serve --config`."""
    from alignkit.jobs.guard import calibrated_config

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(calibrated_config(constitution, calibrate).to_yaml(), encoding="utf-8")
    typer.echo(f"wrote {out}")
