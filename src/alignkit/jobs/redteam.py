"""`run_redteam`: a red-team campaign against one model, from one spec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.errors import AlignkitError
from alignkit.jobs.backend import BackendSpec
from alignkit.redteam.campaign import CampaignConfig, CampaignResult

Progress = Callable[[str, int, int], None]


@dataclass
class RedteamSpec:
    model: str
    """The target model."""
    out: Path
    """Run folder: alignkit.sqlite, redteam.json, report.html, findings/."""
    judge: str
    """Judge of every reply (a `make_judge` spec)."""
    seeds: str = "default"
    """Seed requests: a built-in suite or a prompts file."""
    split: str = "train"
    """Suite split the seeds come from (built-in suites)."""
    per_category: int | None = 3
    """At most N seeds per hazard category."""
    campaign: CampaignConfig = field(default_factory=CampaignConfig)
    """Attacks, samples, reply length and caps."""
    attacker: str | None = None
    """Attacker model for PAIR (None: the target itself)."""
    constitution: str = "default"
    """Constitution whose refusals become the findings' chosen replies."""
    backend: BackendSpec = field(default_factory=BackendSpec)
    name: str | None = None
    """Name the target is stored under (default: the model)."""


def run_redteam(
    spec: RedteamSpec, progress: Progress | None = None, target: Any = None, judge: Any = None
) -> tuple[CampaignResult, dict[str, Any]]:
    """Run (or resume) the campaign; `target` and `judge` may be given already loaded."""
    from alignkit.constitution import load_constitution
    from alignkit.judges import make_judge
    from alignkit.redteam import build_attacks
    from alignkit.redteam.campaign import load_seeds, redteam

    principles = load_constitution(spec.constitution)
    seeds = load_seeds(spec.seeds, split=spec.split, per_category=spec.per_category)
    if not seeds:
        raise AlignkitError(f"no harmful seeds in {spec.seeds} (split {spec.split})")
    target = target if target is not None else spec.backend.build(spec.model, spec.name)
    judge = judge if judge is not None else make_judge(spec.judge)
    attacker = spec.backend.build(spec.attacker) if spec.attacker else None
    attacks = build_attacks(spec.campaign.attacks, attacker)
    return redteam(target, judge, seeds, attacks, spec.campaign, spec.out, progress, principles)
