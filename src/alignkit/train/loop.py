"""The one offline training loop: SFT, the DPO family, KTO and reward models, on accelerate.

Recipe owns the loop, objectives own the math (`alignkit.train.objectives.OBJECTIVES`, one per method), the run
folder owns config, metrics, checkpoints and the export (`alignkit.train.rundir.RunDir`). What makes it fast on a
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
from alignkit.train.batches import (
    ChatTokenizer,
    Example,
    choose_packing,
    collate,
    epoch_order,
    load_examples,
    pack_pairs,
    pack_sequences,
    packed_length,
)
from alignkit.train.checkpoint import load_tensors
from alignkit.train.config import TrainConfig
from alignkit.train.logps import SequenceLogps, SequenceRewards
from alignkit.train.objectives import OBJECTIVES, Scores
from alignkit.train.rundir import RunDir, adamw, load_model, load_tokenizer, lr_scheduler, seed_everything

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


class Trainer:
    """One training run in `out_dir`: checkpoints, metrics.jsonl, config.yaml, and the exported model."""

    def __init__(self, model: str, data: str | Path, out_dir: str | Path, cfg: TrainConfig) -> None:
        from alignkit.models import resolve

        self.cfg = cfg
        self.out = Path(out_dir)
        self.data_path = Path(data)
        self.run_dir = RunDir(
            self.out, bf16=cfg.bf16, threads=cfg.threads, grad_accum=cfg.grad_accum, tensorboard=cfg.tensorboard
        )
        self.acc = self.run_dir.acc
        self.model_path = resolve(model)
        self.model_name = model
        self.tokenizer = load_tokenizer(self.model_path)
        self.tok = ChatTokenizer(self.tokenizer, cfg.max_length)
        self.train_set, self.eval_set = load_examples(self.data_path, cfg, self.tok)
        if cfg.method == "kto":
            _add_kl_sequences(self.train_set + self.eval_set, self.tok)
        seed_everything(cfg.seed)
        self.model = load_model(
            self.model_path,
            cfg,
            self.tokenizer,
            torch.float32,
            reward_head=cfg.method == "reward",
            gradient_checkpointing=cfg.gradient_checkpointing,
        )
        self.packing = choose_packing(cfg.packing, cfg.method, self.model, self.acc.device)
        """The row layout: "pairs" (shared-prompt rows), "positions" (restarting position ids) or "off"."""
        self.packs = self.packing == "pairs"
        if self.packs:  # length grouping then sorts pairs by the row they will take
            for e in self.train_set + self.eval_set:
                e.packed = packed_length(e.seqs[0], e.seqs[1])
        self.world = self.run_dir.world
        self.global_batch = cfg.batch_size * cfg.grad_accum * self.world
        per_epoch = len(epoch_order(self.train_set, self.global_batch, cfg.seed, 0))
        self.steps_per_epoch = per_epoch
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))

    # ---- the run ------------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> TrainResult:
        cfg, acc, run_dir = self.cfg, self.acc, self.run_dir
        started = time.monotonic()
        run_dir.begin(cfg, {"model": self.model_name, "data": str(self.data_path)})
        wrapper: torch.nn.Module = SequenceRewards(self.model) if cfg.method == "reward" else SequenceLogps(self.model)
        wrapper.to(acc.device)
        self.ref = self._reference(wrapper, progress) if cfg.uses_reference else None
        params = [p for p in wrapper.parameters() if p.requires_grad]
        optimizer = adamw(params, cfg.learning_rate, cfg.weight_decay)
        self.scheduler = lr_scheduler(optimizer, cfg.scheduler, cfg.warmup_ratio, self.total_steps)
        self.wrapper, self.optimizer = acc.prepare(wrapper, optimizer)
        state = run_dir.resume(self.scheduler)
        start = int(state["step"]) if state else 0
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
                run_dir.log(last)
            if cfg.eval_every and done % cfg.eval_every == 0 and done < self.total_steps and self.eval_set:
                run_dir.log({"step": done, **self.evaluate()})
            if done % cfg.save_every == 0 or done == self.total_steps:
                run_dir.save(done, self.scheduler)
            if progress:
                progress("train", done, self.total_steps)
        eval_metrics = {"step": self.total_steps, **self.evaluate()} if self.eval_set else {}
        if eval_metrics:
            run_dir.log(eval_metrics)
        run_dir.close()
        model_dir, adapter_dir = run_dir.export(self.wrapper, self.tokenizer, cfg, merge=cfg.merge)
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
        if run_dir.is_main:
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
            run_dir.write_summary("train.json", summary)
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
        """The sequences for one forward pass whose sums come back in their order: padded rows, or laid end
        to end when packing by positions."""
        pad = self.tokenizer.pad_token_id
        batch = pack_sequences(seqs, pad) if self.packing == "positions" else collate(seqs, pad)
        return {k: v.to(self.acc.device) for k, v in batch.items()}

    def _pairs(self, part: Sequence[Example]) -> dict[str, torch.Tensor]:
        """Chosen and rejected of each pair, for one forward pass whose sums list the chosen first."""
        if not self.packs:
            return self._batch([e.seqs[0] for e in part] + [e.seqs[1] for e in part])
        packed = pack_pairs([(e.seqs[0], e.seqs[1]) for e in part], self.tokenizer.pad_token_id)
        return {k: v.to(self.acc.device) for k, v in packed.items()}

    def _loss(self, part: Sequence[Example]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(summed loss over the micro-batch, its metrics) from the method's objective (`OBJECTIVES`)."""
        losses, metrics = OBJECTIVES[self.cfg.method](self._scores(part), self.cfg)
        return losses.sum(), metrics

    def _scores(self, part: Sequence[Example]) -> Scores:
        """What the objectives read, from one forward pass of the policy (two for KTO) and the cached reference."""
        cfg, n = self.cfg, len(part)
        if cfg.method == "reward":
            b = self._batch([e.seqs[0] for e in part] + [e.seqs[1] for e in part])
            rewards = self.wrapper(b["input_ids"], b["attention_mask"])  # (2n,)
            return Scores(rewards[:n], rejected=rewards[n:])
        if not cfg.paired:  # sft, kto: one trained sequence per example
            sums, counts, _ = self.wrapper(**self._batch([e.seqs[0] for e in part]))
            if cfg.method == "sft":
                return Scores(sums, counts)
            with torch.no_grad():
                kl_sums, _, _ = self.wrapper(**self._batch([e.seqs[1] for e in part]))
            kto_ref = self._ref(part)
            desirable = torch.tensor([bool(e.desirable) for e in part], device=sums.device)
            return Scores(sums, counts, ref_chosen=kto_ref[:, 0], kl_logps=kl_sums, ref_kl_logps=kto_ref[:, 1],
                          desirable=desirable)  # fmt: skip
        sums, counts, _ = self.wrapper(**self._pairs(part))  # chosen first, then rejected: one forward pass
        ref = self._ref(part) if cfg.uses_reference else None
        smoothing = torch.tensor(
            [cfg.label_smoothing if e.weight is None else 1.0 - e.weight for e in part], device=sums.device
        )
        return Scores(
            sums[:n],
            counts[:n],
            sums[n:],
            counts[n:],
            ref_chosen=None if ref is None else ref[:, 0],
            ref_rejected=None if ref is None else ref[:, 1],
            label_smoothing=smoothing,
        )

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
            cached: torch.Tensor = load_tensors(cache)
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
