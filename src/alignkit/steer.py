"""Conditional activation steering (after Lee et al. 2024, "Programming Refusal with Conditional
Activation Steering", arXiv:2409.05907): add a refusal direction to the residual stream only when a probe
on the prompt's hidden state says the prompt is harmful. No weight changes: the same model answers benign
prompts untouched.

- condition: the unit mean-difference direction between harmful and benign prompts' hidden states (last
  prompt token) at `condition_layer`; a prompt fires when its projection exceeds `threshold`, chosen on a
  held-out share of the fitting prompts.
- behaviour: the mean-difference vector at `behaviour_layer`, scaled by `alpha`, added to that layer's
  output at every position while a firing prompt is answered.

`fit_steering` writes nothing; `Steering.save`/`load` keep it as safetensors + JSON beside a model, and
`SteeredBackend` wraps an `HFBackend` so that posture, red-team, serve and `alignkit run` use it unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from alignkit.backends.base import OnResult
from alignkit.errors import AlignkitError
from alignkit.types import Completion, Conversation, GenerationParams, Prompt, user

if TYPE_CHECKING:
    from alignkit.backends.hf import HFBackend


class SteerConfig(BaseModel):
    """Settings of the `cast` stage of a run (and of `fit_steering`)."""

    model_config = ConfigDict(extra="forbid")

    method: str = "cast"
    """Always `cast` (conditional activation steering)."""
    behaviour_layer: float = Field(0.5, gt=0, lt=1)
    """Where the refusal vector is added, as a fraction of the depth (0.5 = the middle decoder layer)."""
    condition_layers: list[float] = Field(default_factory=lambda: [0.25, 0.4, 0.5, 0.6, 0.75])
    """Depths tried for the probe; the one that separates held-out prompts best is kept."""
    alpha: float = Field(1.0, gt=0)
    """Scale of the added vector: 1.0 moves a benign prompt's mean activation onto the harmful mean."""
    holdout: float = Field(0.25, gt=0, lt=1)
    """Share of the fitting prompts (by id hash) kept aside to choose the condition layer and threshold."""
    batch_size: int = Field(16, ge=1)
    """Prompts per forward pass while fitting and probing."""


