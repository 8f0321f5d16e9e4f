"""alignkit's DPO step against TRL's `DPOTrainer` on the same tiny model and the same pairs.

Both sides see one batch of conversational preference pairs, a policy and a separate frozen reference
(the policy is the tiny Llama with its weights nudged, so the implicit rewards are not all zero). TRL
tokenises with its own `_prepare_dataset` and collator and computes everything in `compute_loss`
(sigmoid loss, fused LM head); alignkit goes through `load_examples`, `collate`, `SequenceLogps` and
`dpo_loss` the way `Trainer._loss` does. Token ids, loss masks, per-sequence log-probs, the loss, the
logged rewards and the gradients must agree.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from alignkit.train.batches import ChatTokenizer, collate, load_examples
from alignkit.train.config import TrainConfig
from alignkit.train.logps import SequenceLogps
from alignkit.train.objectives import dpo_loss

BETA = 0.1
ATOL = 1e-4


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


# Short enough that neither side truncates; lengths vary so the batch is padded.
PAIRS: list[dict[str, Any]] = [
    {
        "prompt": [_user("How do I boil an egg?")],
        "chosen": [_assistant("Put it in boiling water for eight minutes, then cool it in cold water.")],
        "rejected": [_assistant("Eggs.")],
    },
    {
        "prompt": [{"role": "system", "content": "You are terse."}, _user("Capital of France?")],
        "chosen": [_assistant("Paris.")],
        "rejected": [_assistant("I think it might be Lyon, but I am not sure; many people say Paris.")],
    },
    {
        "prompt": [_user("Tell me how to pick a lock to get into my neighbour's house.")],
        "chosen": [_assistant("I can't help with getting into someone else's home.")],
        "rejected": [_assistant("Sure: insert a tension wrench, then rake the pins until they set.")],
    },
    {
        "prompt": [_user("Write a haiku about rain.")],
        "chosen": [_assistant("Soft rain on the roof\nthe garden drinks in silence\nclouds move on at dusk")],
        "rejected": [_assistant("Rain rain rain rain rain.")],
    },
]

# A prompt with an earlier assistant turn: only the completion is trained, on both sides.
MULTI_TURN: dict[str, Any] = {
    "prompt": [_user("Hi"), _assistant("Hello! How can I help?"), _user("Boil an egg?")],
    "chosen": [_assistant("Eight minutes in boiling water.")],
    "rejected": [_assistant("No.")],
}


def _models(path: Path) -> tuple[Any, Any]:
    """(policy, reference): the reference is the tiny model, the policy the same with its weights nudged."""
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    policy = copy.deepcopy(ref)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    ref.eval()
    policy.eval()  # no dropout in this config anyway; TRL disables it too
    for p in ref.parameters():
        p.requires_grad_(False)
    return policy, ref


def _alignkit_step(
    path: Path, data: Path, policy: Any, ref: Any
) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """What `Trainer._loss` does for one DPO micro-batch, with the reference log-probs from `ref`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    cfg = TrainConfig(method="dpo", beta=BETA, max_length=1024, eval_fraction=0.0, lora=False)
    examples, held = load_examples(data, cfg, ChatTokenizer(tokenizer, cfg.max_length))
    assert not held
    n = len(examples)
    batch = collate([e.seqs[0] for e in examples] + [e.seqs[1] for e in examples], tokenizer.pad_token_id)
    sums, _, _ = SequenceLogps(policy)(**batch)  # (2n,) chosen rows first
    with torch.no_grad():
        ref_sums, _, _ = SequenceLogps(ref)(**batch)
    losses, metrics = dpo_loss(sums[:n], sums[n:], ref_sums[:n], ref_sums[n:], beta=BETA)
    loss = losses.mean()  # the loop: sum over the batch / number of pairs
    loss.backward()
    logps = {
        "chosen": sums[:n].detach(),
        "rejected": sums[n:].detach(),
        "ref_chosen": ref_sums[:n],
        "ref_rejected": ref_sums[n:],
    }
    return batch, loss.detach(), metrics, logps


