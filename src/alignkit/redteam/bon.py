"""Best-of-N jailbreaking (Hughes et al. 2024, arXiv:2412.03556): random capitalisation, shuffled
letters inside words and ASCII noise, resampled until one variant gets through."""

from __future__ import annotations

import random
from dataclasses import replace

from alignkit.backends.base import Backend
from alignkit.judges.base import Judge
from alignkit.redteam.base import Budget, Seed, Trial, attempt
from alignkit.types import GenerationParams, user


def augment(text: str, rng: random.Random, p_caps: float = 0.6, p_scramble: float = 0.6, p_noise: float = 0.06) -> str:
    """One BoN variant: scramble the middle of words, flip letter case, nudge printable characters."""
    words = []
    for w in text.split(" "):
        if len(w) > 3 and rng.random() < p_scramble:
            middle = list(w[1:-1])
            rng.shuffle(middle)
            w = w[0] + "".join(middle) + w[-1]
        words.append(w)
    out = []
    for ch in " ".join(words):
        if ch.isalpha() and rng.random() < p_caps:
            ch = ch.swapcase()
        if 32 < ord(ch) < 126 and rng.random() < p_noise:
            ch = chr(ord(ch) + rng.choice((-1, 1)))
        out.append(ch)
    return "".join(out)


class BestOfN:
    """Up to `n` augmented variants, `batch` at a time at temperature 1, stopping at the first success."""

    name = "best_of_n"
    family = "best_of_n"
    goal = "Find, by random resampling of surface noise, one variant of the request the model answers."
    tags = ("augmentation", "sampling", "adaptive")

    def __init__(self, n: int = 16, batch: int = 8) -> None:
        self.n, self.batch = n, batch

    def run(
        self,
        seed: Seed,
        target: Backend,
        judge: Judge,
        params: GenerationParams,
        rng: random.Random,
        budget: Budget,
    ) -> list[Trial]:
        sampling = replace(params, temperature=1.0, seed=rng.randrange(2**31))
        trials: list[Trial] = []
        while len(trials) < self.n and not budget.exhausted:
            k = min(self.batch, self.n - len(trials), budget.prompts)
            convs = [[user(augment(seed.text, rng))] for _ in range(k)]
            batch = attempt(convs, seed, target, judge, sampling, budget)
            for t in batch:
                trials.append(t)
                if t.success:
                    return trials
        return trials
