"""Training objectives as pure functions over per-sequence log-probabilities.

Every loss returns `(losses, metrics)`: `losses` has one entry per example, shape (B,), and the loop weights and
averages it; `metrics` maps TRL's slash-separated names (`rewards/chosen`, `logps/rejected`, ...) to detached (B,)
tensors that the loop averages for logging. The caller computes the log-probabilities (summed over completion tokens
for DPO-style losses, averaged per token where a docstring says so) and owns the reference model; nothing here
touches a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from alignkit.train.config import Method, TrainConfig

__all__ = [
    "LOSS_PAPERS",
    "OBJECTIVES",
    "Objective",
    "Scores",
    "bradley_terry_loss",
    "dpo_loss",
    "ipo_loss",
    "kto_loss",
    "orpo_loss",
    "robust_dpo_loss",
    "sft_loss",
    "sft_nll",
    "sft_token_mean",
    "simpo_loss",
]

LOSS_PAPERS: dict[str, str] = {
    "sft": (
        "Ouyang et al., Training language models to follow instructions with human feedback, 2022, arXiv:2203.02155"
    ),
    "dpo": (
        "Rafailov, Sharma, Mitchell, Ermon, Manning, Finn, Direct Preference Optimization: "
        "Your Language Model is Secretly a Reward Model, 2023, arXiv:2305.18290"
    ),
    "cdpo": "Mitchell, A note on DPO with noisy preferences & relationship to IPO, 2023, https://ericmitchell.ai/cdpo.pdf",
    "ipo": (
        "Azar, Rowland, Piot, Guo, Calandriello, Valko, Munos, A General Theoretical Paradigm to Understand "
        "Learning from Human Preferences, 2023, arXiv:2310.12036"
    ),
    "robust": (
        "Chowdhury, Kini, Natarajan, Provably Robust DPO: Aligning Language Models with Noisy Feedback, "
        "2024, arXiv:2403.00409"
    ),
    "simpo": (
        "Meng, Xia, Chen, SimPO: Simple Preference Optimization with a Reference-Free Reward, 2024, arXiv:2405.14734"
    ),
    "orpo": (
        "Hong, Lee, Thorne, ORPO: Monolithic Preference Optimization without Reference Model, 2024, arXiv:2403.07691"
    ),
    "kto": (
        "Ethayarajh, Xu, Muennighoff, Jurafsky, Kiela, KTO: Model Alignment as Prospect Theoretic Optimization, "
        "2024, arXiv:2402.01306"
    ),
    "bradley_terry": (
        "Ouyang et al., Training language models to follow instructions with human feedback, 2022, "
        "arXiv:2203.02155; margin from Touvron et al., Llama 2: Open Foundation and Fine-Tuned Chat Models, "
        "2023, arXiv:2307.09288"
    ),
}


def _pair_metrics(
    chosen_rewards: Tensor, rejected_rewards: Tensor, chosen_logps: Tensor, rejected_logps: Tensor
) -> dict[str, Tensor]:
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/margins": chosen_rewards - rejected_rewards,
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
        "logps/chosen": chosen_logps.detach(),
        "logps/rejected": rejected_logps.detach(),
    }


def sft_loss(token_logps: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Supervised fine-tuning: each example's mean negative log-likelihood over its assistant tokens.

    The SFT stage of Ouyang et al. 2022, "Training language models to follow instructions with human feedback"
    (arXiv:2203.02155).

    Args:
        token_logps: (B, T) log p of each target token.
        mask: (B, T) 1 (or True) on the assistant tokens that are trained on, 0 elsewhere.

    Returns:
        Per-example losses (B,); an example with no masked token gets 0. Metric `logps/mean_token` is the example's
        mean token log-probability. Averaging these losses weights every example equally whatever its length; a loop
        that wants every token weighted equally across the batch uses `sft_token_mean` instead.
    """
    mask = mask.bool()
    # where, not multiply: padded positions may hold -inf, and -inf * 0 is NaN
    token_logps = torch.where(mask, token_logps, torch.zeros_like(token_logps))  # (B, T)
    n_tokens = mask.sum(dim=-1).clamp(min=1)  # (B,)
    nll, metrics = sft_nll(token_logps.sum(dim=-1), n_tokens)
    return nll / n_tokens, metrics


