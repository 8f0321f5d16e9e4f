"""The training objectives against hand-derived values (plain `math`), gradient directions, edge cases, and TRL."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor

from alignkit.train.objectives import (
    LOSS_PAPERS,
    bradley_terry_loss,
    dpo_loss,
    ipo_loss,
    kto_loss,
    orpo_loss,
    robust_dpo_loss,
    sft_loss,
    sft_token_mean,
    simpo_loss,
)


def t(*values: float, grad: bool = False) -> Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def neg_log_sigmoid(x: float) -> float:
    """-log sigmoid(x) = log(1 + e^-x)."""
    return math.log(1 + math.exp(-x))


# One pair used throughout: β = 0.1, policy logps -10 / -12, reference -11 / -11.
# h = (-10 + 11) - (-12 + 11) = 2, βh = 0.2.
PAIR = (t(-10.0), t(-12.0), t(-11.0), t(-11.0))


# --- SFT ---


def test_sft_loss_is_each_examples_mean_nll_over_masked_tokens() -> None:
    # row 0: tokens -1, -2 masked in -> NLL (1 + 2) / 2 = 1.5
    # row 1: token -0.5 masked in, the -inf padding masked out -> 0.5
    # row 2: nothing masked in -> 0 by definition
    token_logps = t(-1.0, -2.0, -3.0, -0.5, -math.inf, -math.inf, -4.0, -4.0, -4.0).view(3, 3)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    losses, metrics = sft_loss(token_logps, mask)
    assert losses.tolist() == pytest.approx([1.5, 0.5, 0.0])
    assert metrics["logps/mean_token"].tolist() == pytest.approx([-1.5, -0.5, 0.0])
    # corpus-level token mean: (1 + 2 + 0.5) / 3 tokens
    assert sft_token_mean(token_logps, mask).item() == pytest.approx(3.5 / 3)
    assert sft_token_mean(token_logps, torch.zeros(3, 3)).item() == 0.0


def test_sft_gradient_is_minus_one_over_n_on_masked_tokens_only() -> None:
    token_logps = t(-1.0, -2.0, -3.0, -0.5, -1.0, -1.0, -4.0, -4.0, -4.0, grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    losses, _ = sft_loss(token_logps.view(3, 3), mask)
    losses.sum().backward()
    assert token_logps.grad is not None
    assert token_logps.grad.view(3, 3).tolist() == [[-0.5, -0.5, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


# --- DPO, cDPO ---


def test_dpo_against_hand_computed_value() -> None:
    # loss = -log sigmoid(0.2) = log(1 + e^-0.2) = 0.598139; rewards β(π - ref) = 0.1 and -0.1
    losses, metrics = dpo_loss(*PAIR, beta=0.1)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(-0.2)), abs=1e-12)
    assert losses.item() == pytest.approx(0.598139, abs=1e-6)
    assert metrics["rewards/chosen"].item() == pytest.approx(0.1)
    assert metrics["rewards/rejected"].item() == pytest.approx(-0.1)
    assert metrics["rewards/margins"].item() == pytest.approx(0.2)
    assert metrics["rewards/accuracies"].item() == 1.0
    assert metrics["logps/chosen"].item() == -10.0
    assert metrics["logps/rejected"].item() == -12.0


def test_dpo_gradient_raises_chosen_and_lowers_rejected() -> None:
    chosen, rejected = t(-10.0, grad=True), t(-12.0, grad=True)
    losses, _ = dpo_loss(chosen, rejected, t(-11.0), t(-11.0), beta=0.1)
    losses.sum().backward()
    assert chosen.grad is not None and rejected.grad is not None
    # d/dπc [-log sigmoid(β h)] = -β sigmoid(-β h) = -0.1 sigmoid(-0.2) = -0.045017
    assert chosen.grad.item() == pytest.approx(-0.1 * sigmoid(-0.2))
    assert rejected.grad.item() == pytest.approx(0.1 * sigmoid(-0.2))


def test_cdpo_label_smoothing() -> None:
    # ε = 0.25: 0.75 (-log sigmoid(0.2)) + 0.25 (-log sigmoid(-0.2)) = 0.75 * 0.598139 + 0.25 * 0.798139 = 0.648139
    losses, _ = dpo_loss(*PAIR, beta=0.1, label_smoothing=0.25)
    expected = 0.75 * neg_log_sigmoid(0.2) + 0.25 * neg_log_sigmoid(-0.2)
    assert losses.item() == pytest.approx(expected, abs=1e-12)
    assert losses.item() == pytest.approx(0.648139, abs=1e-6)
    plain, _ = dpo_loss(*PAIR, beta=0.1)
    assert dpo_loss(*PAIR, beta=0.1, label_smoothing=0.0)[0].item() == plain.item()


def test_dpo_soft_labels_per_example() -> None:
    """A per-example ε gives, row by row, what the scalar ε gives; ε = 1 is the pair with its labels swapped."""
    pc, pr, rc, rr = t(-10.0, -5.0, -7.0), t(-12.0, -6.0, -3.0), t(-11.0, -5.5, -6.0), t(-11.0, -5.0, -4.0)
    eps = t(0.0, 0.3, 1.0)
    losses, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=eps)
    for i, e in enumerate([0.0, 0.3, 1.0]):
        row, _ = dpo_loss(pc[i : i + 1], pr[i : i + 1], rc[i : i + 1], rr[i : i + 1], beta=0.1, label_smoothing=e)
        assert losses[i].item() == pytest.approx(row.item(), abs=1e-12)
    swapped, _ = dpo_loss(pr[2:], pc[2:], rr[2:], rc[2:], beta=0.1)
    assert losses[2].item() == pytest.approx(swapped.item(), abs=1e-12)


def test_dpo_rejects_out_of_range_label_smoothing() -> None:
    with pytest.raises(ValueError):
        dpo_loss(*PAIR, label_smoothing=1.5)


# --- IPO ---


def test_ipo_against_hand_computed_value() -> None:
    # β = 0.1 -> target margin 1/(2β) = 5.
    # row 0 (averages): h = (-1.0 + 1.2) - (-1.5 + 1.2) = 0.5 -> (0.5 - 5)^2 = 20.25
    # row 1: h = (-1 + 4) - (-3 + 1) = 5 -> 0
    losses, metrics = ipo_loss(t(-1.0, -1.0), t(-1.5, -3.0), t(-1.2, -4.0), t(-1.2, -1.0), beta=0.1)
    assert losses.tolist() == pytest.approx([20.25, 0.0], abs=1e-12)
    assert metrics["rewards/margins"].tolist() == pytest.approx([0.05, 0.5])


def test_ipo_gradient_pushes_margin_towards_target() -> None:
    chosen = t(-1.0, grad=True)
    losses, _ = ipo_loss(chosen, t(-1.5), t(-1.2), t(-1.2), beta=0.1)
    losses.sum().backward()
    assert chosen.grad is not None
    # d/dπc (h - 5)^2 = 2 (0.5 - 5) = -9
    assert chosen.grad.item() == pytest.approx(-9.0)


# --- Robust DPO ---


def test_robust_dpo_against_hand_computed_value() -> None:
    # ε = 0.1: (-0.9 log sigmoid(0.2) + 0.1 log sigmoid(-0.2)) / 0.8
    #        = (0.9 * 0.598139 - 0.1 * 0.798139) / 0.8 = 0.573139
    losses, _ = robust_dpo_loss(*PAIR, beta=0.1, label_smoothing=0.1)
    expected = (0.9 * neg_log_sigmoid(0.2) - 0.1 * neg_log_sigmoid(-0.2)) / 0.8
    assert losses.item() == pytest.approx(expected, abs=1e-12)
    assert losses.item() == pytest.approx(0.573139, abs=1e-6)


def test_robust_dpo_with_no_noise_is_dpo() -> None:
    pc, pr, rc, rr = t(-10.0, -5.0), t(-12.0, -4.0), t(-11.0, -5.5), t(-11.0, -5.0)
    robust, robust_metrics = robust_dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=0.0)
    plain, plain_metrics = dpo_loss(pc, pr, rc, rr, beta=0.3)
    torch.testing.assert_close(robust, plain)
    for name, value in plain_metrics.items():
        torch.testing.assert_close(robust_metrics[name], value)
    with pytest.raises(ValueError):
        robust_dpo_loss(pc, pr, rc, rr, label_smoothing=0.5)


# --- SimPO ---


def test_simpo_against_hand_computed_value() -> None:
    # β = 2, gamma = 0.5, averages -0.8 / -1.2: 2 * 0.4 - 0.5 = 0.3 -> log(1 + e^-0.3) = 0.554355
    losses, metrics = simpo_loss(t(-0.8), t(-1.2), beta=2.0, gamma=0.5)
    assert losses.item() == pytest.approx(neg_log_sigmoid(0.3), abs=1e-12)
    assert losses.item() == pytest.approx(0.554355, abs=1e-6)
    assert metrics["rewards/chosen"].item() == pytest.approx(-1.6)
    assert metrics["rewards/rejected"].item() == pytest.approx(-2.4)


def test_simpo_with_no_margin_and_unit_beta_is_the_logistic_loss() -> None:
    chosen, rejected = t(-0.8, -2.0, grad=True), t(-1.2, -1.0)
    losses, _ = simpo_loss(chosen, rejected, beta=1.0, gamma=0.0)
    assert losses.tolist() == pytest.approx([neg_log_sigmoid(0.4), neg_log_sigmoid(-1.0)], abs=1e-12)
    losses.sum().backward()
    assert chosen.grad is not None
    assert (chosen.grad < 0).all()


# --- ORPO ---


def test_orpo_against_hand_computed_value() -> None:
    # p_c = 0.5, p_r = 0.2: odds 1 and 1/4, odds ratio 4, sigmoid(log 4) = 4/5.
    # loss = nll + β (-log 0.8) = 1.5 + 0.1 * 0.223144 = 1.522314
    losses, metrics = orpo_loss(t(math.log(0.5)), t(math.log(0.2)), t(1.5), beta=0.1)
    assert losses.item() == pytest.approx(1.5 - 0.1 * math.log(0.8), abs=1e-6)
    assert losses.item() == pytest.approx(1.522314, abs=1e-6)
    assert metrics["log_odds_chosen"].item() == pytest.approx(math.log(4), abs=1e-6)
    assert metrics["log_odds_ratio"].item() == pytest.approx(math.log(0.8), abs=1e-6)
    assert metrics["nll_loss"].item() == 1.5
    assert metrics["rewards/chosen"].item() == pytest.approx(0.1 * math.log(0.5))


def test_orpo_is_stable_as_the_chosen_logp_approaches_zero() -> None:
    # avg_c = -1e-6 (p_c = 1 - 1e-6): log odds_c = -1e-6 - log(1 - e^-1e-6) = 13.8155; float32, as in training.
    # A naive log(1 - exp(x)) in float32 is off by ~0.01 here; log(-expm1(x)) is exact.
    chosen = torch.tensor([-1e-6, -1e-3], requires_grad=True)
    rejected = torch.tensor([math.log(0.5), -50.0], requires_grad=True)
    losses, metrics = orpo_loss(chosen, rejected, torch.tensor([0.1, 0.1]), beta=0.1)
    expected_0 = -1e-6 - math.log(-math.expm1(-1e-6))
    expected_1 = (-1e-3 + 50.0) - (math.log(-math.expm1(-1e-3)) - math.log(-math.expm1(-50.0)))
    assert metrics["log_odds_chosen"].tolist() == pytest.approx([expected_0, expected_1], rel=1e-5)
    losses.sum().backward()
    assert torch.isfinite(losses).all()
    assert chosen.grad is not None and rejected.grad is not None
    assert torch.isfinite(chosen.grad).all() and torch.isfinite(rejected.grad).all()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()


# --- KTO ---


def test_kto_against_hand_computed_values_mixing_both_kinds() -> None:
    # β = 0.1, z0 = 0.5.
    # row 0, desirable,   r = 2.5:  1 - sigmoid(0.1 (2.5 - 0.5))  = 1 - sigmoid(0.2) = 0.450166
    # row 1, undesirable, r = -1.5: 2 (1 - sigmoid(0.1 (0.5 + 1.5))) = 2 (1 - sigmoid(0.2)) = 0.900332 (λ_U = 2)
    # row 2, undesirable, r = 0.5:  2 (1 - sigmoid(0)) = 1
    policy, ref = t(-7.5, -11.5, -3.0), t(-10.0, -10.0, -3.5)
    desirable = torch.tensor([True, False, False])
    losses, metrics = kto_loss(policy, ref, desirable, torch.tensor(0.5), beta=0.1, undesirable_weight=2.0)
    one_minus = 1 - sigmoid(0.2)
    assert losses.tolist() == pytest.approx([one_minus, 2 * one_minus, 1.0], abs=1e-12)
    assert losses[0].item() == pytest.approx(0.450166, abs=1e-6)
    desirable_rewards = metrics["rewards/desirable"]
    assert desirable_rewards[0].item() == pytest.approx(0.25)
    assert torch.isnan(desirable_rewards[1:]).all()
    assert torch.isnan(metrics["rewards/undesirable"][0])
    assert metrics["rewards/undesirable"][1:].tolist() == pytest.approx([-0.15, 0.05])
    assert torch.nanmean(metrics["logps/undesirable"]).item() == pytest.approx((-11.5 - 3.0) / 2)
    assert metrics["kl"].tolist() == [0.5, 0.5, 0.5]


def test_kto_reference_point_is_clamped_and_constant() -> None:
    # kl = -3 clamps to z0 = 0: desirable r = 2.5 -> 1 - sigmoid(0.25)
    policy = t(-7.5, -11.5, grad=True)
    kl = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    losses, _ = kto_loss(policy, t(-10.0, -10.0), torch.tensor([True, False]), kl, beta=0.1)
    assert losses[0].item() == pytest.approx(1 - sigmoid(0.25), abs=1e-12)
    losses.sum().backward()
    assert kl.grad is None
    assert policy.grad is not None
    assert policy.grad[0] < 0 < policy.grad[1]  # raise the desirable, lower the undesirable


# --- Bradley-Terry ---


def test_bradley_terry_with_and_without_margin() -> None:
    # r_c - r_r = 0.5: -log sigmoid(0.5) = 0.474077; with margin 1: -log sigmoid(-0.5) = 0.974077
    chosen, rejected = t(1.0, 1.0, grad=True), t(0.5, 0.5)
    plain, metrics = bradley_terry_loss(chosen, rejected)
    assert plain.tolist() == pytest.approx([neg_log_sigmoid(0.5)] * 2, abs=1e-12)
    with_margin, _ = bradley_terry_loss(chosen, rejected, margin=t(1.0, 0.0))
    assert with_margin.tolist() == pytest.approx([neg_log_sigmoid(-0.5), neg_log_sigmoid(0.5)], abs=1e-12)
    assert with_margin[0].item() == pytest.approx(0.974077, abs=1e-6)
    assert metrics["rewards/margins"].tolist() == [0.5, 0.5]
    assert metrics["rewards/accuracies"].tolist() == [1.0, 1.0]
    with_margin.sum().backward()
    assert chosen.grad is not None
    assert (chosen.grad < 0).all()


# --- Contracts over every objective ---

B = 3


def _logps(seed: int) -> Tensor:
    return -torch.rand(B, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 5 - 0.01


CALLS: dict[str, Callable[[], tuple[Tensor, dict[str, Tensor]]]] = {
    "sft": lambda: sft_loss(_logps(0).view(B, 1).repeat(1, 4).requires_grad_(), torch.ones(B, 4)),
    "dpo": lambda: dpo_loss(_logps(1).requires_grad_(), _logps(2), _logps(3), _logps(4)),
    "ipo": lambda: ipo_loss(_logps(1).requires_grad_(), _logps(2), _logps(3), _logps(4)),
    "robust": lambda: robust_dpo_loss(_logps(1).requires_grad_(), _logps(2), _logps(3), _logps(4)),
    "simpo": lambda: simpo_loss(_logps(1).requires_grad_(), _logps(2)),
    "orpo": lambda: orpo_loss(_logps(1).requires_grad_(), _logps(2), -_logps(1)),
    "kto": lambda: kto_loss(
        _logps(1).requires_grad_(), _logps(2), torch.tensor([True, False, True]), torch.tensor(0.2)
    ),
    "bradley_terry": lambda: bradley_terry_loss(_logps(1).requires_grad_(), _logps(2), margin=_logps(3).abs()),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_objective_returns_per_example_losses_and_detached_metrics(name: str) -> None:
    losses, metrics = CALLS[name]()
    assert losses.shape == (B,)
    assert losses.requires_grad
    assert metrics
    for key, value in metrics.items():
        assert value.shape == (B,), key
        assert not value.requires_grad, key


@pytest.mark.parametrize(
    ("name", "objective"),
    [
        ("sft", sft_loss),
        ("dpo", dpo_loss),
        ("ipo", ipo_loss),
        ("robust", robust_dpo_loss),
        ("simpo", simpo_loss),
        ("orpo", orpo_loss),
        ("kto", kto_loss),
        ("bradley_terry", bradley_terry_loss),
    ],
)
def test_every_objective_cites_the_paper_listed_for_it(name: str, objective: Callable[..., Any]) -> None:
    arxiv_id = LOSS_PAPERS[name].split("arXiv:")[1][:10]
    assert objective.__doc__ is not None
    assert arxiv_id in objective.__doc__


def test_preference_metrics_carry_trls_names() -> None:
    names = {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"}
    for name in ("dpo", "ipo", "robust", "simpo", "orpo"):
        assert names <= set(CALLS[name]()[1]), name


# --- Cross-checks against TRL ---
#
# DPOTrainer, KTOTrainer and RewardTrainer compute their losses inside `_compute_loss`/`compute_loss`, which run a
# model; we build the trainer with `object.__new__`, set the attributes that code reads, and hand it a stub model
# whose outputs carry our log-probabilities. CPO's `cpo_loss` (SimPO) and ORPO's `odds_ratio_loss` are plain methods.
# If TRL's internals move, the stub no longer fits and these tests skip rather than fail.


class _StubAccelerator:
    device = torch.device("cpu")

    def gather(self, x: Tensor) -> Tensor:
        return x

    def gather_for_metrics(self, x: Tensor) -> Tensor:
        return x

    def unwrap_model(self, model: Any) -> Any:
        return model


class _StubModel:
    """A 'model' that returns fixed per-token log-probs (and, for KTO, others for the KL batch)."""

    training = True

    def __init__(self, log_probs: Tensor, kl_log_probs: Tensor | None = None) -> None:
        self.log_probs, self.kl_log_probs = log_probs, kl_log_probs

    def __call__(self, **kwargs: Any) -> SimpleNamespace:
        n = kwargs["input_ids"].shape[0]
        is_kl = self.kl_log_probs is not None and kwargs["input_ids"].shape[1] == self.kl_log_probs.shape[1] + 1
        log_probs = self.kl_log_probs if is_kl else self.log_probs
        assert log_probs is not None
        return SimpleNamespace(
            log_probs=log_probs,
            entropy=torch.zeros_like(log_probs),
            mean_logits=torch.zeros_like(log_probs),
            is_top1=torch.zeros(log_probs.shape, dtype=torch.bool),
            logits=torch.zeros(n, 1),
        )


def _stub_trainer(cls: type, **attrs: Any) -> Any:
    trainer = object.__new__(cls)
    base = {
        "accelerator": _StubAccelerator(),
        "aux_loss_enabled": False,
        "_metrics": {"train": defaultdict(list), "eval": defaultdict(list)},
        "_total_train_tokens": 0,
        "_tp_size": 1,
    }
    for key, value in {**base, **attrs}.items():
        object.__setattr__(trainer, key, value)
    return trainer


def _run_stubbed(fn: Callable[[], Tensor]) -> Tensor:
    try:
        return fn()
    except (AttributeError, KeyError) as exc:
        pytest.skip(f"TRL's trainer internals no longer fit the stub: {exc!r}")


def _sequence_inputs(logps: Tensor, n_tokens: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token log-probs (rows sum to `logps`) and the input tensors for rows of n_tokens completion tokens."""
    width = int(n_tokens.max()) + 1  # one prompt token, then the completion
    completion_mask = (torch.arange(width) >= 1) & (torch.arange(width) <= n_tokens.unsqueeze(1))
    per_token = completion_mask[:, 1:].to(logps.dtype) * (logps / n_tokens).unsqueeze(1)
    inputs = {
        "input_ids": torch.zeros(len(logps), width, dtype=torch.long),
        "attention_mask": torch.ones(len(logps), width, dtype=torch.long),
        "completion_mask": completion_mask.long(),
    }
    return per_token, inputs


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "robust"])
def test_dpo_family_matches_trl(loss_type: str) -> None:
    pytest.importorskip("trl")
    from trl.trainer.dpo_trainer import DPOTrainer

    beta, eps = 0.2, 0.15 if loss_type == "robust" else 0.0
    pc, pr, rc, rr = t(-10.0, -25.0, -7.0), t(-12.0, -20.0, -7.5), t(-11.0, -24.0, -6.0), t(-11.5, -22.0, -8.0)
    n_chosen, n_rejected = torch.tensor([4, 10, 3]), torch.tensor([5, 8, 3])
    per_token, inputs = _sequence_inputs(torch.cat([pc, pr]), torch.cat([n_chosen, n_rejected]))
    trainer = _stub_trainer(
        DPOTrainer,
        model=_StubModel(per_token),
        beta=beta,
        label_smoothing=eps,
        loss_types=[loss_type],
        loss_weights=[1.0],
        precompute_ref_logps=True,
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        use_weighting=False,
    )
    trl_loss = _run_stubbed(
        lambda: trainer._compute_loss(
            trainer.model, {**inputs, "ref_chosen_logps": rc, "ref_rejected_logps": rr}, False
        )
    )
    if loss_type == "sigmoid":
        losses, metrics = dpo_loss(pc, pr, rc, rr, beta=beta)
    elif loss_type == "robust":
        losses, metrics = robust_dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)
    else:
        # TRL's IPO averages the summed log-probs per token itself; ours takes the averages.
        losses, _ = ipo_loss(pc / n_chosen, pr / n_rejected, rc / n_chosen, rr / n_rejected, beta=beta)
        _, metrics = dpo_loss(pc, pr, rc, rr, beta=beta)  # TRL logs IPO's rewards on the summed log-probs
    assert trl_loss.item() == pytest.approx(losses.mean().item(), abs=1e-6)
    logged = trainer._metrics["train"]
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"):
        assert logged[name][-1] == pytest.approx(metrics[name].mean().item(), abs=1e-6), name


