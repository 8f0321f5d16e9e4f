"""The math of online RL as pure functions: advantages, the clipped surrogate, KL estimators, GAE, the value
loss and the adaptive KL controller. Nothing here touches a model; the loop (`alignkit.rl.loop`) owns those.

Token tensors are right-padded (B, T) with a (B, T) `mask` that is 1 on the reply tokens; padded positions may
hold anything, every function masks them out.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "RL_PAPERS",
    "AdaptiveKLController",
    "clipped_surrogate",
    "clipped_value_loss",
    "gae",
    "group_advantages",
    "grpo_loss",
    "kl_k3",
    "masked_mean",
    "masked_whiten",
    "ppo_loss",
]

RL_PAPERS: dict[str, str] = {
    "ppo": (
        "Schulman, Wolski, Dhariwal, Radford, Klimov, Proximal Policy Optimization Algorithms, 2017, arXiv:1707.06347"
    ),
    "gae": (
        "Schulman, Moritz, Levine, Jordan, Abbeel, High-Dimensional Continuous Control Using Generalized Advantage "
        "Estimation, 2015, arXiv:1506.02438"
    ),
    "rlhf": (
        "Ouyang et al., Training language models to follow instructions with human feedback, 2022, arXiv:2203.02155"
    ),
    "adaptive_kl": (
        "Ziegler, Stiennon, Wu, Brown, Radford, Amodei, Christiano, Irving, Fine-Tuning Language Models from Human "
        "Preferences, 2019, arXiv:1909.08593"
    ),
    "grpo": (
        "Shao et al., DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models, 2024, "
        "arXiv:2402.03300"
    ),
    "k3": "Schulman, Approximating KL Divergence, 2020, http://joschu.net/blog/kl-approx.html",
    "overoptimization": "Gao, Schulman, Hilton, Scaling Laws for Reward Model Overoptimization, 2022, arXiv:2210.10760",
    "best_of_n_kl": "Stiennon et al., Learning to summarize from human feedback, 2020, arXiv:2009.01325",
}


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `values` where `mask` is 1 (over everything, or along `dim`); 0 where nothing is masked in."""
    m = mask.to(values.dtype)
    if dim is None:
        return (values * m).sum() / m.sum().clamp(min=1)
    return (values * m).sum(dim) / m.sum(dim).clamp(min=1)


