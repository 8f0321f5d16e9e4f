"""The online RL loop: sample replies from the current policy, score them, update; GRPO or PPO, on accelerate.

One RL step:
  1. rollouts: `prompts_per_step` prompts, `group_size` replies each, sampled from the live policy (`rollout.Sampler`);
  2. rewards: the proxy being optimised (and a gold signal, if given, for the specification-gaming monitor);
  3. scoring: log-probs under the reference (LoRA: the same model with its adapters disabled; full fine-tuning: a
     frozen copy) and, where the update needs them separately, under the sampling policy (plus PPO's values);
  4. advantages: GRPO normalises each reply's reward within its prompt's group; PPO folds a per-token KL penalty
     into the rewards (the score lands on the last token) and runs GAE on its value head;
  5. update: `epochs` passes of clipped-surrogate steps over mini-batches (`alignkit.rl.objectives`).

The run folder (config.yaml, metrics.jsonl, checkpoints, resume, the export) is the one the offline loop uses
(`alignkit.train.rundir.RunDir`): rerun the same call after a kill and it resumes from the last whole checkpoint,
dropping metric lines written after it. Sampling is seeded from (seed, step, process), so a resumed step samples the
same replies as the uninterrupted one did.

Dropout stays at the model's setting during updates; sampling and scoring run in eval mode. With lora_dropout = 0
(the default) the first pass over each batch is exactly on-policy (ratio 1).

Metrics per step (metrics.jsonl): `reward` (proxy mean) and `gold` on the step's replies, which the weights before
the step's update sampled; `kl`, KL(policy || reference) per reply in nats, the summed k3 estimate on those replies
(PPO's reward penalty uses the per-token log-ratio, as in Ouyang et al., and its adaptive controller reads `kl`);
`entropy` per token; `reply_tokens`; `ended` (share of replies that stopped on their own); `clip_fraction`; `loss`;
`grad_norm`; PPO adds `value_loss`, `policy_loss`, `value_clip_fraction`, `returns` and `kl_coef`. On several
processes PPO whitens advantages over each process's share of the batch.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignkit.errors import AlignkitError
from alignkit.rl import objectives as obj
from alignkit.rl.config import RLConfig
from alignkit.rl.monitor import GamingMonitor, MonitorPoint
from alignkit.rl.rewards import Reward, parse_reward, reward_name
from alignkit.rl.rollout import HFSampler, PolicyValue, Sampler, VLLMSampler
from alignkit.train.batches import Sequence_, collate
from alignkit.train.checkpoint import load_tensors
from alignkit.train.rundir import RunDir, adamw, load_model, load_tokenizer, lr_scheduler, seed_everything
from alignkit.types import Prompt

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total) after each RL step (stage `train`)."""


@dataclass
class RLResult:
    out_dir: Path
    steps: int
    """RL steps completed (fewer than max_steps when the monitor stopped the run)."""
    seconds: float
    """Wall time of this invocation."""
    final_metrics: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None
    """The Hugging Face folder of the trained (merged) model."""
    adapter_dir: Path | None = None
    gaming_step: int | None = None
    """The first step at which the monitor flagged specification gaming (None: never, or no gold signal)."""
    stopped_early: bool = False
    """The run stopped on gaming (`stop_on_gaming`)."""
    exported_updates: int = 0
    """How many updates the exported weights had: all of them, or the best-by-gold ones after an early stop."""


def load_rl_prompts(prompts: str | Path | list[Prompt]) -> list[Prompt]:
    """A list as given; a built-in suite name or a suite file (labelled); or a prompts file
    (`alignkit.data.load_prompts`, labels optional). Files and suites give their train split (prompts with no
    split belong to it)."""
    from alignkit.data import load_prompts
    from alignkit.errors import DataError
    from alignkit.suites import BUILTIN_SUITES, load_suite, select_split

    if isinstance(prompts, list):
        items = prompts
    else:
        spec = str(prompts)
        if spec in BUILTIN_SUITES and not Path(spec).exists():
            items = load_suite(spec)
        elif not Path(spec).exists():
            raise AlignkitError(f"prompts '{spec}': no such file or built-in suite ({', '.join(BUILTIN_SUITES)})")
        else:
            try:
                items = load_suite(spec)
            except DataError:
                items = load_prompts(spec)
        items = select_split(items, "train")
    if not items:
        raise AlignkitError(f"prompts '{prompts}': none in the train split")
    return items


