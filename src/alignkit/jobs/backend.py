"""`BackendSpec`: how to reach a model, parsed once for every command that runs one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alignkit.backends.base import Backend
from alignkit.errors import AlignkitError

BackendKind = Literal["hf", "openai", "vllm"]


@dataclass(frozen=True)
class BackendSpec:
    """Where and how a model generates: transformers here, an OpenAI-compatible endpoint, or vLLM."""

    kind: BackendKind = "hf"
    """hf: transformers in this process; openai: an OpenAI-compatible endpoint; vllm: vLLM offline (GPU)."""
    batch_size: int | None = None
    """hf: prompts per batch, sorted by length (None: the backend's default for its device)."""
    concurrency: int = 8
    """openai: requests in flight at once."""
    base_url: str | None = None
    """openai: the endpoint, e.g. http://localhost:8000/v1 (None: $OPENAI_BASE_URL)."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: the environment variable that holds the endpoint's API key."""
    device: str | None = None
    """hf: cpu, cuda, cuda:1, ... (None: $ALIGNKIT_DEVICE, else CUDA when available, else CPU)."""
    steer: str | None = None
    """hf: a steering folder (a run's `cast/adapter`) applied to every reply: conditional activation steering."""

    def build(self, model: str, name: str | None = None) -> Backend:
        """The backend for `model` (a registry name, folder, .gguf, hub id, or the endpoint's model name)."""
        from alignkit.backends import make_backend

        if self.steer is not None and self.kind != "hf":
            raise AlignkitError("--steer needs --backend hf: steering hooks into the model's layers")
        if self.kind == "openai":
            return make_backend(
                "openai", model, base_url=self.base_url, api_key_env=self.api_key_env, concurrency=self.concurrency
            )
        options: dict[str, object] = {} if name is None else {"name": name}
        if self.kind == "vllm":
            return make_backend("vllm", model, **options)
        if self.batch_size is not None:
            options["batch_size"] = self.batch_size
        if self.device is not None:
            options["device"] = self.device
        backend = make_backend("hf", model, **options)
        if self.steer is None:
            return backend
        from alignkit.steer import SteeredBackend, Steering

        return SteeredBackend(backend, Steering.load(self.steer), name=name)  # type: ignore[arg-type]
