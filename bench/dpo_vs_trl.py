"""alignkit's DPO loop vs TRL's DPOTrainer: pairs per second and peak memory, full fine-tuning and LoRA.

Both train the same model on the same pairs with the same settings (batch 4 pairs, max length 256,
fp32 on the CPU, lr 5e-5 cosine with 10% warm-up, beta 0.1, sigmoid loss, grad clip 1.0, one pass, LoRA
r 16 / alpha 32 / all-linear). `--device cuda --dtype bf16 --batch-size 16` runs both sides on the GPU
with bf16 autocast over fp32 weights at 16 pairs a batch. Each run is its own subprocess, so its peak
RSS (and on a GPU its peak allocated GPU memory) is its own. What is timed:

- TRL: `trainer.train()` (reference log-probs are computed inside every step; for full fine-tuning
  TRL keeps a second copy of the model as the reference).
- alignkit: `Trainer.run()` minus its end-of-run checkpoint and model export, so the reference pass
  it makes before training is counted. Model loading and tokenisation are excluded on both sides.

Peak RSS is the process's high-water mark (VmHWM): `peak_rss_mb` over the whole child, and
`train_peak_rss_mb` from the end of loading to the end of training (the mark is reset in between).
CPU seconds (all threads, same window) are reported next to wall time: on a shared machine they
move less with the load. With `--repeats`, the order alternates and the fastest run of each counts.

The data: `--data`, else `runs/curate-slcai/preferences.jsonl` if it exists, topped up to `--pairs`
with pairs built from the default suite (refusals, helpful replies, compliant replies, lectures of
20-200 tokens), so lengths vary and padding is part of what is measured.

    .venv/bin/python bench/dpo_vs_trl.py [--pairs 64] [--modes full,lora] [--repeats 1] [--data prefs.jsonl]
                                         [--packing auto|pairs|positions|off] [--device cpu|cuda]
                                         [--dtype fp32|bf16] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH = 4
MAX_LENGTH = 256
LR = 5e-5
BETA = 0.1
WARMUP = 0.1
LORA_R, LORA_ALPHA = 16, 32
CURATED = Path("runs/curate-slcai/preferences.jsonl")

# Benign-sounding filler: the bench measures tokens, not what they say.
HELPFUL = [
    "Here is a short answer.",
    "The main idea is simple once you see the pieces.",
    "First, think about what you want to achieve and what you already have.",
    "Most people start with the basics and build up from there.",
    "A good rule of thumb is to check each step before moving on.",
    "If something goes wrong, go back one step and try again.",
    "There are a few common approaches, and each has trade-offs.",
    "The history of the topic goes back a long way, with many contributors.",
    "In practice, small and steady changes work better than big jumps.",
    "You can find more detail in any introductory book on the subject.",
    "It helps to write down what you observe so you can compare later.",
    "Experts disagree on some points, but the core facts are well established.",
]
COMPLIANT = [
    "Sure, here is an overview of how people usually go about it.",
    "Step one is to gather what you need without drawing attention.",
    "Step two is to pick a time when nobody is around.",
    "Be careful to avoid leaving any trace behind.",
    "Many people get caught at this stage, so plan it in advance.",
    "Afterwards, make sure nothing connects the result back to you.",
    "This works best if you keep it to yourself and tell no one.",
    "If you need more detail on any step, just ask and I will expand on it.",
]
LECTURE = [
    "I'm sorry, but I can't help with that request.",
    "Questions like this can be sensitive, and I want to be careful.",
    "Please consider speaking to a qualified professional instead.",
    "There are many resources available that can give you reliable guidance.",
    "It is important to think about the consequences of any action.",
    "I would encourage you to reflect on why you are asking this.",
]
GENERIC_REFUSAL = "I can't help with that, but I'm happy to help with something else."


def _text(pool: list[str], tokens: int, rng: random.Random, tok: Any) -> str:
    """Sentences from `pool` until about `tokens` tokens."""
    parts: list[str] = []
    while len(tok(" ".join(parts), add_special_tokens=False)["input_ids"]) < tokens:
        parts.append(rng.choice(pool))
    ids = tok(" ".join(parts), add_special_tokens=False)["input_ids"][:tokens]
    return str(tok.decode(ids)).strip()


def build_pairs(n: int, seed: int, tok: Any) -> list[dict[str, Any]]:
    """`n` pairs from the default suite: harmful prompts prefer the constitution's refusal over a
    compliant reply (60-200 tokens); benign ones a helpful reply (20-160 tokens) over an over-refusing
    lecture (40-200 tokens)."""
    from alignkit.constitution import load_constitution
    from alignkit.suites import load_suite

    rng = random.Random(seed)
    prompts = [p for p in load_suite("default") if p.text]
    rng.shuffle(prompts)
    constitution = load_constitution("default")
    out = []
    for i in range(n):
        p = prompts[i % len(prompts)]
        if p.label == "harmful":
            chosen = constitution.refusal_for(p.category or "") or GENERIC_REFUSAL
            rejected = _text(COMPLIANT, rng.randint(60, 200), rng, tok)
        else:
            chosen = _text(HELPFUL, rng.randint(20, 160), rng, tok)
            rejected = _text(LECTURE, rng.randint(40, 200), rng, tok)
        out.append(
            {
                "prompt": [{"role": "user", "content": p.text}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    return out


def collect_pairs(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """`--pairs` pairs rounded down to whole batches, so both trainers take the same steps: from
    `--data`, else the curated preferences (if there are any) topped up with built ones."""
    n = args.pairs - args.pairs % args.batch_size
    if args.data is not None:
        pairs = conversational(args.data)
        pairs = pairs[: min(n, len(pairs) - len(pairs) % args.batch_size)]
        return pairs, f"{len(pairs)} pairs from {args.data}"
    pairs, sources = [], []
    if CURATED.exists():
        pairs = conversational(CURATED)[:n]
        sources.append(f"{len(pairs)} from {CURATED}")
    if len(pairs) < n:
        from transformers import AutoTokenizer

        from alignkit.models import resolve

        built = build_pairs(n - len(pairs), args.seed, AutoTokenizer.from_pretrained(resolve(args.model)))
        pairs += built
        sources.append(f"{len(built)} built from the default suite and constitution")
    return pairs, ", ".join(sources)


def conversational(path: Path) -> list[dict[str, Any]]:
    """The file as TRL conversational records, read by alignkit's loader so both sides see the same
    messages (a string prompt would otherwise skip the chat template in TRL)."""
    from alignkit.data import load_preferences

    return [
        {"prompt": list(p.prompt), "chosen": list(p.chosen), "rejected": list(p.rejected)}
        for p in load_preferences(path)
    ]


# ---- peak memory ----------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: 5 > /proc/self/clear_refs), and the GPU's peak allocation."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def gpu_peak_mb() -> float | None:
    """Peak GPU memory allocated by torch since the last reset (None off the GPU)."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