def test_simpo_matches_trl_cpo_trainer() -> None:
    pytest.importorskip("trl")
    from trl.experimental.cpo import CPOTrainer

    chosen, rejected = t(-0.8, -1.5, -0.3), t(-1.2, -1.0, -2.0)
    trainer = _stub_trainer(CPOTrainer, beta=2.5, simpo_gamma=0.7, loss_type="simpo", alpha=0.0, label_smoothing=0.0)
    trl_losses, trl_chosen_rewards, trl_rejected_rewards = trainer.cpo_loss(chosen, rejected)
    losses, metrics = simpo_loss(chosen, rejected, beta=2.5, gamma=0.7)
    torch.testing.assert_close(losses, trl_losses, atol=1e-6, rtol=0)
    torch.testing.assert_close(metrics["rewards/chosen"], trl_chosen_rewards)
    torch.testing.assert_close(metrics["rewards/rejected"], trl_rejected_rewards)


def test_orpo_matches_trl_orpo_trainer() -> None:
    pytest.importorskip("trl")
    from trl.experimental.orpo import ORPOTrainer

    chosen, rejected = torch.tensor([-0.3, -1e-5, -2.0]), torch.tensor([-0.9, -0.5, -1.0])
    nll = torch.tensor([0.3, 1e-5, 2.0])
    trainer = _stub_trainer(ORPOTrainer, beta=0.25)
    trl_terms, trl_chosen_rewards, _, trl_log_odds_ratio, trl_log_odds_chosen = trainer.odds_ratio_loss(
        chosen, rejected
    )
    losses, metrics = orpo_loss(chosen, rejected, nll, beta=0.25)
    # TRL: loss = nll - mean(β log sigmoid(log_odds))
    torch.testing.assert_close(losses, nll - trl_terms, atol=1e-6, rtol=0)
    torch.testing.assert_close(metrics["rewards/chosen"], trl_chosen_rewards)
    assert metrics["log_odds_ratio"].mean().item() == pytest.approx(trl_log_odds_ratio.item(), abs=1e-6)
    assert metrics["log_odds_chosen"].mean().item() == pytest.approx(trl_log_odds_chosen.item(), abs=1e-5)


