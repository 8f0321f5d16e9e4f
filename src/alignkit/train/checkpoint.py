"""Checkpoints and export both training loops share: accelerate's state (model, optimizer, RNG) plus the scheduler and a
small JSON state, written to a temporary folder and renamed into place, then named in `latest`, so a kill
at any moment leaves the previous checkpoint whole. Everything is read back with `weights_only=True`: tensors
and plain Python values only, so a planted pickle in a run folder cannot run code."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from alignkit.errors import AlignkitError


def load_tensors(path: Path) -> Any:
    """A file written by `torch.save` holding tensors and plain Python values; anything else is refused unread."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        raise AlignkitError(f"{path}: holds more than tensors and plain values; not loading it") from None


def save_checkpoint(acc: Any, root: Path, step: int, scheduler: Any, state: dict[str, Any]) -> None:
    """Every process calls this (each saves its own RNG state); the main process renames and prunes."""
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)  # before the barrier: other ranks write their RNG state into it
    acc.wait_for_everyone()
    acc.save_state(str(tmp), safe_serialization=False)
    if acc.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "alignkit_scheduler.pt")
        (tmp / "alignkit_state.json").write_text(json.dumps({"step": step, **state}), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = root / "latest.tmp"
        pointer.write_text(final.name, encoding="utf-8")
        os.replace(pointer, root / "latest")
        for old in root.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def load_checkpoint(acc: Any, root: Path, scheduler: Any) -> dict[str, Any] | None:
    """Restore the latest checkpoint into `acc`'s prepared objects and `scheduler`; returns its JSON state
    (with `step`), or None when there is none."""
    pointer = root / "latest"
    if not pointer.exists():
        return None
    ckpt = root / pointer.read_text(encoding="utf-8").strip()
    acc.load_state(str(ckpt))
    scheduler.load_state_dict(load_tensors(ckpt / "alignkit_scheduler.pt"))
    state: dict[str, Any] = json.loads((ckpt / "alignkit_state.json").read_text(encoding="utf-8"))
    return state


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a run resumes from, so none is counted twice. A last line
    cut short by a kill is dropped too; a malformed line before it is an error."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    keep = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not (isinstance(row, dict) and isinstance(row.get("step"), int)):
            if number == len(lines):
                break
            raise AlignkitError(f"{path}:{number}: not a JSON object with a step")
        if row["step"] <= step:
            keep.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    os.replace(tmp, path)


def export_model(
    acc: Any, wrapper: Any, tokenizer: Any, out: Path, *, lora: bool, merge: bool
) -> tuple[Path | None, Path | None]:
    """(model dir, adapter dir) of the model held in `wrapper.model`. LoRA: the adapter as a PEFT folder and,
    with `merge`, the merged model; full fine-tuning: the model. Both are Hugging Face folders with the
    tokenizer; weights outside `wrapper.model` (a value head) are left out. Every process calls this."""
    acc.wait_for_everyone()
    state = acc.get_state_dict(wrapper)
    if not acc.is_main_process:
        return None, None
    model = acc.unwrap_model(wrapper).model
    state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    adapter_dir: Path | None = None
    if lora:
        adapter_dir = out / "adapter"
        model.save_pretrained(adapter_dir, state_dict=state)
        tokenizer.save_pretrained(adapter_dir)
        if not merge:
            return None, adapter_dir
        model = model.merge_and_unload()
        state = None
    model_dir = out / "model"
    model.save_pretrained(model_dir, state_dict=state)
    tokenizer.save_pretrained(model_dir)
    return model_dir, adapter_dir