# ---- the two children -----------------------------------------------------------------------


def child_alignkit(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from alignkit.train.config import TrainConfig
    from alignkit.train.loop import Trainer

    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        method="dpo",
        lora=args.mode == "lora",
        lora_r=LORA_R,
        lora_alpha=LORA_ALPHA,
        lora_target_modules="all-linear",
        learning_rate=LR,
        scheduler="cosine",
        warmup_ratio=WARMUP,
        epochs=1,
        batch_size=args.batch_size,
        max_length=MAX_LENGTH,
        beta=BETA,
        eval_fraction=0.0,
        save_every=10**9,
        log_every=10**9,
        threads=args.threads,
        bf16=args.dtype == "bf16",
        merge=False,
        seed=0,
        packing=args.packing,
    )
    # a fresh folder: an existing one would make the trainer resume instead of train
    out = Path(tempfile.mkdtemp(prefix=f"alignkit-{args.mode}-", dir=args.workdir))
    t0 = time.perf_counter()
    trainer = Trainer(args.model, args.data, out, cfg)
    load_s = time.perf_counter() - t0
    load_peak = peak_rss_mb()
    resettable = reset_peak()

    spans: dict[str, float] = {}
    marks: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def call(*a: Any, **k: Any) -> Any:
            marks.setdefault(f"peak_before_{name}", peak_rss_mb())
            s, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spans[name] = spans.get(name, 0.0) + time.perf_counter() - s
                spans[f"{name}_cpu"] = spans.get(f"{name}_cpu", 0.0) + time.process_time() - c

        return call

    # instance attributes shadow the methods: time the parts that are not training
    trainer._reference = timed("reference", trainer._reference)  # type: ignore[method-assign]
    trainer.run_dir.save = timed("checkpoint", trainer.run_dir.save)  # type: ignore[method-assign]
    trainer.run_dir.export = timed("export", trainer.run_dir.export)  # type: ignore[method-assign]
    t1, c1 = time.perf_counter(), time.process_time()
    result = trainer.run()
    run_s, run_cpu = time.perf_counter() - t1, time.process_time() - c1
    train_peak = peak_rss_mb()
    seconds = run_s - spans.get("checkpoint", 0.0) - spans.get("export", 0.0)
    cpu_seconds = run_cpu - spans.get("checkpoint_cpu", 0.0) - spans.get("export_cpu", 0.0)
    summary = json.loads((out / "train.json").read_text())
    shutil.rmtree(out)
    return {
        "trainer": "alignkit",
        "mode": args.mode,
        "pairs": result.examples_seen,
        "steps": result.steps,
        "seconds": seconds,
        "pairs_per_s": result.examples_seen / seconds,
        "cpu_seconds": cpu_seconds,
        "reference_seconds": spans.get("reference", 0.0),
        "reference_cpu_seconds": spans.get("reference_cpu", 0.0),
        "step_seconds": result.train_seconds,
        "step_pairs_per_s": result.examples_seen / result.train_seconds,
        "checkpoint_seconds": spans.get("checkpoint", 0.0),
        "export_seconds": spans.get("export", 0.0),
        "run_seconds": run_s,
        "train_json_seconds": summary["seconds"],
        "train_json_train_seconds": summary["train_seconds"],
        "load_seconds": load_s,
        "final_loss": result.final_metrics.get("loss"),
        "load_peak_rss_mb": load_peak,
        "train_peak_rss_mb": train_peak if resettable else None,
        "peak_rss_before_checkpoint_mb": marks.get("peak_before_checkpoint"),
        "peak_rss_mb": max(load_peak, train_peak),
        "gpu_peak_mb": gpu_peak_mb(),
        "device": str(trainer.acc.device),
        "packing": trainer.packing,
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }


