"""The one offline training loop: SFT, the DPO family, KTO and reward models, on accelerate.

Recipe owns the loop, objectives own the math (`alignkit.train.objectives`). What makes it fast on a
CPU: reference log-probs computed once before training (for LoRA by the base model, adapters off),
each pair in one row that holds its prompt once (`pack_pairs`), length-grouped batches, LM-head logits
only at trained positions (`SequenceLogps`), and fused AdamW.

Distributed runs (DDP, FSDP, DeepSpeed via `accelerate launch`) give each process an interleaved share
of every global batch; losses are normalised by the global count of examples (or tokens for SFT), so
N processes step exactly as one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignkit.errors import AlignkitError
from alignkit.train import objectives as obj
from alignkit.train.batches import (
    ChatTokenizer,
    Example,
    collate,
    epoch_order,
    load_examples,
    pack_pairs,
    packed_length,
)
from alignkit.train.checkpoint import export_model, load_checkpoint, save_checkpoint, truncate_metrics
from alignkit.train.config import TrainConfig
from alignkit.train.logps import SequenceLogps, SequenceRewards

Progress = Callable[[str, int, int], None]


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    seconds: float
    """Wall time of this invocation (reference pass, training, evaluation and export)."""
    train_seconds: float
    """Time inside optimizer steps only, this invocation."""
    examples_seen: int
    """Training examples (pairs for paired methods) processed by optimizer steps, this invocation."""
    final_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    model_dir: Path | None = None
    """The Hugging Face folder of the trained (merged) model."""
    adapter_dir: Path | None = None


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_model(path: str, cfg: TrainConfig, tokenizer: Any, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if cfg.method == "reward":
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if not cfg.lora:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise AlignkitError("LoRA needs peft: pip install peft") from None
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        task_type="SEQ_CLS" if cfg.method == "reward" else "CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


class Trainer:
    """One training run in `out_dir`: checkpoints, metrics.jsonl, config.yaml, and the exported model."""

    def __init__(self, model: str, data: str | Path, out_dir: str | Path, cfg: TrainConfig) -> None:
        from accelerate import Accelerator
        from transformers import AutoTokenizer

        from alignkit.models import resolve

        self.cfg = cfg
        self.out = Path(out_dir)
        self.data_path = Path(data)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        bf16 = torch.cuda.is_available() if cfg.bf16 is None else cfg.bf16
        # cpu=True when there is no GPU: accelerate then runs several processes as gloo DDP on the CPU
        self.acc = Accelerator(
            gradient_accumulation_steps=cfg.grad_accum,
            mixed_precision="bf16" if bf16 else "no",
            cpu=not torch.cuda.is_available(),
        )
        self.model_path = resolve(model)
        self.model_name = model
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tok = ChatTokenizer(self.tokenizer, cfg.max_length)
        self.train_set, self.eval_set = load_examples(self.data_path, cfg, self.tok)
        if cfg.method == "kto":
            _add_kl_sequences(self.train_set + self.eval_set, self.tok)
        _seed_everything(cfg.seed)
        self.model = _load_model(self.model_path, cfg, self.tokenizer, torch.float32)
        # shared-prompt rows need a 4D boolean mask, which SDPA takes as it is (eager attention adds it)
        self.packs = cfg.packs and getattr(self.model.config, "_attn_implementation", None) == "sdpa"
        if self.packs:  # length grouping then sorts pairs by the row they will take
            for e in self.train_set + self.eval_set:
                e.packed = packed_length(e.seqs[0], e.seqs[1])
        self.world = self.acc.num_processes
        self.global_batch = cfg.batch_size * cfg.grad_accum * self.world
        per_epoch = len(epoch_order(self.train_set, self.global_batch, cfg.seed, 0))
        self.steps_per_epoch = per_epoch
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))

    # ---- the run ------------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> TrainResult:
        from transformers import get_scheduler

        cfg, acc = self.cfg, self.acc
        started = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_config()
        wrapper: torch.nn.Module = SequenceRewards(self.model) if cfg.method == "reward" else SequenceLogps(self.model)
        wrapper.to(acc.device)
        self.ref = self._reference(wrapper, progress) if cfg.uses_reference else None
        params = [p for p in wrapper.parameters() if p.requires_grad]
        optimizer = _adamw(params, cfg)
        name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.scheduler]
        warmup = math.ceil(cfg.warmup_ratio * self.total_steps)
        # stepped by hand once per optimizer step: accelerate's wrapper would step it once per process
        self.scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=self.total_steps)
        self.wrapper, self.optimizer = acc.prepare(wrapper, optimizer)
        start = self._resume()
        writer = self._tensorboard()
        examples_seen, train_seconds = 0, 0.0
        last: dict[str, float] = {}
        orders: dict[int, list[list[Example]]] = {}
        for step in range(start, self.total_steps):
            epoch = step // self.steps_per_epoch
            if epoch not in orders:
                orders = {epoch: epoch_order(self.train_set, self.global_batch, cfg.seed, epoch)}
            batch = orders[epoch][step % self.steps_per_epoch]
            t0 = time.monotonic()
            last = self._step(batch[acc.process_index :: self.world])
            train_seconds += time.monotonic() - t0
            examples_seen += len(batch)
            done = step + 1
            last.update(step=done, epoch=round(done / self.steps_per_epoch, 4), lr=self.scheduler.get_last_lr()[0])
            if done % cfg.log_every == 0 or done == self.total_steps:
                self._log(last, writer)
            if cfg.eval_every and done % cfg.eval_every == 0 and done < self.total_steps and self.eval_set:
                self._log({"step": done, **self.evaluate()}, writer)
            if done % cfg.save_every == 0 or done == self.total_steps:
                self._save(done)
            if progress:
                progress("train", done, self.total_steps)
        eval_metrics = {"step": self.total_steps, **self.evaluate()} if self.eval_set else {}
        if eval_metrics:
            self._log(eval_metrics, writer)
        if writer is not None:
            writer.close()
        model_dir, adapter_dir = self._export()
        result = TrainResult(
            self.out,
            self.total_steps,
            time.monotonic() - started,
            train_seconds,
            examples_seen,
            last,
            eval_metrics,
            model_dir,
            adapter_dir,
        )
        if acc.is_main_process:
            summary = {
                "method": cfg.method,
                "model": self.model_name,
                "data": str(self.data_path),
                "data_sha256": hashlib.sha256(self.data_path.read_bytes()).hexdigest(),
                "train_examples": len(self.train_set),
                "eval_examples": len(self.eval_set),
                "steps": self.total_steps,
                "processes": self.world,
                "seconds": round(result.seconds, 2),
                "train_seconds": round(train_seconds, 2),
                "examples_per_second": round(examples_seen / train_seconds, 4) if train_seconds else None,
                "final": last,
                "eval": eval_metrics,
                "model_dir": str(model_dir) if model_dir else None,
                "adapter_dir": str(adapter_dir) if adapter_dir else None,
            }
            (self.out / "train.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        return result

    # ---- one optimizer step -------------------------------------------------------------------

    def _units(self, examples: Sequence[Example]) -> float:
        if self.cfg.method == "sft":
            return float(sum(sum(e.seqs[0].loss_mask) for e in examples))
        return float(len(examples))

    def _step(self, local: Sequence[Example]) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        micro = [local[i : i + cfg.batch_size] for i in range(0, len(local), cfg.batch_size)]
        global_units = acc.reduce(torch.tensor(self._units(local), device=acc.device), "sum").item()
        self.wrapper.train()
        loss_total = torch.zeros((), device=acc.device)
        collected: dict[str, list[torch.Tensor]] = defaultdict(list)
        grad_norm = None
        for part in micro:
            with acc.accumulate(self.wrapper):
                loss_sum, metrics = self._loss(part)
                # accelerate divides by grad_accum and DDP averages over processes: undo both so that the
                # step's gradient is sum(loss) / global units, as for one process with the global batch
                acc.backward(loss_sum * (self.world * cfg.grad_accum / global_units))
                loss_total += loss_sum.detach()
                for k, v in metrics.items():
                    collected[k].append(v.detach().float().reshape(-1))
                if acc.sync_gradients:
                    grad_norm = acc.clip_grad_norm_(self.wrapper.parameters(), cfg.max_grad_norm or float("inf"))
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
        out = {"loss": acc.reduce(loss_total, "sum").item() / global_units}
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        for k, parts in collected.items():
            value = torch.nanmean(torch.cat(parts)) if parts else torch.tensor(float("nan"))
            out[k] = acc.reduce(value.to(acc.device), "mean").item()
        return out

    # ---- losses -------------------------------------------------------------------------------

    def _batch(self, seqs: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.acc.device) for k, v in collate(seqs, self.tokenizer.pad_token_id).items()}

    def _pairs(self, part: Sequence[Example]) -> dict[str, torch.Tensor]:
        """Chosen and rejected of each pair, for one forward pass whose sums list the chosen first."""
        if not self.packs:
            return self._batch([e.seqs[0] for e in part] + [e.seqs[1] for e in part])
        packed = pack_pairs([(e.seqs[0], e.seqs[1]) for e in part], self.tokenizer.pad_token_id)
        return {k: v.to(self.acc.device) for k, v in packed.items()}

    def _loss(self, part: Sequence[Example]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, n = self.cfg, len(part)
        if cfg.method == "reward":
            b = self._batch([e.seqs[0] for e in part] + [e.seqs[1] for e in part])
            rewards = self.wrapper(b["input_ids"], b["attention_mask"])  # (2n,)
            losses, metrics = obj.bradley_terry_loss(rewards[:n], rewards[n:])
            return losses.sum(), metrics
        if cfg.method == "sft":
            b = self._batch([e.seqs[0] for e in part])
            sums, counts, _ = self.wrapper(**b)
            return -sums.sum(), {"logps/mean_token": (sums / counts.clamp(min=1)).detach()}
        if cfg.method == "kto":
            b = self._batch([e.seqs[0] for e in part])
            sums, _, _ = self.wrapper(**b)
            with torch.no_grad():
                kb = self._batch([e.seqs[1] for e in part])
                kl_sums, _, _ = self.wrapper(**kb)
            ref = self._ref(part)
            kl = (kl_sums - ref[:, 1]).mean()
            desirable = torch.tensor([bool(e.desirable) for e in part], device=sums.device)
            losses, metrics = obj.kto_loss(
                sums,
                ref[:, 0],
                desirable,
                kl,
                beta=cfg.beta,
                desirable_weight=cfg.kto_desirable_weight,
                undesirable_weight=cfg.kto_undesirable_weight,
            )
            return losses.sum(), metrics
        sums, counts, _ = self.wrapper(**self._pairs(part))  # chosen first, then rejected: one forward pass
        pc, pr = sums[:n], sums[n:]
        avg_c, avg_r = pc / counts[:n], pr / counts[n:]
        if cfg.method == "simpo":
            losses, metrics = obj.simpo_loss(avg_c, avg_r, beta=cfg.beta, gamma=cfg.simpo_gamma)
        elif cfg.method == "orpo":
            losses, metrics = obj.orpo_loss(avg_c, avg_r, -avg_c, beta=cfg.beta)
        else:
            ref = self._ref(part)
            rc, rr = ref[:, 0], ref[:, 1]
            if cfg.method == "ipo":
                nc, nr = counts[:n], counts[n:]
                losses, metrics = obj.ipo_loss(avg_c, avg_r, rc / nc, rr / nr, beta=cfg.beta)
            elif cfg.method == "robust":
                losses, metrics = obj.robust_dpo_loss(
                    pc, pr, rc, rr, beta=cfg.beta, label_smoothing=cfg.label_smoothing
                )
            else:
                smoothing = torch.tensor(
                    [cfg.label_smoothing if e.weight is None else 1.0 - e.weight for e in part], device=pc.device
                )
                losses, metrics = obj.dpo_loss(pc, pr, rc, rr, beta=cfg.beta, label_smoothing=smoothing)
        return losses.sum(), metrics

    def _ref(self, part: Sequence[Example]) -> torch.Tensor:
        assert self.ref is not None
        return self.ref[torch.tensor([e.index for e in part])].to(self.acc.device)

    # ---- reference log-probs, once ------------------------------------------------------------

    def _reference(self, wrapper: torch.nn.Module, progress: Progress | None) -> torch.Tensor:
        """log p_ref of every sequence (examples x sequences), before any update; cached in the run
        folder so a resumed run does not recompute it. For LoRA the reference is the base model, run
        with the adapters switched off (they start at zero, so the values are the same, for less work)."""
        everything = self.train_set + self.eval_set
        key = hashlib.sha256(
            json.dumps([self.model_path, str(self.data_path), self.cfg.max_length, self.cfg.method]).encode()
            + self.data_path.read_bytes()
        ).hexdigest()[:16]
        cache = self.out / f"reference-{key}.pt"
        if cache.exists():
            cached: torch.Tensor = torch.load(cache)
            return cached
        width = max(len(e.seqs) for e in everything)
        ref = torch.zeros((max(e.index for e in everything) + 1, width), dtype=torch.float32)
        adapters_off = self.model.disable_adapter() if self.cfg.lora else contextlib.nullcontext()
        wrapper.eval()
        done, total = 0, sum(len(e.seqs) for e in everything)
        with torch.no_grad(), self.acc.autocast(), adapters_off:
            for slots, batch in self._reference_batches(everything):
                sums, _, _ = wrapper(**batch)
                for (i, j), value in zip(slots, sums.float().cpu(), strict=True):
                    ref[i, j] = value
                done += len(slots)
                if progress:
                    progress("reference log-probs", done, total)
        if self.acc.is_main_process:
            tmp = cache.with_suffix(".tmp")
            torch.save(ref, tmp)
            os.replace(tmp, cache)
        return ref

    def _reference_batches(
        self, examples: Sequence[Example]
    ) -> Iterator[tuple[list[tuple[int, int]], dict[str, torch.Tensor]]]:
        """Batches of similar length for the reference pass, each with the (example, sequence) slot of
        every sum it gives: pairs by their packed row, otherwise each sequence on its own."""
        if self.packs:
            order = sorted(examples, key=lambda e: e.length)
            step = self.cfg.batch_size * 4
            for start in range(0, len(order), step):
                part = order[start : start + step]
                yield [(e.index, 0) for e in part] + [(e.index, 1) for e in part], self._pairs(part)
            return
        seqs = sorted(((e.index, j, q) for e in examples for j, q in enumerate(e.seqs)), key=lambda t: len(t[2]))
        step = self.cfg.batch_size * 8
        for start in range(0, len(seqs), step):
            chunk = seqs[start : start + step]
            yield [(i, j) for i, j, _ in chunk], self._batch([q for *_, q in chunk])

    # ---- evaluation ---------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Mean loss and metrics on the held-out split."""
        self.wrapper.eval()
        total, units = 0.0, 0.0
        collected: dict[str, list[torch.Tensor]] = defaultdict(list)
        with torch.no_grad():
            for start in range(0, len(self.eval_set), self.cfg.batch_size):
                part = self.eval_set[start : start + self.cfg.batch_size]
                loss_sum, metrics = self._loss(part)
                total += float(loss_sum)
                units += self._units(part)
                for k, v in metrics.items():
                    collected[k].append(v.float().reshape(-1).cpu())
        out = {"eval/loss": total / max(units, 1.0)}
        for k, parts in collected.items():
            out[f"eval/{k}"] = float(torch.nanmean(torch.cat(parts)))
        return out

    # ---- persistence --------------------------------------------------------------------------

    def _write_config(self) -> None:
        if not self.acc.is_main_process:
            return
        import yaml

        body = {"model": self.model_name, "data": str(self.data_path), **self.cfg.model_dump()}
        (self.out / "config.yaml").write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")

    def _log(self, row: dict[str, float], writer: Any) -> None:
        if not self.acc.is_main_process:
            return
        clean = {k: (round(v, 8) if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()}
        with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")
        if writer is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float | int):
                    writer.add_scalar(k, v, int(row["step"]))

    def _tensorboard(self) -> Any:
        if not (self.cfg.tensorboard and self.acc.is_main_process):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise AlignkitError("tensorboard=true needs `pip install tensorboard`") from None
        return SummaryWriter(str(self.out / "tensorboard"))

    @property
    def _ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    def _save(self, step: int) -> None:
        save_checkpoint(self.acc, self._ckpt_root, step, self.scheduler, {})

    def _resume(self) -> int:
        state = load_checkpoint(self.acc, self._ckpt_root, self.scheduler)
        if state is None:
            if self.acc.is_main_process:
                (self.out / "metrics.jsonl").unlink(missing_ok=True)
            return 0
        step = int(state["step"])
        if self.acc.is_main_process:
            truncate_metrics(self.out / "metrics.jsonl", step)
        return step

    def _export(self) -> tuple[Path | None, Path | None]:
        """LoRA: the adapter and, with `merge`, the merged model; full fine-tuning: the model."""
        return export_model(self.acc, self.wrapper, self.tokenizer, self.out, lora=self.cfg.lora, merge=self.cfg.merge)