class RLTrainer:
    """One online RL run in `out_dir`: checkpoints, metrics.jsonl, samples.jsonl, config.yaml, the monitor's
    monitor.json and monitor.svg, and the exported model."""

    def __init__(
        self,
        model: str,
        prompts: str | Path | list[Prompt],
        out_dir: str | Path,
        cfg: RLConfig,
        reward: str | Reward,
        gold: str | Reward | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        from alignkit.backends.hf import render_chat
        from alignkit.models import resolve

        self.cfg = cfg
        self.out = Path(out_dir)
        if cfg.method == "grpo" and cfg.group_size < 2:
            raise AlignkitError("grpo needs group_size >= 2 (advantages are normalised within each prompt's group)")
        if cfg.stop_on_gaming and gold is None:
            raise AlignkitError("stop_on_gaming needs a gold signal to judge the proxy by (--gold)")
        # the rollouts run where the policy trains: on the device `alignkit.device.pick_device` names
        self.run_dir = RunDir(self.out, bf16=cfg.bf16, threads=cfg.threads, tensorboard=cfg.tensorboard)
        self.acc = self.run_dir.acc
        self.world = self.run_dir.world
        if cfg.prompts_per_step % self.world:
            raise AlignkitError(f"prompts_per_step ({cfg.prompts_per_step}) must divide among {self.world} processes")
        self.prompts = load_rl_prompts(prompts)
        self.prompts_spec = str(prompts) if not isinstance(prompts, list) else f"<{len(prompts)} prompts>"
        self.reward = parse_reward(reward) if isinstance(reward, str) else reward
        self.gold = parse_reward(gold) if isinstance(gold, str) else gold
        self.model_name = model
        self.model_path = resolve(model)
        self.tokenizer = load_tokenizer(self.model_path)
        self.pad_id = int(self.tokenizer.pad_token_id)
        seed_everything(cfg.seed)
        self.model = load_model(
            self.model_path, cfg, self.tokenizer, torch.float32, gradient_checkpointing=cfg.gradient_checkpointing
        )
        self.ref: PolicyValue | None = None
        if not cfg.lora:
            frozen = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.ref = PolicyValue(frozen, False, cfg.temperature).to(self.acc.device)
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.eos_ids: list[int] = [int(e) for e in eos] if isinstance(eos, list) else [int(eos)]
        if sampler is None and cfg.sampler == "vllm":
            if self.world > 1:
                raise AlignkitError("sampler=vllm runs one engine beside one trainer process; use sampler=hf")
            sampler = VLLMSampler(self.model_path, self.eos_ids, cfg.vllm_gpu_memory)
        self.sampler = sampler or HFSampler(self.eos_ids, self.pad_id, cfg.generation_batch_size)
        self.prompt_ids: list[list[int]] = []
        for p in self.prompts:
            text = render_chat(self.tokenizer, p.conversation())
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            self.prompt_ids.append(ids[-cfg.max_prompt_length :])
        replies = cfg.prompts_per_step * cfg.group_size
        self.n_mini = math.ceil(replies / cfg.mini_batch_size) if cfg.mini_batch_size else 1
        if self.n_mini > replies // self.world:
            raise AlignkitError(f"mini_batch_size {cfg.mini_batch_size} leaves some processes without replies")
        # the fused path: with one optimizer step per batch, the update's own forward pass is the sampling policy's
        self.separate_old = cfg.method == "ppo" or cfg.epochs > 1 or self.n_mini > 1

    # ---- the run ------------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> RLResult:
        cfg, acc, run_dir = self.cfg, self.acc, self.run_dir
        started = time.monotonic()
        run_dir.begin(
            cfg,
            {
                "model": self.model_name,
                "prompts": self.prompts_spec,
                "reward": reward_name(self.reward),
                "gold": reward_name(self.gold) if self.gold is not None else None,
            },
        )
        policy = PolicyValue(self.model, cfg.method == "ppo", cfg.temperature).to(acc.device)
        params = [p for p in policy.parameters() if p.requires_grad]
        # fused on a GPU; on the CPU the default kernel, which the published RL figures were measured with (fused
        # would move every weight by an ulp, and in time the sampled replies)
        optimizer = adamw(params, cfg.learning_rate, 0.0, fused=acc.device.type == "cuda")
        total = cfg.max_steps * cfg.epochs * self.n_mini
        self.scheduler = lr_scheduler(optimizer, cfg.scheduler, cfg.warmup_ratio, total)
        self.policy, self.optimizer = acc.prepare(policy, optimizer)
        self.kl_ctl = obj.AdaptiveKLController(cfg.beta, cfg.target_kl, cfg.kl_horizon)
        self.monitor = GamingMonitor(window=cfg.monitor_window, tolerance=cfg.monitor_tolerance)
        self.state: dict[str, Any] = {"stopped": False, "best_gold": None, "best_updates": None}
        start = self._resume()
        last: dict[str, Any] = {}
        done = start
        for step in range(start, cfg.max_steps):
            if self.state["stopped"]:
                break
            t0 = time.monotonic()
            last = self._step(step)
            done = step + 1
            last.update(step=done, lr=self.scheduler.get_last_lr()[0], seconds=time.monotonic() - t0)
            point = MonitorPoint(done, last["kl"], last["reward"], last.get("gold"))
            last["gaming"] = self.monitor.add(point, warn=acc.is_main_process)
            stop = bool(last["gaming"] and cfg.stop_on_gaming and self.state["best_updates"] is not None)
            self.state["stopped"] = stop
            run_dir.log(last)
            if run_dir.is_main:
                self.monitor.write(self.out)
            if done % cfg.save_every == 0 or done == cfg.max_steps or stop:
                self._save(done)
            if progress:
                progress("train", done, cfg.max_steps)
            if stop:
                break
        if not last and self.monitor.points:  # resumed after the last step: report what it logged
            last = (run_dir.logged() or [{}])[-1]
        run_dir.close()
        exported = done
        if self.state["stopped"]:
            exported = self._load_best()
        # the value head is not part of the exported folders
        model_dir, adapter_dir = run_dir.export(self.policy, self.tokenizer, cfg, merge=cfg.merge)
        result = RLResult(
            out_dir=self.out,
            steps=done,
            seconds=time.monotonic() - started,
            final_metrics=last,
            model_dir=model_dir,
            adapter_dir=adapter_dir,
            gaming_step=self.monitor.first_gaming_step,
            stopped_early=bool(self.state["stopped"]),
            exported_updates=exported,
        )
        if run_dir.is_main:
            self.monitor.write(self.out)
            summary = {
                "method": cfg.method,
                "model": self.model_name,
                "prompts": self.prompts_spec,
                "reward": reward_name(self.reward),
                "gold": reward_name(self.gold) if self.gold is not None else None,
                "steps": done,
                "processes": self.world,
                "seconds": round(result.seconds, 2),
                "final": last,
                "gaming_step": result.gaming_step,
                "stopped_early": result.stopped_early,
                "exported_updates": exported,
                "best_gold": self.state["best_gold"],
                "model_dir": str(model_dir) if model_dir else None,
                "adapter_dir": str(adapter_dir) if adapter_dir else None,
            }
            run_dir.write_summary("rl.json", summary)
        return result

    # ---- one RL step --------------------------------------------------------------------------

    def _prompt_batch(self, step: int) -> list[int]:
        """Global prompt indices of one step: consecutive slices of per-epoch shuffles, a pure function of
        (seed, step)."""
        n, per = len(self.prompts), self.cfg.prompts_per_step
        out = []
        for k in range(step * per, (step + 1) * per):
            epoch, pos = divmod(k, n)
            order = random.Random(f"{self.cfg.seed}:{epoch}").sample(range(n), n)
            out.append(order[pos])
        return out

    def _step(self, step: int) -> dict[str, Any]:
        cfg, acc = self.cfg, self.acc
        unwrapped: PolicyValue = acc.unwrap_model(self.policy)
        local = self._prompt_batch(step)[acc.process_index :: self.world]
        rows = [i for i in local for _ in range(cfg.group_size)]  # each prompt's group is contiguous
        prompts = [self.prompts[i] for i in rows]

        t0 = time.monotonic()
        torch.manual_seed(cfg.seed * 1_000_003 + step * 1009 + acc.process_index)
        unwrapped.eval()
        with acc.autocast():
            replies = self.sampler.sample(
                unwrapped.model, [self.prompt_ids[i] for i in rows], cfg.max_new_tokens, cfg.temperature
            )
        sample_seconds = time.monotonic() - t0
        texts = [
            str(self.tokenizer.decode([t for t in r if t not in self.eos_ids], skip_special_tokens=True))
            for r in replies
        ]
        dev = acc.device
        rewards = torch.tensor(self.reward(prompts, texts), dtype=torch.float32, device=dev)  # (N,)
        gold = None
        if self.gold is not None:
            gold = torch.tensor(self.gold(prompts, texts), dtype=torch.float32, device=dev)  # (N,)
            if cfg.stop_on_gaming:
                self._keep_if_best(acc.reduce(gold.mean(), "mean").item(), step)
        seqs = [Sequence_(self.prompt_ids[i] + r, [0] * len(self.prompt_ids[i]) + [1] * len(r))
                for i, r in zip(rows, replies, strict=True)]  # fmt: skip
        lengths = torch.tensor([len(r) for r in replies], device=dev)
        width = int(lengths.max())
        mask = torch.arange(width, device=dev)[None, :] < lengths[:, None]  # (N, R)

        scored = self._score(seqs, mask)
        ref_logps = scored["ref_logps"]
        extra: dict[str, float] = {}
        if cfg.method == "grpo":
            advantages = obj.group_advantages(rewards.view(-1, cfg.group_size)).view(-1)  # (N,)
        else:
            old_logps, values = scored["old_logps"], scored["values"]
            beta = self.kl_ctl.value
            token_rewards = -beta * (old_logps - ref_logps) * mask  # (N, R): Ouyang et al. Eq. 2, per token
            last = (lengths - 1).unsqueeze(-1)  # (N, 1)
            token_rewards = token_rewards.scatter_add(1, last, rewards.unsqueeze(-1))
            advantages, returns = obj.gae(token_rewards, values, mask, cfg.gamma, cfg.lam)
            if cfg.whiten_advantages:
                advantages = obj.masked_whiten(advantages, mask)
            scored["returns"] = returns
            extra = {"kl_coef": beta, "returns": obj.masked_mean(returns, mask).item()}
        update = self._update(seqs, mask, advantages, scored)

        old = scored["old_logps"]
        kl = (obj.kl_k3(old, ref_logps) * mask).sum(-1)  # (N,) per reply, nats
        stats = {
            "reward": rewards.mean(),
            "reward_std": rewards.std() if len(rewards) > 1 else torch.zeros((), device=dev),
            "kl": kl.mean(),
            "entropy": obj.masked_mean(scored["entropy"], mask),
            "reply_tokens": lengths.float().mean(),
            "ended": torch.tensor([bool(r) and r[-1] in self.eos_ids for r in replies], device=dev).float().mean(),
        }
        if gold is not None:
            stats["gold"] = gold.mean()
        out: dict[str, Any] = {k: acc.reduce(v.detach().float(), "mean").item() for k, v in stats.items()}
        out.update(update)
        out.update(extra)
        out["sample_seconds"] = sample_seconds
        if cfg.method == "ppo":
            self.kl_ctl.update(out["kl"], len(rows) * self.world)
        if acc.is_main_process:
            self._samples(step + 1, prompts[: cfg.group_size], texts, rewards.tolist(), gold)
        return out

    def _forward(self, module: Any, seqs: Sequence[Sequence_], mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Log-probs, entropies and values (if any) of the reply tokens as (n, R) tensors, zero on padding."""
        batch = {k: v.to(self.acc.device) for k, v in collate(seqs, self.pad_id).items()}
        logps, entropy, values = module(**batch)
        out = {"logps": _unflatten(logps, mask), "entropy": _unflatten(entropy, mask)}
        if values is not None:
            out["values"] = _unflatten(values, mask)
        return out

    @torch.no_grad()
    def _score(self, seqs: Sequence[Sequence_], mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reference log-probs and, when the update cannot provide them itself, the sampling policy's log-probs,
        entropies and values, in micro-batches."""
        unwrapped: PolicyValue = self.acc.unwrap_model(self.policy)
        unwrapped.eval()
        parts: dict[str, list[torch.Tensor]] = {}
        step = self.cfg.micro_batch_size
        for lo in range(0, len(seqs), step):
            part, m = seqs[lo : lo + step], mask[lo : lo + step]
            with self.acc.autocast():
                if self.ref is not None:
                    ref = self._forward(self.ref, part, m)
                else:
                    with unwrapped.model.disable_adapter():
                        ref = self._forward(unwrapped, part, m)
                parts.setdefault("ref_logps", []).append(ref["logps"])
                if self.separate_old:
                    now = self._forward(unwrapped, part, m)
                    parts.setdefault("old_logps", []).append(now["logps"])
                    parts.setdefault("entropy", []).append(now["entropy"])
                    if "values" in now:
                        parts.setdefault("values", []).append(now["values"])
        return {k: torch.cat(v) for k, v in parts.items()}

    def _update(
        self, seqs: Sequence[Sequence_], mask: torch.Tensor, advantages: torch.Tensor, scored: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        """`epochs` passes over the replies in `n_mini` mini-batches, each one optimizer step accumulated over
        micro-batches. Losses are normalised by the global count of replies (GRPO) or reply tokens (PPO) in the
        mini-batch, so that N processes step as one process would."""
        cfg, acc = self.cfg, self.acc
        n = len(seqs)
        if not self.separate_old:
            scored["old_logps"] = torch.zeros_like(mask, dtype=torch.float32)
            scored["entropy"] = torch.zeros_like(mask, dtype=torch.float32)
        minis = [idx.tolist() for idx in torch.arange(n).tensor_split(self.n_mini)]
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        grad_norms: list[float] = []
        self.policy.train()
        for _ in range(cfg.epochs):
            for mini in minis:
                units_local = float(len(mini)) if cfg.method == "grpo" else float(mask[mini].sum())
                units = acc.reduce(torch.tensor(units_local, device=acc.device), "sum").item()
                micros = [mini[i : i + cfg.micro_batch_size] for i in range(0, len(mini), cfg.micro_batch_size)]
                for k, micro in enumerate(micros):
                    sync = k == len(micros) - 1
                    with nullcontext() if sync else acc.no_sync(self.policy):
                        loss_sum, metrics, count = self._loss([seqs[i] for i in micro], micro, mask, advantages, scored)
                        acc.backward(loss_sum * (self.world / units))
                    for key, value in metrics.items():
                        sums[key] = sums.get(key, 0.0) + value * count
                        weights[key] = weights.get(key, 0.0) + count
                norm = acc.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm or float("inf"))
                grad_norms.append(float(norm))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        out = {k: acc.reduce(torch.tensor(sums[k] / weights[k], device=acc.device), "mean").item() for k in sums}
        out["grad_norm"] = sum(grad_norms) / len(grad_norms)
        return out

    def _loss(
        self,
        part: Sequence[Sequence_],
        rows: list[int],
        mask: torch.Tensor,
        advantages: torch.Tensor,
        scored: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, float], float]:
        """(summed loss over the micro-batch's units, its metrics, its unit count)."""
        cfg = self.cfg
        m = mask[rows]
        width = int(m.sum(-1).max())
        m = m[:, :width]
        now = self._forward(self.policy, part, m)
        logps = now["logps"]
        if not self.separate_old:
            # first and only pass over this batch: the policy now is the policy that sampled it
            scored["old_logps"][rows, :width] = logps.detach()
            scored["entropy"][rows, :width] = now["entropy"]
        old = scored["old_logps"][rows, :width]
        ref = scored["ref_logps"][rows, :width]
        if cfg.method == "grpo":
            losses, metrics = obj.grpo_loss(
                logps, old, ref, advantages[rows], m, clip_eps=cfg.clip_eps, beta=cfg.beta
            )  # (n,)
            count = float(len(rows))
            out = {"loss": losses.detach().mean().item(), "clip_fraction": metrics["clip_fraction"].mean().item()}
            return losses.sum(), out, count
        loss, metrics = obj.ppo_loss(
            logps,
            old,
            advantages[rows, :width],
            now["values"],
            scored["values"][rows, :width],
            scored["returns"][rows, :width],
            m,
            clip_eps=cfg.clip_eps,
            value_clip=cfg.value_clip,
            vf_coef=cfg.vf_coef,
        )
        count = float(m.sum())
        out = {"loss": loss.item(), **{k: v.item() for k, v in metrics.items()}}
        return loss * count, out, count

    # ---- the best weights by gold ------------------------------------------------------------

    @property
    def _best_dir(self) -> Path:
        return self.out / "best"

    def _keep_if_best(self, gold: float, step: int) -> None:
        """Snapshot the trainable weights that sampled this step's replies when their gold is the best yet."""
        best = self.state["best_gold"]
        if best is not None and gold <= best:
            return
        self.state["best_gold"], self.state["best_updates"] = gold, step
        if not self.acc.is_main_process:
            return
        unwrapped = self.acc.unwrap_model(self.policy)
        weights = {k: p.detach().cpu().clone() for k, p in unwrapped.named_parameters() if p.requires_grad}
        tmp = self.out / ".best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(weights, tmp / "weights.pt")
        (tmp / "best.json").write_text(json.dumps({"gold": gold, "updates": step, "step": step + 1}), encoding="utf-8")
        shutil.rmtree(self._best_dir, ignore_errors=True)
        os.replace(tmp, self._best_dir)

    def _load_best(self) -> int:
        self.acc.wait_for_everyone()
        weights = load_tensors(self._best_dir / "weights.pt")
        self.acc.unwrap_model(self.policy).load_state_dict(weights, strict=False)
        return int(json.loads((self._best_dir / "best.json").read_text(encoding="utf-8"))["updates"])

    # ---- persistence --------------------------------------------------------------------------

    def _samples(
        self, step: int, prompts: Sequence[Prompt], texts: Sequence[str], rewards: list[float], gold: Any
    ) -> None:
        """One prompt's group of replies per step, for reading what the policy learnt."""
        with (self.out / "samples.jsonl").open("a", encoding="utf-8") as f:
            for k, p in enumerate(prompts):
                row = {"step": step, "prompt_id": p.id, "reply": texts[k], "reward": rewards[k]}
                if gold is not None:
                    row["gold"] = float(gold[k])
                f.write(json.dumps(row) + "\n")

    def _save(self, step: int) -> None:
        """Policy (and value head), optimizer, RNG states, the scheduler, the KL coefficient and the monitor's
        state (see `alignkit.train.checkpoint`)."""
        self.run_dir.save(step, self.scheduler, {"kl_coef": self.kl_ctl.value, **self.state})

    def _resume(self) -> int:
        logs = ("metrics.jsonl", "samples.jsonl")
        state = self.run_dir.resume(self.scheduler, logs)
        if state is None:
            if self.run_dir.is_main:
                shutil.rmtree(self._best_dir, ignore_errors=True)
            return 0
        step = int(state.pop("step"))
        self.kl_ctl.value = float(state.pop("kl_coef"))
        self.state.update(state)
        self.acc.wait_for_everyone()
        for row in self.run_dir.logged():
            self.monitor.add(MonitorPoint(row["step"], row["kl"], row["reward"], row.get("gold")), warn=False)
        return step


def _unflatten(flat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(M,) values of the masked positions, in row-major order, back into a (n, R) tensor, zero elsewhere."""
    return torch.zeros(mask.shape, dtype=flat.dtype, device=flat.device).masked_scatter(mask.bool(), flat)


def rl_train(
    model: str,
    prompts: str | Path | list[Prompt],
    out_dir: str | Path,
    cfg: RLConfig,
    reward: str | Reward,
    gold: str | Reward | None = None,
    progress: Progress | None = None,
) -> RLResult:
    """Train `model` online with `cfg.method` (grpo or ppo) on `prompts` (a suite name, a prompts file or a
    list) to maximise `reward` (a spec for `parse_reward`, or any callable); `gold`, if given, is the independent
    signal the specification-gaming monitor tracks. Rerun the same call to resume after a kill."""
    return RLTrainer(model, prompts, out_dir, cfg, reward, gold).run(progress)