def masked_whiten(values: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(values - mean) / std over the masked entries (population variance); zero on padding."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return torch.where(mask.bool(), (values - mean) * torch.rsqrt(var + eps), torch.zeros_like(values))


def group_advantages(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    """GRPO's outcome advantages: each reply's reward normalised within its prompt's group.

    Shao et al. 2024 (arXiv:2402.03300), section 4.1.2: A_i = (r_i - mean(r)) / std(r) over the G replies to one
    prompt. The standard deviation is the unbiased one (Bessel's correction, as in TRL); `eps` keeps a group whose
    replies all scored the same at advantage 0 instead of 0/0.

    Args:
        rewards: (B, G) one row per prompt, one column per sampled reply; G >= 2.

    Returns:
        (B, G) advantages.
    """
    if rewards.shape[-1] < 2:
        raise ValueError("group advantages need at least two replies per prompt")
    mean = rewards.mean(-1, keepdim=True)  # (B, 1)
    std = rewards.std(-1, keepdim=True)  # (B, 1)
    return (rewards - mean) / (std + eps)


def kl_k3(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """Per-token KL(pi || ref) by the k3 estimator on tokens sampled from pi: r - log r - 1 with r = ref / pi.

    Schulman 2020, "Approximating KL Divergence"; the estimator GRPO's objective uses (Shao et al. 2024, Eq. 4).
    Unbiased (E_pi[r] = 1), never negative, and of lower variance than -log r. Summed over a reply's tokens it
    estimates the KL between the two distributions over whole replies (the chain rule).

    Args:
        logps, ref_logps: (B, T) log-probabilities of the sampled tokens under the policy and the reference.

    Returns:
        (B, T) per-token estimates.
    """
    log_ratio = ref_logps - logps  # log r
    return torch.exp(log_ratio) - log_ratio - 1


def clipped_surrogate(logps: Tensor, old_logps: Tensor, advantages: Tensor, clip_eps: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate, per token, as a loss (negated objective).

    Schulman et al. 2017 (arXiv:1707.06347), Eq. 7, with rho = pi / pi_old:

        loss = -min(rho A, clip(rho, 1 - eps, 1 + eps) A)

    Args:
        logps: (B, T) log-probabilities under the policy being updated (with grad).
        old_logps: (B, T) the same under the policy that sampled the tokens.
        advantages: (B, T), or (B, 1) for one advantage per reply.
        clip_eps: eps.

    Returns:
        (B, T) losses, and a (B, T) bool that is True where the clipped term is the smaller (its gradient is 0).
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages
    return -torch.min(unclipped, clipped), clipped < unclipped


def grpo_loss(
    logps: Tensor,
    old_logps: Tensor,
    ref_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_eps: float = 0.2,
    beta: float = 0.04,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Group Relative Policy Optimization, one loss per reply.

    Shao et al. 2024, "DeepSeekMath" (arXiv:2402.03300), Eq. 3: each reply's token-mean of the clipped surrogate
    with its group-normalised advantage, minus beta times the k3 KL to the reference (Eq. 4):

        loss_i = -(1/|o_i|) sum_t [min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i) - beta k3_t]

    The objective averages loss_i over the G replies of each group and over the groups: the caller averages.

    Args:
        logps, old_logps, ref_logps: (B, T) log-probabilities of the reply tokens under the policy (with grad), the
            sampling policy and the reference.
        advantages: (B,) one advantage per reply (`group_advantages`, flattened).
        mask: (B, T) 1 on reply tokens.

    Returns:
        (B,) losses and (B,) metrics: `kl` (the reply's summed k3, in nats), `clip_fraction` (share of its tokens
        whose surrogate is clipped).
    """
    surrogate, clipped = clipped_surrogate(logps, old_logps, advantages.unsqueeze(-1), clip_eps)  # (B, T)
    kl = kl_k3(logps, ref_logps)  # (B, T)
    losses = masked_mean(surrogate + beta * kl, mask, dim=-1)  # (B,)
    m = mask.to(kl.dtype)
    metrics = {
        "kl": (kl.detach() * m).sum(-1),
        "clip_fraction": masked_mean(clipped.to(kl.dtype), mask, dim=-1),
    }
    return losses, metrics


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over each reply's tokens.

    Schulman et al. 2015 (arXiv:1506.02438), Eq. 16: delta_t = r_t + gamma V_{t+1} - V_t and
    A_t = sum_l (gamma lam)^l delta_{t+l}; the value after the last token is 0 (the episode ends there).

    Args:
        rewards: (B, T) per-token rewards (the KL penalty on every token, the score on the last).
        values: (B, T) value estimates V_t of the state before token t.
        mask: (B, T) 1 on reply tokens; right-padded.
        gamma, lam: discount and GAE's lambda.

    Returns:
        (B, T) advantages and returns (advantages + values), zero on padding.
    """
    m = mask.to(values.dtype)
    rewards, values = rewards * m, values * m
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])  # (B,)
    width = values.shape[1]
    for t in reversed(range(width)):
        next_value = values[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * m
    return advantages, (advantages + values) * m


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float) -> Tensor:
    """PPO's clipped value loss, the masked token mean of 0.5 max((V - R)^2, (V_clip - R)^2) where V_clip keeps the
    new value within `clip` of the value at sampling time (as in OpenAI's baselines and TRL)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


def ppo_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    *,
    clip_eps: float = 0.2,
    value_clip: float = 0.2,
    vf_coef: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO for RLHF: the clipped surrogate on per-token GAE advantages plus the clipped value loss.

    Schulman et al. 2017 (arXiv:1707.06347), Eq. 9 without the entropy bonus; in the RLHF form of Ouyang et al. 2022
    (arXiv:2203.02155) the KL penalty to the reference is already folded into the rewards the advantages came from.
    Both terms are token means over the whole batch (every reply token weighs the same).

    Args:
        logps, old_logps: (B, T) reply-token log-probabilities under the policy (with grad) and the sampling policy.
        advantages, returns: (B, T) from `gae` (advantages usually whitened).
        values, old_values: (B, T) the value head now (with grad) and at sampling time.
        mask: (B, T) 1 on reply tokens.

    Returns:
        The scalar loss and scalar metrics `policy_loss`, `value_loss`, `clip_fraction`, `value_clip_fraction`.
    """
    surrogate, clipped = clipped_surrogate(logps, old_logps, advantages, clip_eps)
    policy = masked_mean(surrogate, mask)
    value = clipped_value_loss(values, old_values, returns, mask, value_clip)
    value_clipped = (values - old_values).abs() > value_clip
    metrics = {
        "policy_loss": policy.detach(),
        "value_loss": value.detach(),
        "clip_fraction": masked_mean(clipped.float(), mask),
        "value_clip_fraction": masked_mean(value_clipped.float(), mask),
    }
    return policy + vf_coef * value, metrics


class AdaptiveKLController:
    """The KL coefficient of Ziegler et al. 2019 (arXiv:1909.08593), section 2.2: a proportional controller that
    moves beta so that the observed KL tracks a target,

        e = clip(KL / target - 1, -0.2, 0.2);  beta <- beta (1 + e n / horizon)

    where n is the number of replies the KL was measured on. With `target=None` beta stays fixed."""

    def __init__(self, init: float, target: float | None, horizon: int) -> None:
        self.value = init
        self.target = target
        self.horizon = horizon

    def update(self, kl: float, n: int) -> float:
        if self.target is not None:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n / self.horizon
        return self.value
