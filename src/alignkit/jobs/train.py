"""`run_train`: one training method on one model, offline (SFT, the DPO family, KTO, a reward model) or
online (PPO, GRPO), from one spec."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alignkit.errors import AlignkitError
from alignkit.rl.config import RL_METHODS, RLConfig
from alignkit.rl.loop import RLResult
from alignkit.train.config import METHODS, TrainConfig
from alignkit.train.loop import TrainResult
from alignkit.types import Prompt

Progress = Callable[[str, int, int], None]


@dataclass
class TrainSpec:
    config: TrainConfig | RLConfig
    """The method and its settings (`load_train_config` / `load_rl_config` build it from YAML and overrides)."""
    model: str
    """The model to train (registry name, HF folder, .gguf, hub id)."""
    out: Path
    """Run folder; the same spec again resumes from its last checkpoint."""
    data: Path | None = None
    """Offline methods: TRL-format data (messages, prompt/completion, prompt/chosen/rejected, label)."""
    prompts: str | Path | Sequence[Prompt] = "default"
    """Online methods: a built-in suite (train split), a prompts file, or the prompts."""
    reward: str | None = None
    """Online methods: reward spec, e.g. judge:pair, rm:runs/rm/model, 0.7*judge:patterns+0.3*rule:length."""
    gold: str | None = None
    """Online methods: an independent gold signal for the specification-gaming monitor."""


def is_online(method: str) -> bool:
    return method in RL_METHODS


def load_method_config(method: str, config: Path | None, overrides: Sequence[str]) -> TrainConfig | RLConfig:
    """The config of `method` from a YAML file and `key=value` overrides; unknown methods fail here."""
    from alignkit.rl.config import load_rl_config
    from alignkit.train.config import load_train_config

    if is_online(method):
        return load_rl_config(config, list(overrides), method)
    if method not in METHODS:
        raise AlignkitError(f"unknown method '{method}'; known: {', '.join((*METHODS, *RL_METHODS))}")
    return load_train_config(config, list(overrides), method)


def run_train(spec: TrainSpec, progress: Progress | None = None) -> TrainResult | RLResult:
    """Train (or resume); the result names the adapter and the merged model folders."""
    cfg = spec.config
    if isinstance(cfg, RLConfig):
        from alignkit.rl.loop import rl_train

        if spec.reward is None:
            raise AlignkitError(f"{cfg.method} needs a reward (e.g. judge:pair)")
        prompts = spec.prompts if isinstance(spec.prompts, str | Path) else list(spec.prompts)
        return rl_train(spec.model, prompts, spec.out, cfg, spec.reward, spec.gold, progress)
    from alignkit.train.loop import train

    if spec.data is None or not Path(spec.data).exists():
        raise AlignkitError(f"{cfg.method} needs a data file (got {spec.data})")
    return train(spec.model, spec.data, spec.out, cfg, progress)


def final_metrics(result: TrainResult | RLResult) -> dict[str, float]:
    """The numbers worth printing at the end: final training (and evaluation) metrics, no counters."""
    metrics = dict(result.final_metrics)
    if isinstance(result, TrainResult):
        metrics.update(result.eval_metrics)
    return {k: v for k, v in metrics.items() if isinstance(v, float) and k not in ("step", "epoch")}