def child_trl(args: argparse.Namespace) -> dict[str, Any]:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from alignkit.models import resolve

    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    path = resolve(args.model)
    config = DPOConfig(
        output_dir=str(Path(args.workdir) / f"trl-{args.mode}"),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        num_train_epochs=1,
        learning_rate=LR,
        lr_scheduler_type="cosine",
        warmup_steps=WARMUP,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=BETA,
        loss_type=["sigmoid"],
        max_length=MAX_LENGTH,
        precompute_ref_log_probs=False,
        bf16=args.dtype == "bf16",
        gradient_checkpointing=False,
        use_cpu=args.device == "cpu",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=10**6,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    peft_config = None
    if args.mode == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    trainer: Any = DPOTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(conversational(Path(args.data))),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    load_s = time.perf_counter() - t0
    load_peak = peak_rss_mb()
    resettable = reset_peak()
    t1, c1 = time.perf_counter(), time.process_time()
    output = trainer.train()
    seconds, cpu_seconds = time.perf_counter() - t1, time.process_time() - c1
    train_peak = peak_rss_mb()
    pairs = trainer.state.global_step * args.batch_size
    return {
        "trainer": "trl",
        "mode": args.mode,
        "pairs": pairs,
        "steps": trainer.state.global_step,
        "seconds": seconds,
        "pairs_per_s": pairs / seconds,
        "cpu_seconds": cpu_seconds,
        "load_seconds": load_s,
        "mean_loss": output.training_loss,
        "optimizer": str(config.optim),
        "load_peak_rss_mb": load_peak,
        "train_peak_rss_mb": train_peak if resettable else None,
        "peak_rss_mb": max(load_peak, train_peak),
        "gpu_peak_mb": gpu_peak_mb(),
        "device": str(trainer.model.device),
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }


# ---- the parent -----------------------------------------------------------------------------


def run_child(trainer: str, mode: str, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    out = Path(workdir) / f"{trainer}-{mode}.json"
    cmd = [sys.executable, __file__, "--child", trainer, "--mode", mode, "--data", str(args.data)]
    cmd += ["--model", args.model, "--threads", str(args.threads), "--workdir", workdir, "--child-out", str(out)]
    cmd += ["--device", args.device, "--dtype", args.dtype, "--batch-size", str(args.batch_size)]
    cmd += ["--packing", args.packing]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)}
    env["ALIGNKIT_DEVICE"] = args.device  # alignkit's device rule (`alignkit.device.pick_device`)
    subprocess.run(cmd, check=True, env=env)
    row: dict[str, Any] = json.loads(out.read_text())
    return row


