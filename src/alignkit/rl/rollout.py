"""Rollouts: sampling replies from the live policy, and the policy's view of them (log-probs, entropy, values).

The seam for faster samplers is `Sampler`: the loop hands it the policy and the prompts' token ids and gets reply
token ids back. `HFSampler` calls transformers' `generate` on the policy being trained, so it always samples the
current weights. `VLLMSampler` keeps a vLLM engine beside the trainer on the same GPU, loads the policy's weights
(LoRA merged) into it before each sampling call and samples there, as OpenRLHF does; nothing else changes,
because the update recomputes every log-probability itself from the token ids.
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


def merged_weights(policy: Any) -> list[tuple[str, torch.Tensor]]:
    """The policy's weights as a plain causal LM's `state_dict` names them, with each LoRA layer's update
    (`get_delta_weight`) added to its base weight: what a vLLM engine's `load_weights` takes. Computed
    beside the model rather than merged into it and back, which would move the base weights by rounding
    at every sync."""
    if not hasattr(policy, "get_base_model"):
        return [(name, t.detach()) for name, t in policy.state_dict().items()]
    from peft.tuners.lora import LoraLayer

    base = policy.get_base_model()
    deltas: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer) and hasattr(module, "base_layer"):
                for adapter in module.active_adapters:
                    if adapter in module.lora_A:
                        delta = module.get_delta_weight(adapter)  # type: ignore[attr-defined]
                        key = f"{name}.weight"
                        deltas[key] = deltas[key] + delta if key in deltas else delta
        out = []
        for name, t in base.state_dict().items():
            if "lora_" in name:
                continue
            plain = name.replace(".base_layer.", ".")
            weight = t + deltas[plain].to(t.dtype) if ".base_layer." in name and plain in deltas else t
            out.append((plain, weight.detach()))
    return out


class VLLMSampler:
    """Replies sampled by a vLLM engine holding the policy's current weights, synced before every call.

    The engine shares the GPU with the trainer (`gpu_memory_utilization` is its share). Sampling is pinned to
    the plain tempered softmax (no top-k, top-p, min-p or penalties) and stops at the end-of-turn tokens,
    which are kept, as `HFSampler` does."""

    def __init__(self, model_path: str, eos_ids: list[int], gpu_memory_utilization: float = 0.3) -> None:
        from alignkit.backends.vllm import VLLMBackend

        self.engine = VLLMBackend(model_path, gpu_memory_utilization=gpu_memory_utilization)
        self.eos_ids = eos_ids
        self.syncs = 0
        """Weight loads so far (one per sampling call)."""

    @torch.no_grad()
    def sample(
        self, policy: Any, prompt_ids: Sequence[list[int]], max_new_tokens: int, temperature: float
    ) -> list[list[int]]:
        self.engine.load_weights(merged_weights(policy))
        self.syncs += 1
        params = self.engine._vllm.SamplingParams(
            n=1,
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=1.0,
            top_k=-1,
            min_p=0.0,
            repetition_penalty=1.0,
            stop_token_ids=list(self.eos_ids),
            seed=int(torch.randint(0, 2**31 - 1, ()).item()),  # follows the loop's seeding of each step
        )
        outputs = self.engine.llm.generate([{"prompt_token_ids": list(p)} for p in prompt_ids], params, use_tqdm=False)
        replies = []
        for out in outputs:
            first = out.outputs[0]
            tokens = list(first.token_ids)
            stopped = first.finish_reason == "stop" and (not tokens or tokens[-1] not in self.eos_ids)
            if stopped and first.stop_reason in self.eos_ids:  # the stop token itself, which vLLM may leave out
                tokens.append(int(first.stop_reason))
            elif stopped and first.stop_reason is None:  # the model's own end-of-sequence token
                tokens.append(self.eos_ids[0])
            replies.append(cut_at_eos(tokens, self.eos_ids))
        return replies


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
