"""The online RL config: a pydantic model, YAML in, `key=value` overrides from the CLI, saved resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from alignkit.errors import AlignkitError
from alignkit.train.config import LoraSettings, load_config

RLMethod = Literal["grpo", "ppo"]
RL_METHODS: tuple[RLMethod, ...] = ("grpo", "ppo")


class RLConfig(LoraSettings):
    method: RLMethod = "grpo"
    """grpo (group-normalised outcome advantages, no value head) or ppo (value head, GAE, adaptive KL)."""
    learning_rate: float = Field(1e-5, gt=0)
    """Peak learning rate."""
    scheduler: Literal["constant", "linear", "cosine"] = "constant"
    """Decay over the optimizer steps after warm-up."""
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    """Share of the optimizer steps spent warming up linearly from 0."""
    max_steps: int = Field(20, ge=1)
    """RL steps: each samples a batch of replies, scores them and updates the policy on them."""
    prompts_per_step: int = Field(8, ge=1)
    """Prompts per RL step (across all processes), drawn without replacement, reshuffled each pass."""
    group_size: int = Field(4, ge=1)
    """Replies sampled per prompt (GRPO's G; at least 2 for GRPO). PPO may use 1."""
    max_new_tokens: int = Field(64, ge=1)
    """Longest reply sampled; a reply that hits it is cut there (and has no end-of-turn token)."""
    max_prompt_length: int = Field(256, ge=8)
    """Prompt tokens kept (from the right) after the chat template."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature; log-probabilities are taken at the same temperature, so the ratios stay exact."""
    epochs: int = Field(1, ge=1)
    """Optimisation passes over each batch of replies (GRPO's mu, PPO's epochs)."""
    mini_batch_size: int | None = Field(None, ge=1)
    """Replies per optimizer step; None = the whole step's replies (one optimizer step per pass)."""
    micro_batch_size: int = Field(8, ge=1)
    """Replies per forward pass (gradients accumulate over them)."""
    generation_batch_size: int = Field(64, ge=1)
    """Replies sampled per `generate` call."""
    clip_eps: float = Field(0.2, gt=0)
    """Clip range of the probability ratio in the surrogate objective."""
    beta: float = Field(0.04, ge=0)
    """KL coefficient: GRPO's weight of the k3 KL term in the loss; PPO's initial per-token KL penalty in the
    reward (then adapted when `target_kl` is set)."""
    target_kl: float | None = Field(None, gt=0)
    """PPO: the KL per reply (nats) the adaptive controller steers towards (Ziegler et al. used 6); None keeps
    beta fixed."""
    kl_horizon: int = Field(10000, ge=1)
    """PPO: the adaptive controller's horizon, in replies."""
    gamma: float = Field(1.0, ge=0, le=1)
    """PPO: discount over reply tokens."""
    lam: float = Field(0.95, ge=0, le=1)
    """PPO: GAE lambda."""
    vf_coef: float = Field(0.1, ge=0)
    """PPO: weight of the value loss."""
    value_clip: float = Field(0.2, gt=0)
    """PPO: how far a value estimate may move from its value at sampling time before its loss is clipped."""
    whiten_advantages: bool = True
    """PPO: normalise the advantages over the batch's reply tokens."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping; None turns it off."""
    monitor_window: int = Field(5, ge=3)
    """Specification-gaming monitor: steps over which the proxy and gold trends are fitted."""
    monitor_tolerance: float = Field(0.02, ge=0)
    """Specification-gaming monitor: the least fitted rise of the proxy and fall of the gold over the window (in
    each signal's units) that counts as gaming."""
    stop_on_gaming: bool = False
    """Stop when the monitor flags gaming, and export the weights that scored best on the gold signal."""
    save_every: int = Field(10, ge=1)
    """Checkpoint every N RL steps (and at the end)."""
    seed: int = 0
    """Seeds LoRA init, the prompt order and sampling: the same seed gives the same run."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    bf16: bool | None = None
    """bf16 autocast; None means on when a GPU is used."""
    threads: int | None = None
    """torch intra-op threads on CPU (None: torch's default)."""
    tensorboard: bool = False
    """Also write TensorBoard event files under out/tensorboard."""
    merge: bool = True
    """After LoRA training, also write the merged model (out/model)."""
    sampler: Literal["hf", "vllm"] = "hf"
    """Who samples the replies: `hf` (transformers generate on the live policy) or `vllm` (a vLLM engine on the
    same GPU, the policy's weights loaded into it before each step's sampling; needs `alignkit[vllm]`)."""
    vllm_gpu_memory: float = Field(0.3, gt=0.0, lt=1.0)
    """sampler vllm: the share of GPU memory the engine takes (the trainer needs the rest)."""


def load_rl_config(path: str | Path | None, overrides: list[str], method: str | None = None) -> RLConfig:
    """The YAML file (if any), then `key=value` overrides, then the method named on the command line."""
    if method is not None and method not in RL_METHODS:
        raise AlignkitError(f"unknown RL method '{method}'; known: {', '.join(RL_METHODS)}")
    return load_config(RLConfig, path, overrides, {"method": method} if method else {}, "rl config")
