"""`RunLayout`: the one place that names the files and folders of an `alignkit run` folder, for the
pipeline that writes them and the posture card and report that read them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

POSTURES: dict[str, str] = {"before": "baseline", "after": "after", "guarded": "guarded"}
"""Posture measurements of a run: headline name -> folder."""


def stage_names(methods: Sequence[str]) -> list[str]:
    """One training stage per method, in order; a repeated method gets `-2`, `-3`, ... (`dpo`, `dpo-2`)."""
    seen: dict[str, int] = {}
    names = []
    for m in methods:
        seen[m] = seen.get(m, 0) + 1
        names.append(m if seen[m] == 1 else f"{m}-{seen[m]}")
    return names


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def preset(self) -> Path:
        return self.root / "preset.json"

    @property
    def stages(self) -> Path:
        return self.root / "stages.json"

    def posture(self, which: str) -> Path:
        """`before`, `after` or `guarded`: the folder of that posture measurement."""
        return self.root / POSTURES[which]

    @property
    def redteam_train(self) -> Path:
        """Campaign on train-split seeds, whose findings become training data."""
        return self.root / "redteam-train"

    @property
    def redteam_before(self) -> Path:
        return self.root / "redteam-before"

    @property
    def redteam_after(self) -> Path:
        return self.root / "redteam-after"

    @property
    def curate(self) -> Path:
        return self.root / "curate"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sft_data(self) -> Path:
        return self.data / "sft.jsonl"

    @property
    def preferences(self) -> Path:
        return self.data / "preferences.jsonl"

    @property
    def prompts(self) -> Path:
        """Curated prompts as a prompts file (online RL stages sample from it)."""
        return self.data / "prompts.jsonl"

    def round_curate(self, stage: str) -> Path:
        """An `odpo` stage's on-policy curation (sft.jsonl, preferences.jsonl, trace.jsonl, curate.json)."""
        return self.root / f"curate-{stage}"

    def train(self, stage: str) -> Path:
        """A training stage's run folder (checkpoints, metrics, adapter, merged model)."""
        return self.root / stage

    @property
    def model(self) -> Path:
        """The aligned model: the last training stage's merged model."""
        return self.root / "model"

    @property
    def aligned_replies(self) -> Path:
        """The aligned model's greedy posture replies, kept by `after` for `guarded` to answer from
        (`alignkit.backends.replay`)."""
        return self.posture("after") / "generations.jsonl"

    @property
    def guard_config(self) -> Path:
        return self.root / "guard.yaml"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def card(self) -> Path:
        return self.root / "posture_card.json"