def sft_nll(logps: Tensor, n_tokens: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Supervised fine-tuning as the offline loop weighs it: each example's summed negative log-likelihood.

    The SFT stage of Ouyang et al. 2022 (arXiv:2203.02155). The loop divides the batch's sum of these losses by its
    count of trained tokens, so every token weighs the same whatever example it is in (`sft_token_mean`, over
    whole sequences); `sft_loss` divides each by its own count instead, so every example weighs the same.

    Args:
        logps: (B,) log p of each example's trained tokens, summed.
        n_tokens: (B,) how many tokens each sum covers.

    Returns:
        Per-example losses (B,), `-logps`. Metric `logps/mean_token` is the example's mean token log-probability
        (0 for an example with no trained token).
    """
    return -logps, {"logps/mean_token": (logps / n_tokens.clamp(min=1)).detach()}


def sft_token_mean(token_logps: Tensor, mask: Tensor) -> Tensor:
    """Corpus-level SFT loss: summed NLL over all masked tokens of the batch / number of masked tokens (a scalar).

    Args:
        token_logps: (B, T) log p of each target token.
        mask: (B, T) 1 (or True) on trained tokens. A batch with no masked token gives 0.
    """
    mask = mask.bool()
    token_logps = torch.where(mask, token_logps, torch.zeros_like(token_logps))  # (B, T)
    return -token_logps.sum() / mask.sum().clamp(min=1)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float | Tensor = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Direct Preference Optimization, the sigmoid loss, with optional conservative label smoothing.

    Rafailov, Sharma, Mitchell, Ermon, Manning, Finn 2023, "Direct Preference Optimization: Your Language Model is
    Secretly a Reward Model" (arXiv:2305.18290). With label smoothing ε this is conservative DPO (cDPO; Mitchell
    2023, "A note on DPO with noisy preferences & relationship to IPO"): the label is trusted with probability 1 - ε,

        h = (πc - rc) - (πr - rr)
        loss = -(1 - ε) log sigmoid(βh) - ε log sigmoid(-βh)

    Args:
        policy_chosen_logps, policy_rejected_logps: (B,) policy log-probabilities of each completion, summed over
            its tokens.
        ref_chosen_logps, ref_rejected_logps: (B,) the same under the frozen reference model.
        beta: strength of the implicit KL penalty towards the reference.
        label_smoothing: ε, a float or a per-example (B,) tensor. A soft AI-feedback label saying the chosen
            completion is better with probability p is passed as ε = 1 - p.

    Returns:
        Per-example losses (B,) and metrics; the implicit rewards are `rewards/chosen` = β(πc - rc) and
        `rewards/rejected` = β(πr - rr).
    """
    if isinstance(label_smoothing, float | int) and not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    logits = beta * (chosen_logratios - rejected_logratios)  # (B,)
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    metrics = _pair_metrics(
        beta * chosen_logratios, beta * rejected_logratios, policy_chosen_logps, policy_rejected_logps
    )
    return losses, metrics


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Identity Preference Optimisation: regress the log-ratio margin onto 1/(2β).

    Azar, Rowland, Piot, Guo, Calandriello, Valko, Munos 2023, "A General Theoretical Paradigm to Understand Learning
    from Human Preferences" (arXiv:2310.12036), Eq. 17 with τ = β:

        loss = (h - 1/(2β))²,  h = (πc - rc) - (πr - rr)

    IPO is defined on average per-token log-probabilities: pass each completion's log-probability divided by its
    number of tokens (as TRL does), otherwise the squared loss grows with completion length.

    Args:
        policy_chosen_logps, policy_rejected_logps: (B,) policy per-token average log-probabilities.
        ref_chosen_logps, ref_rejected_logps: (B,) the same under the reference model.
        beta: regularisation strength τ; the target margin is 1/(2β).

    Returns:
        Per-example losses (B,) and metrics, rewards β(π - r) on the averaged log-probabilities.
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    losses = (chosen_logratios - rejected_logratios - 1 / (2 * beta)) ** 2
    metrics = _pair_metrics(
        beta * chosen_logratios, beta * rejected_logratios, policy_chosen_logps, policy_rejected_logps
    )
    return losses, metrics


def robust_dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Robust DPO: an unbiased estimate of the clean DPO loss when labels flip with known rate ε.

    Chowdhury, Kini, Natarajan 2024, "Provably Robust DPO: Aligning Language Models with Noisy Feedback"
    (arXiv:2403.00409):

        loss = (-(1 - ε) log sigmoid(βh) + ε log sigmoid(-βh)) / (1 - 2ε),  h = (πc - rc) - (πr - rr)

    Unlike cDPO the flipped term enters with a plus sign, so the loss can be negative; with ε = 0 it is DPO.

    Args:
        policy_chosen_logps, policy_rejected_logps: (B,) policy log-probabilities, summed over completion tokens.
        ref_chosen_logps, ref_rejected_logps: (B,) the same under the reference model.
        beta: strength of the implicit KL penalty.
        label_smoothing: ε, the assumed probability that a label is flipped, in [0, 0.5).

    Returns:
        Per-example losses (B,) and the same metrics as `dpo_loss`.
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust DPO needs label_smoothing in [0, 0.5), got {label_smoothing}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    logits = beta * (chosen_logratios - rejected_logratios)  # (B,)
    eps = label_smoothing
    losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
    metrics = _pair_metrics(
        beta * chosen_logratios, beta * rejected_logratios, policy_chosen_logps, policy_rejected_logps
    )
    return losses, metrics


def simpo_loss(
    policy_chosen_avg_logps: Tensor,
    policy_rejected_avg_logps: Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SimPO: reference-free, length-normalised preference loss with a target reward margin.

    Meng, Xia, Chen 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward" (arXiv:2405.14734):

        loss = -log sigmoid(β·avg_c - β·avg_r - gamma)

    `gamma` is the paper's target reward margin, on the reward scale. TRL's `CPOConfig(loss_type="simpo",
    cpo_alpha=0.0)` takes the same number as `simpo_gamma` (it subtracts `simpo_gamma / beta` from the log-ratio
    before scaling by β); the SimPO authors' code takes `gamma_beta_ratio` = gamma / β instead, so their β=2.0,
    gamma_beta_ratio=0.5 is gamma=1.0 here.

    Args:
        policy_chosen_avg_logps, policy_rejected_avg_logps: (B,) per-token average policy log-probabilities.
        beta: reward scale.
        gamma: target reward margin.

    Returns:
        Per-example losses (B,) and metrics with rewards β·avg_logps.
    """
    chosen_rewards = beta * policy_chosen_avg_logps  # (B,)
    rejected_rewards = beta * policy_rejected_avg_logps  # (B,)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
    metrics = _pair_metrics(chosen_rewards, rejected_rewards, policy_chosen_avg_logps, policy_rejected_avg_logps)
    return losses, metrics


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0 without cancellation (Mächler 2012, "Accurately Computing log(1 - exp(-|a|))")."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_loss(
    chosen_avg_logps: Tensor,
    rejected_avg_logps: Tensor,
    chosen_nll: Tensor,
    *,
    beta: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """ORPO: the SFT loss on the chosen completion plus a log odds-ratio penalty, with no reference model.

    Hong, Lee, Thorne 2024, "ORPO: Monolithic Preference Optimization without Reference Model" (arXiv:2403.07691),
    with odds(y) = p / (1 - p) and p = exp(average token log-probability):

        log_odds = (avg_c - avg_r) - (log(1 - exp(avg_c)) - log(1 - exp(avg_r)))
        loss = chosen_nll - β log sigmoid(log_odds)

    Args:
        chosen_avg_logps, rejected_avg_logps: (B,) per-token average policy log-probabilities (all < 0).
        chosen_nll: (B,) the SFT loss of each chosen completion (its mean token NLL, e.g. from `sft_loss`).
        beta: weight λ of the odds-ratio term.

    Returns:
        Per-example losses (B,) and metrics with TRL's ORPO names: rewards β·avg_logps, `nll_loss`,
        `log_odds_ratio` = log sigmoid(log_odds) (TRL's name for this quantity) and `log_odds_chosen` = log_odds.
        The odds ratio is computed in float32 because bf16 cannot resolve 1 - p as p approaches 1.
    """
    avg_c, avg_r = chosen_avg_logps.float(), rejected_avg_logps.float()  # (B,)
    log_odds = (avg_c - avg_r) - (_log1mexp(avg_c) - _log1mexp(avg_r))  # (B,)
    log_sigmoid_odds = F.logsigmoid(log_odds)  # (B,)
    losses = chosen_nll - beta * log_sigmoid_odds
    metrics = _pair_metrics(beta * chosen_avg_logps, beta * rejected_avg_logps, chosen_avg_logps, rejected_avg_logps)
    metrics["nll_loss"] = chosen_nll.detach()
    metrics["log_odds_ratio"] = log_sigmoid_odds.detach()
    metrics["log_odds_chosen"] = log_odds.detach()
    return losses, metrics


def kto_loss(
    policy_logps: Tensor,
    ref_logps: Tensor,
    desirable: Tensor,
    kl: Tensor,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """KTO: a prospect-theoretic loss on unpaired completions, each labelled desirable or undesirable.

    Ethayarajh, Xu, Muennighoff, Jurafsky, Kiela 2024, "KTO: Model Alignment as Prospect Theoretic Optimization"
    (arXiv:2402.01306), Eq. 7 with r = π - ref and reference point z0 = max(kl, 0), held constant:

        desirable:    λ_D (1 - sigmoid(β(r - z0)))
        undesirable:  λ_U (1 - sigmoid(β(z0 - r)))

    Args:
        policy_logps: (B,) policy log-probabilities of each completion, summed over its tokens.
        ref_logps: (B,) the same under the reference model.
        desirable: (B,) bool, True for desirable completions.
        kl: 0-d tensor, the batch estimate of KL(π || ref) on mismatched prompt-completion pairs; it is clamped
            at 0 and detached here.
        beta: strength of the implicit KL penalty.
        desirable_weight, undesirable_weight: λ_D and λ_U, to balance unequal class counts (the paper advises
            λ_D n_D / (λ_U n_U) in [1, 4/3]).

    Returns:
        Per-example losses (B,) and metrics. `rewards/desirable` and `logps/desirable` hold β·r and π on desirable
        rows and NaN on the others (and the reverse for `rewards/undesirable`, `logps/undesirable`), so the loop
        averages them with `torch.nanmean`; TRL logs the same quantities as `rewards/chosen` and `rewards/rejected`.
        `kl` is z0 repeated per example.
    """
    desirable = desirable.bool()
    z0 = kl.detach().clamp(min=0)  # ()
    logratios = policy_logps - ref_logps  # (B,)
    desirable_losses = desirable_weight * (1 - torch.sigmoid(beta * (logratios - z0)))  # (B,)
    undesirable_losses = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - logratios)))  # (B,)
    losses = torch.where(desirable, desirable_losses, undesirable_losses)
    rewards = (beta * logratios).detach()  # (B,)
    logps = policy_logps.detach()  # (B,)
    nan = torch.full_like(rewards, float("nan"))
    metrics = {
        "rewards/desirable": torch.where(desirable, rewards, nan),
        "rewards/undesirable": torch.where(desirable, nan, rewards),
        "logps/desirable": torch.where(desirable, logps, nan),
        "logps/undesirable": torch.where(desirable, nan, logps),
        "kl": z0.expand_as(rewards),
    }
    return losses, metrics


def bradley_terry_loss(
    chosen_rewards: Tensor,
    rejected_rewards: Tensor,
    *,
    margin: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reward-model loss under the Bradley-Terry preference model, with an optional per-pair margin.

    Ouyang et al. 2022, "Training language models to follow instructions with human feedback" (arXiv:2203.02155),
    Eq. 1; the margin is Llama 2's (Touvron et al. 2023, "Llama 2: Open Foundation and Fine-Tuned Chat Models",
    arXiv:2307.09288, Eq. 2), larger for pairs rated as more clearly separated:

        loss = -log sigmoid(r_c - r_r - margin)

    Args:
        chosen_rewards, rejected_rewards: (B,) scalar rewards the model gives each completion.
        margin: optional (B,) margin the chosen reward must exceed the rejected one by.

    Returns:
        Per-example losses (B,) and metrics `rewards/chosen`, `rewards/rejected`, `rewards/margins` (r_c - r_r,
        without the margin) and `rewards/accuracies`.
    """
    diff = chosen_rewards - rejected_rewards  # (B,)
    losses = -F.logsigmoid(diff if margin is None else diff - margin)
    chosen, rejected = chosen_rewards.detach(), rejected_rewards.detach()
    metrics = {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "rewards/accuracies": (chosen > rejected).float(),
    }
    return losses, metrics


# ---- the table the offline loop reads -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """One micro-batch as the offline loop scored it, for its method's objective. Log-probabilities are summed over
    each sequence's trained tokens; every tensor is (B,), one entry per example (per pair for paired methods)."""

    chosen: Tensor
    """log p of the trained sequence: SFT's reply, KTO's completion, a pair's chosen reply; `reward`: the reward
    model's score of the chosen reply."""
    chosen_tokens: Tensor | None = None
    """Trained tokens in `chosen` (log-prob methods)."""
    rejected: Tensor | None = None
    """A pair's rejected reply, as `chosen`."""
    rejected_tokens: Tensor | None = None
    ref_chosen: Tensor | None = None
    """`chosen` under the reference model (methods that use one)."""
    ref_rejected: Tensor | None = None
    kl_logps: Tensor | None = None
    """KTO: log p of each prompt with another example's reply, without gradient (the sample of its KL estimate)."""
    ref_kl_logps: Tensor | None = None
    desirable: Tensor | None = None
    """KTO: True for a desirable completion."""
    label_smoothing: Tensor | None = None
    """DPO: each pair's label smoothing (1 - chosen_weight for AI-feedback pairs, else the config's)."""


Objective = Callable[["Scores", "TrainConfig"], tuple[Tensor, dict[str, Tensor]]]
"""(scores, config) -> (per-example losses (B,), detached metrics): the loop sums the losses and divides by the
global count of examples, or of trained tokens for SFT."""


def _given(value: Tensor | None, name: str) -> Tensor:
    if value is None:
        raise ValueError(f"this objective needs scores.{name}")
    return value


def _sft(s: Scores, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    return sft_nll(s.chosen, _given(s.chosen_tokens, "chosen_tokens"))


def _dpo(s: Scores, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    ref_c, ref_r = _given(s.ref_chosen, "ref_chosen"), _given(s.ref_rejected, "ref_rejected")
    smoothing = _given(s.label_smoothing, "label_smoothing")
    losses, metrics = dpo_loss(
        s.chosen, _given(s.rejected, "rejected"), ref_c, ref_r, beta=cfg.beta, label_smoothing=smoothing
    )
    if cfg.rpo_alpha:
        # RPO: each pair also pays its chosen reply's mean token NLL
        nll = -s.chosen / _given(s.chosen_tokens, "chosen_tokens").clamp(min=1)
        losses = losses + cfg.rpo_alpha * nll
        metrics["nll_loss"] = nll.detach()
    return losses, metrics


def _ipo(s: Scores, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    n_c, n_r = _given(s.chosen_tokens, "chosen_tokens"), _given(s.rejected_tokens, "rejected_tokens")
    ref_c, ref_r = _given(s.ref_chosen, "ref_chosen"), _given(s.ref_rejected, "ref_rejected")
    return ipo_loss(s.chosen / n_c, _given(s.rejected, "rejected") / n_r, ref_c / n_c, ref_r / n_r, beta=cfg.beta)


def _robust(s: Scores, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    ref_c, ref_r = _given(s.ref_chosen, "ref_chosen"), _given(s.ref_rejected, "ref_rejected")
    rejected = _given(s.rejected, "rejected")
    return robust_dpo_loss(s.chosen, rejected, ref_c, ref_r, beta=cfg.beta, label_smoothing=cfg.label_smoothing)


def _simpo(s: Scores, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    avg_c = s.chosen / _given(s.chosen_tokens, "chosen_tokens")
    avg_r = _given(s.rejected, "rejected") / _given(s.rejected_tokens, "rejected_tokens")
    return simpo_loss(avg_c, avg_r, beta=cfg.beta, gamma=cfg.simpo_gamma)


def _orpo(s: Scores, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    avg_c = s.chosen / _given(s.chosen_tokens, "chosen_tokens")
    avg_r = _given(s.rejected, "rejected") / _given(s.rejected_tokens, "rejected_tokens")
    return orpo_loss(avg_c, avg_r, -avg_c, beta=cfg.beta)


def _kto(s: Scores, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    kl = (_given(s.kl_logps, "kl_logps") - _given(s.ref_kl_logps, "ref_kl_logps")).mean()
    return kto_loss(
        s.chosen,
        _given(s.ref_chosen, "ref_chosen"),
        _given(s.desirable, "desirable"),
        kl,
        beta=cfg.beta,
        desirable_weight=cfg.kto_desirable_weight,
        undesirable_weight=cfg.kto_undesirable_weight,
    )


def _reward(s: Scores, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    return bradley_terry_loss(s.chosen, _given(s.rejected, "rejected"))


OBJECTIVES: dict[Method, Objective] = {
    "sft": _sft,
    "dpo": _dpo,
    "ipo": _ipo,
    "robust": _robust,
    "simpo": _simpo,
    "orpo": _orpo,
    "kto": _kto,
    "reward": _reward,
}
"""Each training method's objective over a scored micro-batch: the one place the offline loop picks a loss."""
