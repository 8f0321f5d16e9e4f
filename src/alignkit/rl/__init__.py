"""Online RL: GRPO and PPO on a live policy, reward specs, and a specification-gaming monitor.

rewards.py     reward specs (`judge:`, `rm:`, `rule:`, weighted sums) -> callables over (prompts, replies)
objectives.py  the math as pure functions: group advantages, clipped surrogate, k3 KL, GAE, value loss, adaptive KL
rollout.py     sampling from the live policy (the `Sampler` seam) and the policy's view of its replies
config.py      `RLConfig` and `load_rl_config`
loop.py        `rl_train`: rollouts, rewards, updates, in the run folder both loops share (`alignkit.train.rundir`)
monitor.py     proxy and gold against sqrt(KL) (Gao et al. 2022), gaming detection, best-of-n
"""

from importlib import import_module
from typing import Any

from alignkit.rl.config import RL_METHODS, RLConfig, load_rl_config

# The loop, monitor and rewards pull in torch and transformers: imported on first use, so that reading a
# config (a preset check, `--help`) stays fast.
_LAZY = {"RLResult": "loop", "rl_train": "loop", "GamingMonitor": "monitor", "MonitorPoint": "monitor",
         "best_of_n": "monitor", "best_of_n_curve": "monitor", "kl_best_of_n": "monitor", "REWARDS": "rewards",
         "Reward": "rewards", "parse_reward": "rewards"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"alignkit.rl.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'alignkit.rl' has no attribute {name!r}")


__all__ = [
    "REWARDS",
    "RL_METHODS",
    "GamingMonitor",
    "MonitorPoint",
    "RLConfig",
    "RLResult",
    "Reward",
    "best_of_n",
    "best_of_n_curve",
    "kl_best_of_n",
    "load_rl_config",
    "parse_reward",
    "rl_train",
]