def _adamw(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with torch's fused kernel (one pass over each tensor per step) where this build has it."""
    try:
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def _add_kl_sequences(examples: list[Example], tok: ChatTokenizer) -> None:
    """KTO's reference point z0 is estimated on mismatched pairs: each prompt with the next example's
    reply (Ethayarajh et al. 2024). The pairing is fixed by data order so it survives a resume."""
    if len(examples) < 2:
        raise AlignkitError("kto needs at least two examples")
    # re-render prompt + other reply from the token spans: the prompt is the unmasked prefix
    prompts = [e.seqs[0].ids[: e.seqs[0].loss_mask.index(1)] for e in examples]
    replies = [
        (e.seqs[0].ids[e.seqs[0].loss_mask.index(1) :], e.seqs[0].loss_mask[e.seqs[0].loss_mask.index(1) :])
        for e in examples
    ]
    from alignkit.train.batches import Sequence_

    for i, e in enumerate(examples):
        ids, mask = replies[(i + 1) % len(examples)]
        seq = Sequence_(prompts[i] + ids, [0] * len(prompts[i]) + mask)
        e.seqs.append(Sequence_(seq.ids[: tok.max_length], seq.loss_mask[: tok.max_length]))


def train(
    model: str, data: str | Path, out_dir: str | Path, cfg: TrainConfig, progress: Progress | None = None
) -> TrainResult:
    """Train `model` on `data` with `cfg` into `out_dir`; rerun the same call to resume after a kill."""
    return Trainer(model, data, out_dir, cfg).run(progress)
