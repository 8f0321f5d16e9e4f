"""What every curation method works with: the run's config, models, judge and constitution, and the
principles a prompt's critiques and comparisons draw from."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alignkit.backends.base import Backend
from alignkit.constitution import Constitution, Principle
from alignkit.curate.config import CurateConfig
from alignkit.curate.records import Reply
from alignkit.errors import AlignkitError
from alignkit.judges.base import Judge, Verdict
from alignkit.types import Conversation, GenerationParams, Prompt


def applicable_principles(constitution: Constitution, prompt: Prompt) -> list[Principle]:
    """The principles a critique of a reply to this prompt draws from: for a harmful request the
    harmlessness principles of its category plus the general harmlessness and honesty ones; for a
    benign one the helpfulness and honesty principles (needless refusal is the failure to catch).
    The paper draws from all principles; a small teacher does better with relevant ones."""
    if prompt.label == "benign":
        chosen = [p for p in constitution.principles if p.kind in ("helpfulness", "honesty")]
    else:
        chosen = [
            p
            for p in constitution.principles
            if (p.kind == "harmlessness" and (not p.categories or prompt.category in p.categories))
            or p.kind == "honesty"
        ]
    return chosen or list(constitution.principles)


@dataclass
class Context:
    cfg: CurateConfig
    policy: Backend
    teacher: Backend
    judge: Judge
    constitution: Constitution
    meta: dict[str, Any] = field(default_factory=dict)
    """The run's provenance, written into every record: method, models, judge, constitution."""

    def rng(self, prompt_id: str, what: str) -> random.Random:
        """A generator seeded by the run's seed and method, the prompt and what it draws."""
        return random.Random(f"{self.cfg.seed}:{self.cfg.method}:{prompt_id}:{what}")

    def params(self, sample: int | None = None) -> GenerationParams:
        """Greedy decoding, or the `sample`-th sampled reply (its own seed, so a rerun samples the same)."""
        if sample is None:
            return GenerationParams(max_new_tokens=self.cfg.max_new_tokens)
        return GenerationParams(
            max_new_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature, seed=self.cfg.seed * 1000 + sample
        )

    def generate(self, backend: Backend, convs: Sequence[Conversation], params: GenerationParams) -> list[str]:
        out = backend.generate(list(convs), params) if convs else []
        failed = [c for c in out if not c.ok]
        if failed:
            raise AlignkitError(f"{backend.name} failed during curation: {failed[0].error}")
        return [c.text.strip() for c in out]

    def verdicts(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[Verdict]:
        texts = [p.text if p.text is not None else p.conversation()[-1]["content"] for p in prompts]
        return self.judge.judge(texts, list(replies)) if replies else []

    def judged(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[Reply]:
        """Each reply with the judge's verdict on it."""
        return [Reply(r, v) for r, v in zip(replies, self.verdicts(prompts, replies), strict=True)]