def test_kto_matches_trl() -> None:
    pytest.importorskip("trl")
    from trl.trainer.kto_trainer import KTOTrainer

    # Rows 0 and 2 desirable, 1 and 3 undesirable; the KL batch gives z0 = mean(kl_policy - kl_ref) = 1.5.
    policy, ref = t(-7.5, -11.5, -3.0, -20.0), t(-10.0, -10.0, -3.5, -19.0)
    desirable = torch.tensor([True, False, True, False])
    kl_policy, kl_ref = t(-9.0, -10.0, -8.0, -11.0), t(-10.0, -12.0, -9.0, -13.0)
    per_token, inputs = _sequence_inputs(policy, torch.tensor([2, 3, 1, 4]))
    kl_per_token, kl_inputs = _sequence_inputs(kl_policy, torch.tensor([6, 6, 6, 6]))
    trainer = _stub_trainer(
        KTOTrainer,
        model=_StubModel(per_token, kl_per_token),
        beta=0.1,
        desirable_weight=1.0,
        undesirable_weight=1.5,
        loss_type="kto",
        calculate_KL=True,
        precompute_ref_logps=True,
    )
    batch = {
        **inputs,
        "KL_input_ids": kl_inputs["input_ids"],
        "KL_attention_mask": kl_inputs["attention_mask"],
        "KL_completion_mask": kl_inputs["completion_mask"],
        "label": desirable,
        "ref_logps": ref,
        "ref_KL_logps": kl_ref,
    }
    trl_loss = _run_stubbed(lambda: trainer._compute_loss(trainer.model, batch, False))
    kl = (kl_policy - kl_ref).mean()
    losses, metrics = kto_loss(policy, ref, desirable, kl, beta=0.1, undesirable_weight=1.5)
    assert kl.item() == pytest.approx(1.5)
    assert trl_loss.item() == pytest.approx(losses.mean().item(), abs=1e-6)
    logged = trainer._metrics["train"]
    assert logged["kl"][-1] == pytest.approx(1.5)
    assert logged["rewards/chosen"][-1] == pytest.approx(torch.nanmean(metrics["rewards/desirable"]).item())
    assert logged["rewards/rejected"][-1] == pytest.approx(torch.nanmean(metrics["rewards/undesirable"]).item())


