"""The one training config: a pydantic model, YAML in, `key=value` overrides from the CLI, saved resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignkit.errors import AlignkitError
from alignkit.yamlfile import load_yaml_model

Method = Literal["sft", "dpo", "ipo", "robust", "simpo", "orpo", "kto", "reward"]
METHODS: tuple[Method, ...] = ("sft", "dpo", "ipo", "robust", "simpo", "orpo", "kto", "reward")
PAIRED: tuple[Method, ...] = ("dpo", "ipo", "robust", "simpo", "orpo", "reward")
USES_REFERENCE: tuple[Method, ...] = ("dpo", "ipo", "robust", "kto")
M = TypeVar("M", bound=BaseModel)


class LoraSettings(BaseModel):
    """What gets trained: LoRA adapters (peft) or every weight. Both training configs (`TrainConfig`,
    `alignkit.rl.config.RLConfig`) carry these fields at their top level, so `lora_r=8` works in either."""

    model_config = ConfigDict(extra="forbid")

    lora: bool = True
    """Train LoRA adapters (peft) instead of every weight. The reference model, where a method has one, is then the
    base model with its adapters switched off; without LoRA it is a frozen copy (online RL) or log-probs computed
    before the first update (offline)."""
    lora_r: int = Field(16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scale numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA input. Online RL: keep 0 so that the first update's ratios are exactly 1 (on-policy)."""
    lora_target_modules: list[str] | str = "all-linear"
    """Modules that get adapters: peft's `all-linear` or a list of module names."""


class TrainConfig(LoraSettings):
    method: Method = "dpo"
    """Objective: sft, dpo, ipo, robust (robust DPO), simpo, orpo, kto (unpaired labels) or reward (Bradley-Terry)."""
    learning_rate: float = Field(5e-5, gt=0)
    """Peak learning rate after warm-up."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up."""
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    """Share of the optimizer steps spent warming up linearly from 0."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the training split (fractions allowed)."""
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps; overrides `epochs` when set."""
    batch_size: int = Field(4, ge=1)
    """Examples (pairs for paired methods) per device per micro-batch."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step; global batch = batch_size x grad_accum x processes."""
    max_length: int = Field(512, ge=8)
    """Tokens per sequence (prompt + reply); longer ones lose prompt tokens from the left, then reply tokens."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping; None turns it off."""
    beta: float = Field(0.1, gt=0)
    """DPO-family temperature (deviation from the reference); SimPO's reward scale; ORPO's odds-ratio weight."""
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """cDPO / robust DPO: assumed probability that a preference label is flipped."""
    rpo_alpha: float = Field(0.0, ge=0)
    """DPO only: weight of the chosen reply's mean token negative log-likelihood, added to each pair's loss
    (RPO: Pang et al. 2024, "Iterative Reasoning Preference Optimization", arXiv:2404.19733; TRL's
    `rpo_alpha`), so the chosen replies stay likely while the margin grows. 0: plain DPO."""
    simpo_gamma: float = 0.5
    """SimPO target reward margin."""
    kto_desirable_weight: float = 1.0
    """KTO weight of desirable examples."""
    kto_undesirable_weight: float = 1.0
    """KTO weight of undesirable examples."""
    use_soft_labels: bool = True
    """Pairs with `chosen_weight` p (AI feedback) train with label smoothing 1 - p."""
    eval_fraction: float = Field(0.1, ge=0, lt=1)
    """Share of the data held out for evaluation (chosen by a hash of each example, so it is stable)."""
    eval_every: int = Field(0, ge=0)
    """Evaluate every N optimizer steps (0: only at the end)."""
    save_every: int = Field(50, ge=1)
    """Checkpoint every N optimizer steps (and at the end)."""
    log_every: int = Field(1, ge=1)
    """Write metrics every N optimizer steps."""
    seed: int = 0
    """Seeds data order, LoRA init and dropout: the same seed gives the same run."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    bf16: bool | None = None
    """bf16 autocast; None means on when a GPU is used."""
    tensorboard: bool = False
    """Also write TensorBoard event files under out/tensorboard."""
    threads: int | None = None
    """torch intra-op threads on CPU (None: torch's default)."""
    merge: bool = True
    """After LoRA training, also write the merged model (out/merged)."""
    packing: Literal["auto", "pairs", "positions", "off"] = "auto"
    """How sequences share rows. pairs: a pair's chosen and rejected share one row that holds their common
    prompt once, a 4D attention mask keeping the replies apart (SDPA; 2.5x TRL on the CPU). positions:
    whole sequences end to end with restarting position ids and no mask, which flash kernels run as
    variable-length sequences. off: one padded row per sequence. auto: positions under a flash kernel,
    pairs for paired methods under SDPA on the CPU, off on a GPU under SDPA (a dense 4D mask keeps SDPA
    off its fastest kernels there). The reward model reads one score per row and never packs."""

    @model_validator(mode="after")
    def _rpo_is_dpo(self) -> TrainConfig:
        if self.rpo_alpha and self.method != "dpo":
            raise ValueError(f"rpo_alpha applies to dpo only, not {self.method}")
        return self

    @property
    def paired(self) -> bool:
        return self.method in PAIRED

    @property
    def uses_reference(self) -> bool:
        return self.method in USES_REFERENCE


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def load_config(cls: type[M], path: str | Path | None, overrides: list[str], fixed: dict[str, Any], what: str) -> M:
    """A config model from the YAML file (if any), then `key=value` overrides (YAML values), then `fixed`;
    errors are one line naming the setting."""
    base: dict[str, Any] = load_yaml_model(Path(path), cls).model_dump(exclude_unset=True) if path else {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise AlignkitError(f"override '{item}' is not key=value")
        if key not in cls.model_fields:
            raise AlignkitError(f"override '{key}': unknown setting; known: {', '.join(cls.model_fields)}")
        base[key] = _parse_value(raw)
    base.update(fixed)
    try:
        return cls(**base)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "config"
        raise AlignkitError(f"{what}: {where}: {first['msg']}") from None


def load_train_config(path: str | Path | None, overrides: list[str], method: str | None = None) -> TrainConfig:
    """The YAML file (if any), then `key=value` overrides, then the method named on the command line."""
    return load_config(TrainConfig, path, overrides, {"method": method} if method else {}, "train config")