@dataclass
class Steering:
    behaviour_layer: int
    refusal: torch.Tensor
    """(H,) added to the output of decoder layer `behaviour_layer` (scaled by alpha already)."""
    condition_layer: int
    condition: torch.Tensor
    """(H,) unit direction the probe projects on."""
    threshold: float
    """A prompt fires when its projection on `condition` is above this."""
    holdout_accuracy: float
    """Balanced accuracy of the probe on the held-out fitting prompts."""

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"refusal": self.refusal.contiguous(), "condition": self.condition.contiguous()},
                  str(out / "steering.safetensors"))  # fmt: skip
        meta = {"behaviour_layer": self.behaviour_layer, "condition_layer": self.condition_layer,
                "threshold": self.threshold, "holdout_accuracy": self.holdout_accuracy}  # fmt: skip
        (out / "steering.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder: str | Path) -> Steering:
        from safetensors.torch import load_file

        path = Path(folder)
        if not (path / "steering.json").exists():
            raise AlignkitError(f"{path}: no steering.json (write one with alignkit's `cast` stage)")
        meta = json.loads((path / "steering.json").read_text(encoding="utf-8"))
        tensors = load_file(str(path / "steering.safetensors"))
        return cls(int(meta["behaviour_layer"]), tensors["refusal"], int(meta["condition_layer"]),
                   tensors["condition"], float(meta["threshold"]), float(meta["holdout_accuracy"]))  # fmt: skip


def decoder_layers(model: Any) -> Any:
    """The list of decoder blocks of a causal LM (Llama-style `model.model.layers`, GPT-2 style `transformer.h`)."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        node = model
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if node is not None:
            return node
    raise AlignkitError(f"cannot find the decoder layers of {type(model).__name__} to steer")


@torch.inference_mode()
def last_token_states(backend: HFBackend, conversations: Sequence[Conversation], batch_size: int = 16) -> torch.Tensor:
    """(L+1, N, H) hidden states of the last prompt token (generation prompt included) at every depth,
    in fp32 on the CPU; index l is the output of decoder layer l-1 (0: the embeddings)."""
    encoded = [backend.encode(c) for c in conversations]
    rows: list[torch.Tensor] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(e) for e in chunk)
        ids = torch.full((len(chunk), width), backend.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, e in enumerate(chunk):  # left padding: the last prompt token sits at -1 in every row
            ids[row, width - len(e) :] = torch.tensor(e)
            mask[row, width - len(e) :] = 1
        out = backend.model(input_ids=ids.to(backend.device), attention_mask=mask.to(backend.device),
                            output_hidden_states=True)  # fmt: skip
        rows.append(torch.stack([h[:, -1, :].float().cpu() for h in out.hidden_states]))  # (L+1, B, H)
    return torch.cat(rows, dim=1)


def _held_out(prompt_id: str, share: float) -> bool:
    return int(hashlib.sha256(prompt_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def _best_threshold(harmful: torch.Tensor, benign: torch.Tensor) -> tuple[float, float]:
    """(threshold, balanced accuracy) over the midpoints between sorted projections."""
    values = torch.cat([harmful, benign]).sort().values
    candidates = ((values[1:] + values[:-1]) / 2).tolist() or [float(values[0])]
    best = (candidates[0], -1.0)
    for t in candidates:
        acc = 0.5 * ((harmful > t).float().mean() + (benign <= t).float().mean()).item()
        if acc > best[1]:
            best = (t, acc)
    return best


def fit_steering(backend: HFBackend, prompts: Sequence[Prompt], cfg: SteerConfig | None = None) -> Steering:
    """Fit the condition probe and the refusal vector on labelled prompts (harmful vs benign)."""
    cfg = cfg or SteerConfig.model_validate({})
    usable = [p for p in prompts if p.label in ("harmful", "benign")]
    if not any(p.label == "harmful" for p in usable) or not any(p.label == "benign" for p in usable):
        raise AlignkitError("steering needs harmful and benign prompts to fit on")
    states = last_token_states(backend, [p.messages or [user(p.text or "")] for p in usable], cfg.batch_size)
    harmful = torch.tensor([p.label == "harmful" for p in usable])
    held = torch.tensor([_held_out(p.id, cfg.holdout) for p in usable])
    if held.all() or not held.any():
        held = torch.arange(len(usable)) % 4 == 0
    fit, val = ~held, held
    depth = states.shape[0] - 1

    def direction(layer: int, rows: torch.Tensor) -> torch.Tensor:
        h = states[layer]
        return h[rows & harmful].mean(0) - h[rows & ~harmful].mean(0)  # (H,)

    best: tuple[float, int, torch.Tensor, float] | None = None
    for share in cfg.condition_layers:
        layer = max(1, min(depth, round(share * depth)))
        c = direction(layer, fit)
        c = c / c.norm().clamp_min(1e-8)
        proj = states[layer] @ c  # (N,)
        t, _ = _best_threshold(proj[fit & harmful], proj[fit & ~harmful])
        acc = 0.5 * ((proj[val & harmful] > t).float().mean() + (proj[val & ~harmful] <= t).float().mean()).item()
        if best is None or acc > best[0]:
            best = (acc, layer, c, t)
    assert best is not None
    acc, c_layer, c_dir, _ = best
    proj = states[c_layer] @ c_dir
    threshold, _ = _best_threshold(proj[harmful], proj[~harmful])  # refit on all prompts at the chosen depth
    b_layer = max(1, min(depth - 1, round(cfg.behaviour_layer * depth)))  # the last state is after the norm
    refusal = cfg.alpha * direction(b_layer, torch.ones_like(harmful))
    return Steering(b_layer - 1, refusal, c_layer, c_dir, threshold, acc)


class SteeredBackend:
    """An `HFBackend` whose replies to prompts that fire the probe carry the refusal vector."""

    def __init__(self, base: HFBackend, steering: Steering, name: str | None = None) -> None:
        self.base = base
        self.steering = steering
        self.name = name or f"{base.name}+cast"
        self.fired = 0
        """Prompts steered so far (a running count, for reports)."""

    @torch.inference_mode()
    def fires(self, conversations: Sequence[Conversation]) -> list[bool]:
        if not conversations:
            return []
        states = last_token_states(self.base, conversations, self.base.batch_size)[self.steering.condition_layer]
        return ((states @ self.steering.condition.float()) > self.steering.threshold).tolist()

    @contextmanager
    def _steered(self) -> Iterator[None]:
        layer = decoder_layers(self.base.model)[self.steering.behaviour_layer]
        vector = self.steering.refusal.to(self.base.device, dtype=next(self.base.model.parameters()).dtype)

        def add(_module: Any, _inputs: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (output[0] + vector, *output[1:])
            return output + vector

        handle = layer.register_forward_hook(add)
        mode = getattr(self.base, "generation_mode", None)
        if mode is not None:  # a hook changes the graph a compiled static-cache step captured
            self.base.generation_mode = "plain"
        try:
            yield
        finally:
            handle.remove()
            if mode is not None:
                self.base.generation_mode = mode

    def generate(
        self, conversations: Sequence[Conversation], params: GenerationParams, on_result: OnResult | None = None
    ) -> list[Completion]:
        fire = self.fires(conversations)
        self.fired += sum(fire)
        results: list[Completion | None] = [None] * len(conversations)
        for steered in (False, True):
            group = [i for i, f in enumerate(fire) if f == steered]
            if not group:
                continue

            def relay(j: int, c: Completion, group: list[int] = group) -> None:
                if on_result is not None:
                    on_result(group[j], c)

            with self._steered() if steered else _nothing():
                out = self.base.generate([conversations[i] for i in group], params, relay)
            for j, i in enumerate(group):
                results[i] = out[j]
        return [r for r in results if r is not None]


@contextmanager
def _nothing() -> Iterator[None]:
    yield
