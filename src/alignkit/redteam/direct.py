"""The baseline: the seed request sent as it is. Every attack's success is read against it."""

from __future__ import annotations

import random

from alignkit.redteam.base import Seed, TemplateAttack, single
from alignkit.types import Conversation


class Direct(TemplateAttack):
    """The request, unchanged."""

    name = "direct"
    family = "baseline"
    goal = "Measure how often the plain request alone succeeds."
    tags = ("baseline",)

    def conversations(self, seed: Seed, rng: random.Random) -> list[Conversation]:
        return single(seed.text)
