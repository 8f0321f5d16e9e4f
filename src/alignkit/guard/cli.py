"""`alignkit guard ...`: serve a guarded proxy, check a text, write the default config."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

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


def _config(config: Path | None, constitution: str) -> Any:
    from alignkit.guard.config import GuardConfig, default_config

    return GuardConfig.load(config) if config is not None else default_config(constitution)


def upstream_backend(upstream: str, model_name: str | None = None, api_key_env: str = "OPENAI_API_KEY") -> Any:
    """An http(s) URL is an OpenAI-compatible endpoint; anything else a model name or folder run here."""
    from alignkit.backends import make_backend

    if upstream.startswith(("http://", "https://")):
        return make_backend("openai", model_name or "default", base_url=upstream, api_key_env=api_key_env)
    return make_backend("hf", upstream)


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
    import os

    from alignkit.guard.proxy import KEYS_ENV, load_api_keys, redact_url, serve_guard

    keys = load_api_keys(keys_file)
    if not keys:
        raise AlignkitError(f"no API keys: set ${KEYS_ENV} (comma-separated) or pass --keys-file")
    spec = ServeSpec(upstream, str(config) if config else None, constitution, str(keys_file) if keys_file else None,
                     str(audit), upstream_model, upstream_key_env)  # fmt: skip
    where = f"http://{host}:{port}/v1 (audit: {audit}, {workers} worker{'s' * (workers > 1)})"
    typer.echo(f"guarding {redact_url(upstream)} on {where}", err=True)
    if workers == 1:
        serve_guard(spec.app(), host, port)
    else:
        # Each worker process builds its own app from the spec (uvicorn imports the factory by name).
        os.environ[SPEC_ENV] = json.dumps(asdict(spec))
        serve_guard("alignkit.guard.cli:app_from_env", host, port, workers=workers)


SPEC_ENV = "ALIGNKIT_GUARD_SERVE"


@dataclass(frozen=True)
class ServeSpec:
    """What `serve` needs to build the app, as data a worker process can rebuild it from."""

    upstream: str
    config: str | None
    constitution: str
    keys_file: str | None
    audit: str
    upstream_model: str | None
    upstream_key_env: str

    def app(self) -> Any:
        from alignkit.guard.proxy import create_guard_app, load_api_keys

        cfg = _config(Path(self.config) if self.config else None, self.constitution)
        backend = upstream_backend(self.upstream, self.upstream_model, self.upstream_key_env)
        return create_guard_app(backend, cfg, load_api_keys(self.keys_file), self.audit)


def app_from_env() -> Any:
    """The app of one uvicorn worker, built from the spec `serve` left in the environment."""
    import os

    return ServeSpec(**json.loads(os.environ[SPEC_ENV])).app()


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
    from alignkit.guard.engine import Guard, Screened
    from alignkit.types import Conversation, user

    guard = Guard(_config(config, constitution))
    try:
        conversation: Conversation = [{"role": "system", "content": system}] if system else []
        if side is SideChoice.input:
            screened = guard.screen_input([*conversation, user(text)])
            result: dict[str, Any] = {
                "side": "input",
                "blocked": screened.blocked is not None,
                "text": screened.refusal if screened.blocked else screened.conversation[-1]["content"],
                "decisions": [asdict(d) for d in screened.decisions],
            }
        else:
            screened = Screened("check", conversation, [], system_prompt=system or "")
            reply = guard.screen_output(text, screened)
            result = {
                "side": "output",
                "blocked": reply.blocked is not None,
                "text": reply.text,
                "decisions": [asdict(d) for d in reply.decisions],
            }
    finally:
        guard.close()
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
    from alignkit.guard.config import default_config

    cfg = default_config(constitution)
    if calibrate and cfg.topic.enabled:
        from alignkit.guard.engine import build_rails
        from alignkit.guard.rails.topic import TopicRail

        rail = next(r for r in build_rails(cfg, "input") if isinstance(r, TopicRail))
        cfg.topic.threshold = rail.threshold
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(cfg.to_yaml(), encoding="utf-8")
    typer.echo(f"wrote {out}")
