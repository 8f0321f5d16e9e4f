"""Where models run: one rule for every backend, judge, rail and trainer.

The device asked for, else `$ALIGNKIT_DEVICE`, else CUDA when torch sees a GPU, else Apple's MPS, else
the CPU. bf16 on GPUs that support it, fp32 everywhere else (CPU kernels in bf16 are slower than fp32
for small models, and MPS bf16 support varies by OS version).
"""

from __future__ import annotations

import os

import torch

from alignkit.errors import AlignkitError

ENV_VAR = "ALIGNKIT_DEVICE"
DTYPE_ENV_VAR = "ALIGNKIT_DTYPE"
KINDS = ("cpu", "cuda", "mps")

_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _available(kind: str) -> bool:
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    return _mps_available()


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """The device to run on: `requested` ("cuda", "cuda:1", "cpu", "mps", "auto"), else the
    `ALIGNKIT_DEVICE` variable, else CUDA when available, else MPS, else the CPU."""
    source = "device"
    if requested is None or str(requested) in ("", "auto"):
        requested = os.environ.get(ENV_VAR) or None
        source = ENV_VAR
    if requested is None or str(requested) in ("", "auto"):
        for kind in ("cuda", "mps"):
            if _available(kind):
                return torch.device(kind)
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError, ValueError):
        raise AlignkitError(f"{source}: unknown device '{requested}' (use cpu, cuda, cuda:N, mps or auto)") from None
    if device.type not in KINDS:
        raise AlignkitError(f"{source}: unsupported device '{requested}' (use cpu, cuda, cuda:N, mps or auto)")
    if not _available(device.type):
        check = "torch.cuda.is_available()" if device.type == "cuda" else "torch.backends.mps.is_available()"
        raise AlignkitError(f"{source}: {device.type} requested but {check} is False")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise AlignkitError(f"{source}: {device} requested but torch sees {torch.cuda.device_count()} GPU(s)")
    return device


def pick_dtype(device: torch.device, requested: str | torch.dtype | None = None) -> torch.dtype:
    """`requested` ("bf16", "fp16", "fp32", "auto" or a torch dtype), else the `ALIGNKIT_DTYPE`
    variable, else bf16 on a CUDA GPU that supports it, else fp32."""
    if isinstance(requested, torch.dtype):
        return requested
    source = "dtype"
    if requested is None or requested == "auto":
        requested = os.environ.get(DTYPE_ENV_VAR) or None
        source = DTYPE_ENV_VAR
    if requested is not None and requested != "auto":
        if requested not in _DTYPES:
            raise AlignkitError(f"{source}: unknown dtype '{requested}' (use auto, bf16, fp16 or fp32)")
        return _DTYPES[requested]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """'bfloat16', 'float32', ...: how the posture card and `models info` print a dtype."""
    return str(dtype).removeprefix("torch.")


def on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with every tensor on the CPU, so that what is saved loads on any machine."""
    return {k: v.detach().cpu() for k, v in state.items()}
