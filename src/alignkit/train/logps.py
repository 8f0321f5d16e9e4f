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
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        owner: torch.Tensor | None = None,
        counts: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (sum of trained-token logps (N,), trained-token count (N,), per-token logps (M,)) where
        M is the number of trained tokens in the batch.

        Rows of separate sequences (`collate`): `loss_mask` marks the trained tokens, row-major. Packed
        rows (`pack_pairs`, `pack_sequences`): `source`, `target`, `owner` and `counts` say which
        positions predict which tokens of which sequence; `attention_mask` is 4D (`pack_pairs`) or None
        (`pack_sequences`: restarting `position_ids` mark the sequences)."""
        body, head = decoder_and_head(self.model)
        # no KV cache: training needs none, and with one transformers ignores packed position ids
        hidden = body(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        if loss_mask is not None:
            trained = loss_mask[:, 1:].bool()  # (N, T-1): position t predicts token t+1
            picked = hidden[:, :-1][trained]  # (M, H)
            target = input_ids[:, 1:][trained]  # (M,)
            owner = trained.nonzero()[:, 0]  # (M,)
            counts = trained.sum(-1)
        else:
            assert source is not None and target is not None and owner is not None and counts is not None
            picked = hidden.flatten(0, 1)[source]
        logits = head(picked).float()  # (M, V)
        token_logps = logits.log_softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (M,)
        sums = torch.zeros(counts.shape[0], dtype=token_logps.dtype, device=token_logps.device)
        return sums.index_add(0, owner, token_logps), counts, token_logps


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
