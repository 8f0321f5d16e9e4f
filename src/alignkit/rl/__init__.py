"""Online RL: GRPO and PPO on a live policy, reward specs, and a specification-gaming monitor.

rewards.py     reward specs (`judge:`, `rm:`, `rule:`, weighted sums) -> callables over (prompts, replies)
objectives.py  the math as pure functions: group advantages, clipped surrogate, k3 KL, GAE, value loss, adaptive KL
rollout.py     sampling from the live policy (the `Sampler` seam) and the policy's view of its replies
config.py      `RLConfig` and `load_rl_config`
loop.py        `rl_train`: rollouts, rewards, updates, in the run folder both loops share (`alignkit.train.rundir`)
monitor.py     proxy and gold against sqrt(KL) (Gao et al. 2022), gaming detection, best-of-n
"""

from alignkit.rl.config import RL_METHODS, RLConfig, load_rl_config
from alignkit.rl.loop import RLResult, rl_train
from alignkit.rl.monitor import GamingMonitor, MonitorPoint, best_of_n, best_of_n_curve, kl_best_of_n
from alignkit.rl.rewards import REWARDS, Reward, parse_reward

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
