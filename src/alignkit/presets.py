"""What `alignkit run` does, as validated data: a `Preset` names the model, the judge, the measuring
budgets, the curation settings and the training stages, each stage with its own typed config.

`make_preset("cpu-demo", overrides=["methods=[sft,orpo]", "train.orpo.beta=0.2"])` checks every key
when the preset is made: a misspelt key fails at once with its path and the allowed names.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from alignkit.curate import CurateConfig
from alignkit.errors import AlignkitError
from alignkit.judges import DEFAULT_JUDGE
from alignkit.rl.config import RL_METHODS, RLConfig
from alignkit.settings import merge, parse_overrides, validate
from alignkit.steer import SteerConfig
from alignkit.train.config import METHODS, TrainConfig

ONLINE_DPO = "odpo"
"""A round of iterative (online) DPO: curate on-policy pairs from the previous stage's model (`on_policy`
settings), then DPO on them from that model. Repeat it for more rounds."""
STAGE_METHODS: tuple[str, ...] = (*(m for m in METHODS if m != "reward"), ONLINE_DPO, *RL_METHODS, "cast")
"""Methods a run can chain: every offline method that yields a policy, online RL, and conditional
activation steering (`cast`, no weight change; last if present)."""


class Preset(BaseModel):
    """Everything a run does; `alignkit run --preset NAME [key=value ...]` picks one and adjusts it."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    """Preset name (recorded in the run folder)."""
    model: str
    """The model to align (registry name, HF folder, GGUF file or hub id)."""
    judge: str = DEFAULT_JUDGE
    """Judge of every reply (posture, red-team, curation repair, the RL reward)."""
    profile: str = "general"
    """Workload profile whose ceilings the verdict and the guard use."""
    backend: Literal["hf", "vllm"] = "hf"
    """Generation backend of every stage: hf (transformers; CUDA when available) or vllm (GPU,
    `pip install 'alignkit[vllm]'`)."""
    batch_size: int | None = Field(32, ge=1)
    """Prompts per generation batch (hf; None: the backend's default for its device, 256 on a GPU)."""
    posture_max_new_tokens: int = Field(96, ge=1)
    """Reply length when measuring posture."""
    posture_limit: int | None = Field(None, ge=1)
    """Measure only the first N prompts of each label (smoke runs)."""
    redteam_attacks: str = "direct,jailbreak_templates"
    """Attack families and names of the campaigns."""
    redteam_per_category: int = Field(2, ge=1)
    """Seeds per hazard category in each campaign."""
    redteam_max_new_tokens: int = Field(64, ge=1)
    """Reply length in campaigns."""
    curate_harmful: int | None = Field(64, ge=0)
    """Harmful train-split prompts curated (None: all), spread over categories."""
    curate_benign: int | None = Field(64, ge=0)
    """Benign train-split prompts curated (look-alikes and ordinary requests)."""
    anchors: int | None = Field(0, ge=0)
    """Everyday requests from the bundled anchor set (`resources/anchors/everyday.jsonl`, 240) curated as
    benign too (None: all): their own answers join the data so that alignment keeps the model helpful."""
    train_prompts: int | None = Field(0, ge=0)
    """Prompts from the bundled broad training set (`resources/prompts/train`: 1,004 harmful, 1,003
    look-alike, 522 ordinary, written for alignkit) curated too (None: all), spread over label, category and
    kind, so the model learns the boundary rather than the suite's prompts."""
    curate: CurateConfig = Field(default_factory=CurateConfig)
    """Curation settings (`alignkit.curate.CurateConfig`)."""
    on_policy: CurateConfig = Field(
        default_factory=lambda: CurateConfig(method="on-policy", partial_refusals_chosen=False)
    )
    """Curation settings of each `odpo` round (method on-policy; `round` is set per stage)."""
    methods: tuple[str, ...] = ("sft", "dpo")
    """Training stages in order, each from the previous one's merged model: any of sft, dpo, ipo,
    robust, simpo, orpo, kto, odpo (a round of on-policy DPO), grpo, ppo, cast (steering, last); a
    method may repeat (`[sft, dpo, odpo, odpo]`: two on-policy rounds)."""
    train: dict[str, TrainConfig | RLConfig | SteerConfig] = Field(default_factory=dict)
    """Settings per method (TrainConfig; RLConfig for grpo/ppo; SteerConfig for cast; odpo's are DPO's
    TrainConfig); a method left out uses the defaults."""
    rl_helpful_weight: float = Field(0.0, ge=0.0)
    """grpo/ppo stages: the reward is `judge:<judge>`, plus this weight times `rule:helpful` (-1 for a benign
    prompt's evasive or degenerate reply), so RL cannot buy safety with useless benign replies."""
    helpfulness: bool = True
    """Measure what alignment must not cost beside posture, before and after: checkable answers, the
    likelihood of reference answers, degenerate replies (the helpfulness suite's test split)."""
    helpfulness_limit: int | None = Field(None, ge=1)
    """Only the first N helpfulness items of each kind (smoke runs)."""
    guard: bool = True
    """Derive a guard for the categories that still fail the profile and measure posture through it."""

    @field_validator("curate", "on_policy", mode="before")
    @classmethod
    def _curate(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, CurateConfig):
            return value
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of curation settings")
        known = [f.name for f in fields(CurateConfig)]
        unknown = [k for k in value if k not in known]
        if unknown:
            raise ValueError(f"unknown setting '{unknown[0]}'; known: {', '.join(known)}")
        if info.field_name == "on_policy":
            if value.get("method", "on-policy") != "on-policy":
                raise ValueError("odpo rounds curate on-policy; method must be on-policy")
            value = {"partial_refusals_chosen": False, **value, "method": "on-policy"}
        return CurateConfig(**value)

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else list(value)
        bad = [m for m in items if m not in STAGE_METHODS]
        if bad:
            raise ValueError(f"unknown method '{bad[0]}'; known: {', '.join(STAGE_METHODS)}")
        if not items:
            raise ValueError("at least one training method")
        if "cast" in items[:-1]:
            raise ValueError("cast (steering) must be the last method: a later stage would change the model it reads")
        return tuple(items)

    @field_validator("train", mode="before")
    @classmethod
    def _train(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of method -> settings")
        out: dict[str, Any] = {}
        for method, settings in value.items():
            if method not in STAGE_METHODS:
                raise ValueError(f"unknown method '{method}'; known: {', '.join(STAGE_METHODS)}")
            if isinstance(settings, TrainConfig | RLConfig | SteerConfig):
                out[method] = settings
                continue
            body = {**(settings or {}), "method": "dpo" if method == ONLINE_DPO else method}
            out[method] = validate(_config_model(method), body, f"train.{method}")
        return out

    @model_validator(mode="after")
    def _every_method_configured(self) -> Preset:
        for method in self.methods:
            if method not in self.train:
                body = {"method": "dpo" if method == ONLINE_DPO else method}
                self.train[method] = _config_model(method).model_validate(body)
        return self

    def resolved(self) -> dict[str, Any]:
        """The preset as plain JSON data, every default filled in, with the settings of the methods it
        runs (saved into the run folder)."""
        body = self.model_dump(mode="json")
        body["train"] = {m: c for m, c in body["train"].items() if m in self.methods}
        return body


def _config_model(method: str) -> type[TrainConfig] | type[RLConfig] | type[SteerConfig]:
    if method == "cast":
        return SteerConfig
    return RLConfig if method in RL_METHODS else TrainConfig


_SMOKE_TRAIN = {"max_steps": 2, "batch_size": 4, "max_length": 128, "learning_rate": 1e-3, "eval_fraction": 0.0}

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "name": "smoke",
        "model": "tiny-random-llama",
        "judge": "patterns",
        "batch_size": 16,
        "posture_max_new_tokens": 12,
        "posture_limit": 8,
        "helpfulness_limit": 2,
        "redteam_per_category": 1,
        "redteam_max_new_tokens": 12,
        "curate_harmful": 8,
        "curate_benign": 8,
        "anchors": 4,
        "curate": {"max_new_tokens": 12, "helpful_samples": 1, "critique_benign": False},
        "on_policy": {"max_new_tokens": 12, "helpful_samples": 1},
        "train": {m: _SMOKE_TRAIN for m in STAGE_METHODS if m not in (*RL_METHODS, "cast")}
        | {m: {"max_steps": 2, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 8} for m in RL_METHODS},
    },
    "cpu-demo": {
        "name": "cpu-demo",
        "model": "smollm2-135m-instruct",
        # 64 rows a batch decode the 165 posture prompts about 18% faster than 32 on 2 cores, with the same
        # greedy replies (bench/generate_batch_size.py)
        "batch_size": 64,
        "anchors": 120,
        # 128 broad training prompts beside the suite's 128: fewer harmful answers and look-alikes refused on
        # the test split and on held-out prompts, at about 1.5x the time (docs/sweeps/cpu-demo-broad.md)
        "train_prompts": 128,
        "curate": {"max_new_tokens": 96, "critique_benign": False},
        "on_policy": {"max_new_tokens": 96},
        # measured on SmolLM2 (docs/results.md): SFT alone refuses half the benign test prompts; DPO at
        # 5e-4 on the contrast pairs gives most of that back, and some harmful compliance with it
        "train": {
            "sft": {"epochs": 2, "batch_size": 8, "max_length": 256, "learning_rate": 2e-4, "lora_r": 16},
            # with the chosen reply's NLL added (RPO): helpfulness kept 90% instead of 73%, benign evasion 1.4%
            # instead of 7.0% on held-out prompts, harmful answered the same there (docs/sweeps/cpu-demo-curation.md)
            "dpo": {
                "epochs": 1,
                "batch_size": 4,
                "max_length": 256,
                "learning_rate": 5e-4,
                "beta": 0.1,
                "rpo_alpha": 1.0,
            },
            # a round of on-policy DPO starts from a model that already refuses: smaller steps than dpo's
            "odpo": {"epochs": 1, "batch_size": 4, "max_length": 256, "learning_rate": 2e-4, "beta": 0.1},
        },
    },
    "gpu": {
        "name": "gpu",
        "model": "smollm2-135m-instruct",
        "batch_size": None,
        "posture_max_new_tokens": 160,
        "redteam_attacks": "all",
        "redteam_per_category": 4,
        "redteam_max_new_tokens": 96,
        "curate_harmful": None,
        "curate_benign": None,
        "anchors": None,
        "curate": {"max_new_tokens": 160, "rounds": 2},
        "methods": ["sft", "dpo", "grpo"],
        "rl_helpful_weight": 0.5,
        "train": {
            "sft": {"epochs": 3, "batch_size": 16, "max_length": 512, "learning_rate": 2e-4},
            "dpo": {"epochs": 2, "batch_size": 8, "max_length": 512, "learning_rate": 5e-6},
            "grpo": {
                "max_steps": 30,
                "prompts_per_step": 16,
                "group_size": 8,
                "max_new_tokens": 128,
                "learning_rate": 1e-5,
            },
        },
    },
}
"""The built-in presets as data (`Preset` fields); `make_preset` validates them with the overrides."""


def make_preset(name: str, model: str | None = None, overrides: list[str] | None = None) -> Preset:
    """A preset by name, with the model and `key=value` settings (YAML values, dotted keys into `curate`
    and `train`, e.g. `train.dpo.beta=0.2`) applied and validated."""
    if name not in PRESETS:
        raise AlignkitError(f"unknown preset '{name}'; known: {', '.join(PRESETS)}")
    changes = parse_overrides(overrides or [], "preset")
    if "name" in changes:
        raise AlignkitError("preset: 'name' is the preset's own; pick another --preset instead")
    body = merge(PRESETS[name], changes)
    if model:
        body["model"] = model
    return validate(Preset, body, f"preset {name}")
