"""What a curation run is asked to do: the method and its settings, one dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alignkit.errors import AlignkitError

Method = Literal["sl-cai", "rlaif", "distill", "on-policy"]
METHODS: tuple[Method, ...] = ("sl-cai", "rlaif", "distill", "on-policy")


@dataclass
class CurateConfig:
    method: Method = "sl-cai"
    """`sl-cai` (critique and revision), `rlaif` (AI-feedback comparisons), `distill` (context distillation)
    or `on-policy` (the policy's own judged samples, best over worst, for iterative DPO)."""
    rounds: int = 1
    """sl-cai: critique-revision rounds per reply, each under a freshly drawn principle."""
    critique_benign: bool = True
    """sl-cai: also critique replies to benign prompts. Off, benign replies are self-distilled as the
    paper mixes in helpful samples: kept when the judge finds them helpful, else a helpful sample."""
    samples: int = 2
    """rlaif: replies sampled per prompt (compared in disjoint pairs). on-policy: replies sampled per
    prompt besides the greedy one, all judged."""
    principles_per_comparison: int = 2
    """rlaif: principles sampled per comparison; their option probabilities are averaged."""
    chain_of_thought: bool = False
    """rlaif: let the feedback model reason before answering (probabilities then clamped to 40-60%)."""
    repair: bool = True
    """Replace candidates the judge rejects (compliant harm, refused benign) and record it."""
    helpful_samples: int = 2
    """Extra sampled replies per benign prompt when no candidate so far is helpful."""
    max_new_tokens: int = 160
    """Length of replies, critiques and revisions."""
    temperature: float = 0.8
    """Temperature of sampled replies (rlaif and on-policy samples, helpful fall-backs)."""
    seed: int = 0
    """Seeds principle draws and sampling: the same seed gives the same data."""
    round: int = 1
    """on-policy: which round of iterated preference optimisation this data is for (1: from the first
    model, 2: from the model trained on round 1's pairs, ...). Recorded in every record's provenance
    and mixed into the sampling seeds, so each round draws fresh samples."""
    partial_refusals_chosen: bool = True
    """on-policy: a harmful prompt's own partial refusal may be the chosen reply when none of its replies
    refused fully. Off, only full refusals are, and otherwise the constitution's refusal is chosen: a
    partial refusal still carries part of the harm, and a weak judge calls odd replies partial refusals."""
    refusal_prefix_pairs: bool = False
    """sl-cai, distill: also pair each settled reply against itself opened by the constitution's refusal
    (its first sentence): a benign answer over the same answer after a refusal, and a harmful prompt's
    refusal over the compliant reply after one. A refusal opening then neither belongs in an answer nor
    licenses the answer after it: a small model otherwise learns "I can't help with X, but ..." as a style
    for every prompt."""
    chunk: int = 16
    """Prompts processed (and persisted) together; generation is batched across them."""

    def __post_init__(self) -> None:
        if self.refusal_prefix_pairs and self.method not in ("sl-cai", "distill"):
            raise AlignkitError(f"curate: refusal_prefix_pairs is for sl-cai and distill, not {self.method}")
