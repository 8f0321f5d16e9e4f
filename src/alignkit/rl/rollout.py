"""Rollouts: sampling replies from the live policy, and the policy's view of them (log-probs, entropy, values).

The seam for faster samplers is `Sampler`: the loop hands it the policy and the prompts' token ids and gets reply
token ids back. `HFSampler` calls transformers' `generate` on the policy being trained, so it always samples the
current weights. A vLLM sampler would keep an `LLM` engine next to the trainer, load the policy's (merged) weights
into it after every update and sample there; nothing else changes, because the update recomputes every
log-probability itself from the token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from alignkit.train.logps import decoder_and_head


class Sampler(Protocol):
    def sample(
        self, policy: Any, prompt_ids: Sequence[list[int]], max_new_tokens: int, temperature: float
    ) -> list[list[int]]:
        """One reply per prompt row, as token ids cut after the first end-of-turn token (kept), sampled from
        softmax(logits / temperature) with no top-k or top-p, since the update takes log-probabilities of exactly
        that distribution."""
        ...


class HFSampler:
    """transformers `generate` on the live policy: left-padded batches, longest first."""

    def __init__(self, eos_ids: list[int], pad_id: int, batch_size: int) -> None:
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.batch_size = batch_size

    @torch.no_grad()
    def sample(
        self, policy: Any, prompt_ids: Sequence[list[int]], max_new_tokens: int, temperature: float
    ) -> list[list[int]]:
        from transformers import GenerationConfig

        # every field that a model's generation_config.json or transformers' defaults could fill in (top_k=50 among
        # them) is pinned, so that sampling is from the plain tempered softmax
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            min_p=None,
            typical_p=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            num_beams=1,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids,
        )
        device = next(policy.parameters()).device
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
        out: list[list[int]] = [[] for _ in prompt_ids]
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            width = max(len(prompt_ids[i]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)  # (B, P) left-padded
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(prompt_ids[i]) :] = torch.tensor(prompt_ids[i])
                mask[row, width - len(prompt_ids[i]) :] = 1
            seqs = policy.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config)
            new = seqs[:, width:].tolist()  # (B, N)
            for row, i in enumerate(idx):
                out[i] = cut_at_eos(new[row], self.eos_ids)
        return out


def cut_at_eos(tokens: list[int], eos_ids: Sequence[int]) -> list[int]:
    """The tokens up to and including the first end-of-turn token (all of them if there is none)."""
    for k, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: k + 1]
    return tokens


class PolicyValue(nn.Module):
    """A causal LM (possibly peft-wrapped) with an optional scalar value head on its last hidden state.

    `forward` takes right-padded prompt + reply rows and a loss mask that is 1 on the reply tokens, and returns, for
    the M reply tokens of the batch in row-major order: their log-probabilities at `temperature`, the entropy of
    the distribution each was drawn from, and the value of the state before each (or None without a head). As in
    `SequenceLogps`, the LM head runs only at those M positions. Distributed wrappers wrap this module."""

    def __init__(self, model: Any, value_head: bool, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.value_head: nn.Linear | None = None
        if value_head:
            hidden = int(model.config.hidden_size)
            self.value_head = nn.Linear(hidden, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        body, head = decoder_and_head(self.model)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (N, T, H)
        targets = loss_mask[:, 1:].bool()  # (N, T-1): position t predicts token t+1
        picked = hidden[:, :-1][targets]  # (M, H)
        logps_all = (head(picked).float() / self.temperature).log_softmax(-1)  # (M, V)
        token_logps = logps_all.gather(-1, input_ids[:, 1:][targets].unsqueeze(-1)).squeeze(-1)  # (M,)
        with torch.no_grad():
            entropy = -(logps_all.exp() * logps_all).sum(-1)  # (M,)
        values = None
        if self.value_head is not None:
            values = self.value_head(picked.float()).squeeze(-1)  # (M,)
        return token_logps, entropy, values
