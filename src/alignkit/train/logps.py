"""Per-sequence log-probabilities with logits only where a loss needs them.

A causal LM's head turns every position into a vocabulary-sized row (49k floats for SmolLM2), and the
log-softmax and its gradient over them cost as much memory as the rest of the step. Prompt and padding
positions carry no loss, so the decoder runs over the whole sequence and the head only over the
positions whose next token is trained.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def decoder_and_head(model: Any) -> tuple[nn.Module, nn.Module]:
    """The transformer body and the LM head of a (possibly peft-wrapped) causal LM. LoRA layers are
    injected in place, so calling the body directly still runs them."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_decoder(), inner.get_output_embeddings()


class SequenceLogps(nn.Module):
    """Wraps a causal LM so that `forward` returns, per row, the summed log-probability of the trained
    tokens and their count. Distributed wrappers (DDP, FSDP, DeepSpeed) wrap this module, so its
    forward is the one they see."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (sum of trained-token logps (N,), trained-token count (N,), per-token logps (M,)) where
        M is the number of trained tokens in the batch, in row-major order."""
        body, head = decoder_and_head(self.model)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (N, T, H)
        targets = loss_mask[:, 1:].bool()  # (N, T-1): position t predicts token t+1
        picked = hidden[:, :-1][targets]  # (M, H)
        logits = head(picked).float()  # (M, V)
        next_ids = input_ids[:, 1:][targets]  # (M,)
        token_logps = logits.log_softmax(-1).gather(-1, next_ids.unsqueeze(-1)).squeeze(-1)  # (M,)
        rows = targets.nonzero()[:, 0]  # (M,)
        n = input_ids.shape[0]
        sums = torch.zeros(n, dtype=token_logps.dtype, device=token_logps.device).index_add(0, rows, token_logps)
        counts = targets.sum(-1)
        return sums, counts, token_logps


class SequenceRewards(nn.Module):
    """Wraps a sequence-classification model: forward returns one scalar reward per row (N,), read at
    the last real token (the model finds it from the pad id; rows are right-padded)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (N, 1)
        rewards: torch.Tensor = logits[:, 0].float()
        return rewards