def test_bradley_terry_matches_trl_reward_trainer() -> None:
    pytest.importorskip("trl")
    from trl.trainer.reward_trainer import RewardTrainer

    chosen, rejected, margin = t(1.0, -0.5, 2.0), t(0.5, 0.5, -1.0), t(1.0, 0.0, 0.5)

    class RewardStub:
        training = True

        def __call__(self, **kwargs: Any) -> SimpleNamespace:
            return SimpleNamespace(logits=torch.cat([chosen, rejected]).unsqueeze(-1))

    trainer = _stub_trainer(RewardTrainer, model=RewardStub(), args=SimpleNamespace(center_rewards_coefficient=None))
    inputs = {"input_ids": torch.zeros(6, 2, dtype=torch.long), "attention_mask": torch.ones(6, 2), "margin": margin}
    trl_loss = _run_stubbed(lambda: trainer.compute_loss(trainer.model, inputs))
    losses, metrics = bradley_terry_loss(chosen, rejected, margin=margin)
    assert trl_loss.item() == pytest.approx(losses.mean().item(), abs=1e-6)
    logged = trainer._metrics["train"]
    assert logged["accuracy"][-1] == pytest.approx(metrics["rewards/accuracies"].mean().item())
    assert logged["margin"][-1] == pytest.approx(metrics["rewards/margins"].mean().item())


