"""Guard jobs: the proxy's app from a spec (rebuildable in each worker process), one text checked, the
config a constitution implies."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from alignkit.backends.base import Backend
from alignkit.jobs.backend import BackendSpec

SPEC_ENV = "ALIGNKIT_GUARD_SERVE"
"""Where `alignkit guard serve --workers N` leaves the spec each worker builds its app from."""


def guard_config(config: str | Path | None, constitution: str = "default") -> Any:
    """The guard config: a YAML file, else the one the constitution implies."""
    from alignkit.guard.config import GuardConfig, default_config

    return GuardConfig.load(Path(config)) if config is not None else default_config(constitution)


def upstream_backend(upstream: str, model_name: str | None = None, api_key_env: str = "OPENAI_API_KEY") -> Backend:
    """An http(s) URL is an OpenAI-compatible endpoint; anything else a model name or folder run here."""
    if upstream.startswith(("http://", "https://")):
        return BackendSpec(kind="openai", base_url=upstream, api_key_env=api_key_env).build(model_name or "default")
    return BackendSpec().build(upstream)


@dataclass(frozen=True)
class GuardServeSpec:
    """What the proxy needs, as data a worker process can rebuild the app from."""

    upstream: str
    """Model name or folder to run here, or the base URL of an OpenAI-compatible endpoint."""
    config: str | None = None
    """Guard config YAML (None: derived from the constitution)."""
    constitution: str = "default"
    keys_file: str | None = None
    """API keys, one per line (also read: $ALIGNKIT_API_KEYS)."""
    audit: str = "guard-audit.sqlite"
    """SQLite audit log: one row per rail decision."""
    upstream_model: str | None = None
    """For a URL upstream: the model name the endpoint expects."""
    upstream_key_env: str = "OPENAI_API_KEY"
    """For a URL upstream: the environment variable holding its API key."""

    def app(self) -> Any:
        from alignkit.guard.proxy import create_guard_app, load_api_keys

        backend = upstream_backend(self.upstream, self.upstream_model, self.upstream_key_env)
        return create_guard_app(backend, guard_config(self.config, self.constitution), load_api_keys(self.keys_file),
                                self.audit)  # fmt: skip


def serve_guard_proxy(spec: GuardServeSpec, host: str, port: int, workers: int = 1) -> None:
    """Serve the guarded proxy; with several workers each process builds its own app from the spec."""
    from alignkit.guard.proxy import serve_guard

    if workers == 1:
        serve_guard(spec.app(), host, port)
    else:
        os.environ[SPEC_ENV] = json.dumps(asdict(spec))
        serve_guard("alignkit.jobs.guard:app_from_env", host, port, workers=workers)


def app_from_env() -> Any:
    """The app of one uvicorn worker, built from the spec `serve_guard_proxy` left in the environment."""
    return GuardServeSpec(**json.loads(os.environ[SPEC_ENV])).app()


def check_text(text: str, side: Literal["input", "output"], config: Any, system: str | None = None) -> dict[str, Any]:
    """The rails' decisions on one text, as a user message (`input`) or a model reply (`output`)."""
    from alignkit.guard.engine import Guard, Screened
    from alignkit.types import Conversation, user

    guard = Guard(config)
    try:
        conversation: Conversation = [{"role": "system", "content": system}] if system else []
        if side == "input":
            screened = guard.screen_input([*conversation, user(text)])
            shown = screened.refusal if screened.blocked else screened.conversation[-1]["content"]
            return {"side": "input", "blocked": screened.blocked is not None, "text": shown,
                    "decisions": [asdict(d) for d in screened.decisions]}  # fmt: skip
        reply = guard.screen_output(text, Screened("check", conversation, [], system_prompt=system or ""))
        return {"side": "output", "blocked": reply.blocked is not None, "text": reply.text,
                "decisions": [asdict(d) for d in reply.decisions]}  # fmt: skip
    finally:
        guard.close()


def calibrated_config(constitution: str, calibrate: bool) -> Any:
    """The config the constitution implies; if asked, with the thresholds of its learnt rails written in:
    the prompt classifier's (chosen on its validation split, training it now if it is not cached) and
    the topic rail's (calibrated now), so the file says what will run."""
    from alignkit.guard.config import default_config

    cfg = default_config(constitution)
    if calibrate and cfg.classifier.enabled:
        from alignkit.guard.rails.classifier import ClassifierSettings, trained_classifier

        k = cfg.classifier
        settings = ClassifierSettings(max_val_false_positive=k.max_val_false_positive)
        k.threshold = trained_classifier(k.hazards, settings, k.encoder).threshold
    if calibrate and cfg.topic.enabled:
        from alignkit.guard.engine import build_rails
        from alignkit.guard.rails.topic import TopicRail

        rail = next(r for r in build_rails(cfg, "input") if isinstance(r, TopicRail))
        cfg.topic.threshold = rail.threshold
    return cfg
