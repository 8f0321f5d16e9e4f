"""The run folder both training loops share (`alignkit.train.loop` offline, `alignkit.rl.loop` online).

    out/
      config.yaml     the resolved config, with the model and the data it trained on
      metrics.jsonl   one row per logged step (TensorBoard event files under tensorboard/ on request)
      checkpoints/    the last whole checkpoint (`alignkit.train.checkpoint`), named in checkpoints/latest
      adapter/        LoRA: the adapter as a PEFT folder
      model/          the trained model (LoRA: merged) as a Hugging Face folder

`RunDir` owns the accelerate state a run trains under and every file above; a loop owns what happens in a step.
Rerunning a loop on the same folder resumes from its last whole checkpoint and drops the metric rows written after
it. The helpers beside it (`load_model`, `adamw`, `lr_scheduler`, ...) are the set-up both loops make the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from alignkit.device import pick_device, pick_dtype
from alignkit.errors import AlignkitError
from alignkit.train.checkpoint import export_model, load_checkpoint, save_checkpoint, truncate_metrics
from alignkit.train.config import LoraSettings

SCHEDULERS: dict[str, str] = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
"""Config scheduler names -> transformers' `get_scheduler` names (both warm up first)."""


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators (LoRA init, dropout, anything else that draws)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_tokenizer(path: str) -> Any:
    """The model's tokenizer; one without a pad token pads with its end-of-sequence token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    path: str,
    lora: LoraSettings,
    tokenizer: Any,
    dtype: torch.dtype,
    *,
    reward_head: bool = False,
    gradient_checkpointing: bool = False,
) -> Any:
    """A causal LM (or, with `reward_head`, a one-label sequence classifier), wrapped in LoRA adapters when
    `lora.lora` is set."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if reward_head:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if not lora.lora:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise AlignkitError("LoRA needs peft: pip install peft") from None
    config = LoraConfig(
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=lora.lora_target_modules,
        task_type="SEQ_CLS" if reward_head else "CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    if gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def adamw(
    params: list[torch.nn.Parameter], lr: float, weight_decay: float, *, fused: bool = True
) -> torch.optim.Optimizer:
    """AdamW with torch's fused kernel (one pass over each tensor per step) where this build has it and `fused` is
    asked for; otherwise torch's default (foreach) kernel. The two differ in the last bits of the weights."""
    if fused:
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def lr_scheduler(optimizer: torch.optim.Optimizer, name: str, warmup_ratio: float, total_steps: int) -> Any:
    """Linear warm-up over `warmup_ratio` of `total_steps` optimizer steps, then `name` (cosine, linear, constant).
    The loops step it by hand once per optimizer step: accelerate's wrapper would step it once per process."""
    from transformers import get_scheduler

    warmup = math.ceil(warmup_ratio * total_steps)
    return get_scheduler(SCHEDULERS[name], optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def mixed_precision(bf16: bool | None, device: torch.device) -> str:
    """accelerate's `mixed_precision`: bf16 autocast over fp32 weights when `bf16` says so, or, with `bf16` None,
    where the device rule picks bf16 (`alignkit.device.pick_dtype`: a GPU that supports it, or $ALIGNKIT_DTYPE)."""
    if bf16 is None:
        bf16 = pick_dtype(device) == torch.bfloat16
    return "bf16" if bf16 else "no"


class RunDir:
    """One run folder and the accelerate state its run trains under. Every process makes one; files are written by
    the main process only, checkpoints and the export by all of them together."""

    def __init__(
        self,
        out: str | Path,
        *,
        bf16: bool | None,
        threads: int | None = None,
        grad_accum: int = 1,
        tensorboard: bool = False,
    ) -> None:
        """Trains on the device `alignkit.device.pick_device` names (a GPU when there is one); `bf16` as in
        `mixed_precision`."""
        from accelerate import Accelerator

        self.out = Path(out)
        self.tensorboard = tensorboard
        self._writer: Any = None
        if threads:
            torch.set_num_threads(threads)
        device = pick_device()
        # cpu=True off the GPU: accelerate then runs several processes as gloo DDP on the CPU
        self.acc = Accelerator(
            gradient_accumulation_steps=grad_accum,
            mixed_precision=mixed_precision(bf16, device),
            cpu=device.type == "cpu",
        )

    @property
    def is_main(self) -> bool:
        return bool(self.acc.is_main_process)

    @property
    def world(self) -> int:
        """Processes training together."""
        return int(self.acc.num_processes)

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    # ---- config and summary -------------------------------------------------------------------

    def begin(self, cfg: BaseModel, context: Mapping[str, Any]) -> None:
        """Make the folder and write config.yaml: `context` (model, data, ...) then the resolved config, its
        `method` first."""
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.is_main:
            return
        import yaml

        settings = cfg.model_dump()
        body = {**context, **({"method": settings["method"]} if "method" in settings else {}), **settings}
        (self.out / "config.yaml").write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")

    def write_summary(self, name: str, summary: Mapping[str, Any]) -> None:
        """The run's closing summary (train.json, rl.json), main process only."""
        if self.is_main:
            (self.out / name).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    # ---- metrics ------------------------------------------------------------------------------

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row (with its `step`) to metrics.jsonl, and to TensorBoard when asked for."""
        if not self.is_main:
            return
        clean = {k: (round(v, 8) if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()}
        with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")
        writer = self._tensorboard()
        if writer is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float | int) and not isinstance(v, bool):
                    writer.add_scalar(k, v, int(row["step"]))

    def logged(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl so far."""
        path = self.out / "metrics.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [dict(json.loads(line)) for line in lines if line]

    def _tensorboard(self) -> Any:
        if self._writer is None and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise AlignkitError("tensorboard=true needs `pip install tensorboard`") from None
            self._writer = SummaryWriter(str(self.out / "tensorboard"))
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ---- checkpoints --------------------------------------------------------------------------

    def save(self, step: int, scheduler: Any, state: Mapping[str, Any] | None = None) -> None:
        """Checkpoint the prepared objects, `scheduler` and a small JSON `state`; every process calls this."""
        save_checkpoint(self.acc, self.checkpoints, step, scheduler, dict(state or {}))

    def resume(self, scheduler: Any, logs: Iterable[str] = ("metrics.jsonl",)) -> dict[str, Any] | None:
        """Restore the last checkpoint and return its JSON state (with `step`), dropping the rows of `logs` written
        after it; with no checkpoint, delete `logs` (a fresh start) and return None."""
        state = load_checkpoint(self.acc, self.checkpoints, scheduler)
        if self.is_main:
            for name in logs:
                if state is None:
                    (self.out / name).unlink(missing_ok=True)
                else:
                    truncate_metrics(self.out / name, int(state["step"]))
        return state

    def export(
        self, wrapper: Any, tokenizer: Any, lora: LoraSettings, *, merge: bool
    ) -> tuple[Path | None, Path | None]:
        """(model dir, adapter dir) of `wrapper.model`: LoRA the adapter and, with `merge`, the merged model; full
        fine-tuning the model. Every process calls this."""
        return export_model(self.acc, wrapper, tokenizer, self.out, lora=lora.lora, merge=merge)