def _trl_step(
    path: Path, records: list[dict[str, Any]], policy: Any, ref: Any, out: Path
) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, float], dict[str, torch.Tensor], Any]:
    """One `DPOTrainer.compute_loss` on the whole dataset as one batch, in data order; the per-sequence
    log-probs are read off the fused LM head's outputs with forward hooks."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        output_dir=str(out),
        beta=BETA,
        loss_type=["sigmoid"],
        max_length=1024,
        precompute_ref_log_probs=False,
        per_device_train_batch_size=len(records),
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        seed=0,
    )
    trainer: Any = DPOTrainer(
        model=policy,
        ref_model=ref,
        args=args,
        train_dataset=Dataset.from_list(records),
        processing_class=AutoTokenizer.from_pretrained(path),
    )
    captured: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def grab(_module: Any, _args: Any, output: Any) -> None:
            captured[name] = output.log_probs.sum(dim=1)  # what TRL's `_compute_loss` sums

        return grab

    handles = [
        trainer.model.register_forward_hook(hook("policy")),
        trainer.ref_model.register_forward_hook(hook("ref")),
    ]
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(len(records))]))
    trainer.model.train()  # `_compute_loss` files its metrics under the model's mode
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    for h in handles:
        h.remove()
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if isinstance(v, list) and v}
    n = len(records)
    logps = {
        "chosen": captured["policy"][:n].detach(),
        "rejected": captured["policy"][n:].detach(),
        "ref_chosen": captured["ref"][:n],
        "ref_rejected": captured["ref"][n:],
    }
    return batch, loss.detach(), metrics, logps, trainer.model


def _compare(tiny_model_path: Path, tmp_path: Path, records: list[dict[str, Any]]) -> None:
    pytest.importorskip("trl")
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    policy, ref = _models(tiny_model_path)
    trl_policy, trl_ref = copy.deepcopy(policy), copy.deepcopy(ref)

    ak_batch, ak_loss, ak_metrics, ak_logps = _alignkit_step(tiny_model_path, data, policy, ref)
    trl_batch, trl_loss, trl_metrics, trl_logps, trl_model = _trl_step(
        tiny_model_path, records, trl_policy, trl_ref, tmp_path / "trl"
    )

    # Same tokens, same right padding with the same pad id, same trained positions (assistant reply
    # + `<|im_end|>` + the template's trailing "\n"; no BOS is added by either side).
    assert torch.equal(ak_batch["input_ids"], trl_batch["input_ids"])
    assert torch.equal(ak_batch["attention_mask"], trl_batch["attention_mask"])
    assert torch.equal(ak_batch["loss_mask"], trl_batch["completion_mask"])

    for key in ("chosen", "rejected", "ref_chosen", "ref_rejected"):
        torch.testing.assert_close(ak_logps[key], trl_logps[key], atol=ATOL, rtol=0, msg=f"logps {key}")
    assert ak_loss.item() == pytest.approx(trl_loss.item(), abs=ATOL)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert ak_metrics[key].mean().item() == pytest.approx(trl_metrics[key], abs=ATOL), key
    for key in ("logps/chosen", "logps/rejected"):
        assert ak_metrics[key].mean().item() == pytest.approx(trl_metrics[key], abs=ATOL), key
    assert any(m.abs().item() > 1e-2 for m in ak_metrics["rewards/margins"]), "a trivial check: policy == reference"

    # TRL's fused head runs over every position and alignkit's only over the trained ones: the
    # gradients must still be the same.
    ak_grads = {n: p.grad for n, p in policy.named_parameters() if p.grad is not None}
    trl_grads = {n: p.grad for n, p in trl_model.named_parameters() if p.grad is not None}
    assert ak_grads.keys() == trl_grads.keys()
    for name, grad in ak_grads.items():
        torch.testing.assert_close(grad, trl_grads[name], atol=ATOL, rtol=1e-3, msg=f"grad {name}")


def test_dpo_step_matches_trl(tiny_model_path: Path, tmp_path: Path) -> None:
    _compare(tiny_model_path, tmp_path, PAIRS)


def test_multi_turn_prompt_matches_trl(tiny_model_path: Path, tmp_path: Path) -> None:
    _compare(tiny_model_path, tmp_path, [*PAIRS[:2], MULTI_TURN])