def test_rpo_adds_the_chosen_mean_token_nll_to_dpo() -> None:
    from alignkit.train.config import TrainConfig
    from alignkit.train.objectives import OBJECTIVES, Scores

    # pair 1 as PAIR (chosen -10 over 4 tokens), pair 2 with chosen -3 over 2 tokens and a margin of 0
    scores = Scores(t(-10.0, -3.0), t(4.0, 2.0), t(-12.0, -5.0), t(6.0, 3.0), ref_chosen=t(-11.0, -4.0),
                    ref_rejected=t(-11.0, -6.0), label_smoothing=t(0.0, 0.0))  # fmt: skip
    plain, _ = OBJECTIVES["dpo"](scores, TrainConfig(method="dpo", beta=0.1))
    assert plain.tolist() == pytest.approx([neg_log_sigmoid(0.2), neg_log_sigmoid(0.0)], abs=1e-12)
    rpo, metrics = OBJECTIVES["dpo"](scores, TrainConfig(method="dpo", beta=0.1, rpo_alpha=0.5))
    # + 0.5 x (10 / 4) and + 0.5 x (3 / 2)
    assert rpo.tolist() == pytest.approx([neg_log_sigmoid(0.2) + 1.25, neg_log_sigmoid(0.0) + 0.75], abs=1e-12)
    assert metrics["nll_loss"].tolist() == pytest.approx([2.5, 1.5])


def test_rpo_is_refused_outside_dpo() -> None:
    from alignkit.errors import AlignkitError
    from alignkit.train.config import load_train_config

    with pytest.raises(AlignkitError, match="rpo_alpha applies to dpo only, not orpo"):
        load_train_config(None, ["rpo_alpha=0.5"], method="orpo")