def machine() -> dict[str, Any]:
    import accelerate
    import peft
    import torch
    import transformers
    import trl

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
    }


def data_stats(path: Path, model: str) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from alignkit.models import resolve
    from alignkit.train.batches import ChatTokenizer, load_examples, packed_length
    from alignkit.train.config import TrainConfig

    tok = ChatTokenizer(AutoTokenizer.from_pretrained(resolve(model)), MAX_LENGTH)
    examples, _ = load_examples(path, TrainConfig(method="dpo", max_length=MAX_LENGTH, eval_fraction=0.0), tok)
    lengths = [len(s) for e in examples for s in e.seqs]
    replies = [sum(s.loss_mask) for e in examples for s in e.seqs]
    return {
        "pairs": len(examples),
        "sequence_tokens": {"min": min(lengths), "mean": sum(lengths) / len(lengths), "max": max(lengths)},
        "reply_tokens": {"min": min(replies), "mean": sum(replies) / len(replies), "max": max(replies)},
        "truncated_sequences": sum(n >= MAX_LENGTH for n in lengths),
        "packed_row_tokens_mean": sum(packed_length(e.seqs[0], e.seqs[1]) for e in examples) / len(examples),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=64, help="pairs to train on (rounded down to whole batches)")
    ap.add_argument(
        "--data", type=Path, default=None, help=f"preference JSONL (default: {CURATED} if it exists, topped up)"
    )
    ap.add_argument("--modes", default="full,lora")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="runs per trainer and mode; the best is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--packing",
        choices=["auto", "pairs", "positions", "off"],
        default="auto",
        help="alignkit's row layout (TrainConfig.packing; auto: shared-prompt pairs on the CPU, one row each on a GPU)",
    )
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both trainers run")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast over fp32 weights")
    ap.add_argument("--batch-size", type=int, default=BATCH, help="pairs per optimizer step, both trainers")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dpo_vs_trl.json"))
    ap.add_argument("--child", choices=["alignkit", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["full", "lora"], help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            ap.error("--device cuda: torch sees no GPU")

    if args.child:
        row = child_alignkit(args) if args.child == "alignkit" else child_trl(args)
        Path(args.child_out).write_text(json.dumps(row))
        return

    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="dpo-vs-trl-") as workdir:
        pairs, source = collect_pairs(args)
        args.data = Path(workdir) / "prefs.jsonl"
        args.data.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
        stats = data_stats(args.data, args.model)
        load_before = os.getloadavg()
        rows = []
        for r in range(args.repeats):
            # alternate who goes first: on a shared machine the load drifts over minutes
            order = ("alignkit", "trl") if r % 2 == 0 else ("trl", "alignkit")
            for mode in modes:
                for trainer in order:
                    print(f"--- {trainer} {mode} (repeat {r + 1}/{args.repeats})", flush=True)
                    row = run_child(trainer, mode, args, workdir)
                    row["repeat"] = r
                    rows.append(row)
                    print(f"    {row['pairs_per_s']:.3f} pairs/s, {row['peak_rss_mb']:.0f} MB", flush=True)
        load_after = os.getloadavg()

    summary: dict[str, Any] = {}
    head = ("pairs", "steps", "seconds", "pairs/s", "cpu s", "peak MB")
    print(f"\n{'mode':<5} {'trainer':<9} " + " ".join(f"{h:>{5 if i < 2 else 8}}" for i, h in enumerate(head)))
    for mode in modes:
        best: dict[str, dict[str, Any]] = {}
        for trainer in ("alignkit", "trl"):
            mine = [r for r in rows if r["trainer"] == trainer and r["mode"] == mode]
            top = max(mine, key=lambda r: r["pairs_per_s"])
            best[trainer] = {
                "pairs": top["pairs"],
                "steps": top["steps"],
                "seconds": top["seconds"],
                "pairs_per_s": top["pairs_per_s"],
                "pairs_per_s_all": [r["pairs_per_s"] for r in mine],
                "cpu_seconds": min(r["cpu_seconds"] for r in mine),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
            }
            if trainer == "alignkit":
                best[trainer]["reference_seconds"] = top["reference_seconds"]
                best[trainer]["step_pairs_per_s"] = top["step_pairs_per_s"]
            b = best[trainer]
            print(
                f"{mode:<5} {trainer:<9} {b['pairs']:>5} {b['steps']:>5} {b['seconds']:>8.1f} "
                f"{b['pairs_per_s']:>8.3f} {b['cpu_seconds']:>8.0f} {b['peak_rss_mb']:>8.0f}"
            )
        ours, theirs = best["alignkit"], best["trl"]
        ratio = {
            "pairs_per_s": ours["pairs_per_s"] / theirs["pairs_per_s"],
            "cpu_seconds": theirs["cpu_seconds"] / ours["cpu_seconds"],
            "peak_rss": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
        }
        if ours["steps"] != theirs["steps"]:
            print(f"warning: {mode}: alignkit took {ours['steps']} steps, TRL {theirs['steps']}")
        summary[mode] = {**best, "ratio": ratio}
        print(
            f"{mode:<5} {'ratio':<9} {'':>5} {'':>5} {'':>8} {ratio['pairs_per_s']:>7.2f}x "
            f"{ratio['cpu_seconds']:>7.2f}x {ratio['peak_rss']:>7.2f}x"
            f"   (alignkit: reference pass {ours['reference_seconds']:.0f}s, steps alone "
            f"{ours['step_pairs_per_s']:.3f} pairs/s)"
        )
    result = {
        "bench": "dpo_vs_trl",
        "model": args.model,
        "data": source,
        "data_stats": stats,
        "settings": {
            "batch_pairs": args.batch_size,
            "max_length": MAX_LENGTH,
            "device": args.device,
            "dtype": "float32" if args.dtype == "fp32" else "bf16 autocast, fp32 weights",
            "learning_rate": LR,
            "beta": BETA,
            "warmup_ratio": WARMUP,
            "scheduler": "cosine",
            "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "target_modules": "all-linear"},
            "threads": args.threads,
            "alignkit_packing": args.packing,
        },
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": load_after},
        "summary": summary,
        "runs": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
