"""The records curation writes, typed until they are written: SFT examples and preference pairs with
their provenance, and one trace record a prompt. `as_dict` gives the JSON each has on disk (TRL's
`messages` and `prompt`/`chosen`/`rejected`, plus `provenance`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict, get_args

from alignkit.judges.base import Outcome, Verdict
from alignkit.types import Conversation, PreferencePair, Prompt, SFTExample

Record = dict[str, Any]

Source = Literal[
    "model",
    "repaired:refusal",
    "repaired:helpful-sample",
    "repaired:judge-overrules-feedback",
    "dropped:no-helpful-reply",
    "contrast:model-refusal",
    "contrast:constitution-refusal",
    "contrast:refusal-prefix",
]
"""Where a record's reply came from, written as `provenance.source`:
- `model`: the model's own reply (a revision, a guided reply, a preferred sample), accepted by the judge;
- `repaired:refusal`: compliant harm replaced by the constitution's refusal for the category;
- `repaired:helpful-sample`: a refused benign request answered with a sampled reply the judge accepts;
- `repaired:judge-overrules-feedback`: rlaif, the judge separates the pair the other way from the feedback model;
- `dropped:no-helpful-reply`: a benign request with no reply the judge accepts (trace only, no record);
- `contrast:*`: a benign look-alike's helpful answer over a refusal, the model's own or the constitution's;
  `contrast:refusal-prefix`: a reply over a reply opened by a refusal (`CurateConfig.refusal_prefix_pairs`)."""
SOURCES: tuple[Source, ...] = get_args(Source)
REPAIRED: frozenset[Source] = frozenset(
    ("repaired:refusal", "repaired:helpful-sample", "repaired:judge-overrules-feedback")
)
"""The sources where repair replaced what the model or the feedback model chose."""
DROPPED: Source = "dropped:no-helpful-reply"


def is_repaired(source: str) -> bool:
    return source in REPAIRED


class Extra(TypedDict, total=False):
    """Provenance a method adds, present only where that method records it."""

    principle: str | None
    """sl-cai: the principle of the last revision round (None: the reply was not critiqued)."""
    p_first: float | None
    """rlaif, judge overruled: the feedback model's P(first reply better), None when it gave none."""
    confidence: float
    """rlaif: |2 P(first) - 1| of the comparison the pair came from."""
    round: int
    """on-policy: the round of iterated preference optimisation the pair was sampled for."""
    chosen_outcome: Outcome | None
    """on-policy: the judge's outcome for the chosen reply (None: the constitution's refusal)."""
    rejected_outcome: Outcome
    """on-policy: the judge's outcome for the rejected reply."""


@dataclass(frozen=True)
class Provenance:
    prompt: Prompt
    source: Source
    extra: Extra = field(default_factory=lambda: Extra())

    @property
    def repaired(self) -> bool:
        return is_repaired(self.source)

    def as_dict(self, meta: Record) -> Record:
        """`meta` is the run's own provenance (method, models, judge, constitution)."""
        p = self.prompt
        base = {"prompt_id": p.id, "label": p.label, "category": p.category, "source": self.source}
        return {**base, **meta, **self.extra}


@dataclass(frozen=True)
class SftRecord:
    example: SFTExample
    provenance: Provenance

    @classmethod
    def of(cls, prompt: Prompt, reply: str, source: Source, extra: Extra | None = None) -> SftRecord:
        messages: Conversation = [*prompt.conversation(), {"role": "assistant", "content": reply}]
        return cls(SFTExample(messages), Provenance(prompt, source, extra or Extra()))

    def as_dict(self, meta: Record) -> Record:
        return {"messages": self.example.messages, "provenance": self.provenance.as_dict(meta)}


@dataclass(frozen=True)
class PairRecord:
    pair: PreferencePair
    provenance: Provenance

    @classmethod
    def of(
        cls,
        prompt: Prompt,
        chosen: str,
        rejected: str,
        source: Source,
        weight: float | None = None,
        extra: Extra | None = None,
    ) -> PairRecord:
        pair = PreferencePair(
            prompt.conversation(),
            [{"role": "assistant", "content": chosen}],
            [{"role": "assistant", "content": rejected}],
            None if weight is None else round(weight, 6),
        )
        return cls(pair, Provenance(prompt, source, extra or Extra()))

    def as_dict(self, meta: Record) -> Record:
        rec: Record = {"prompt": self.pair.prompt, "chosen": self.pair.chosen, "rejected": self.pair.rejected}
        if self.pair.chosen_weight is not None:
            rec["chosen_weight"] = self.pair.chosen_weight
        rec["provenance"] = self.provenance.as_dict(meta)
        return rec


@dataclass(frozen=True)
class Reply:
    """A reply and the judge's verdict on it."""

    text: str
    verdict: Verdict


# ---- what the trace keeps of each method's steps ----------------------------------------------


class Round(TypedDict):
    principle: str
    critique: str
    revision: str
    """The reply after this round: the teacher's revision, or the reply before it when the revision was
    discarded."""
    discarded: NotRequired[str]
    """Why the teacher's revision was not kept (`feedback.revision_problem`), with its text."""


class SlCaiSteps(TypedDict):
    original: str
    original_outcome: Outcome
    rounds: list[Round]
    revision_outcome: Outcome


class DistillSteps(TypedDict):
    with_constitution: str
    with_constitution_outcome: Outcome
    without: str
    without_outcome: Outcome


class Vote(TypedDict):
    principle: str
    swapped: bool
    p_first: float


class Comparison(TypedDict):
    pair: list[int]
    p_first: float | None
    """The feedback model's P(first reply better), averaged over principles and both orders."""
    judge_prefers_first: bool | None
    """None when the judge accepts both replies or neither."""
    votes: list[Vote]


class RlaifSteps(TypedDict):
    samples: list[str]
    outcomes: list[Outcome]
    comparisons: list[Comparison]


class OnPolicySteps(TypedDict):
    round: int
    samples: list[str]
    """The greedy reply first, then the sampled ones."""
    outcomes: list[Outcome]
    degenerate: list[bool]
    """Empty or looping, as `alignkit.helpfulness.degeneration.check_reply` reads it."""
    chosen: int | None
    """Index of the chosen sample; None when the chosen reply came from elsewhere or there is no pair."""
    rejected: int | None
    skipped: str | None
    """Why the prompt yields no pair (`no-contrast: ...`, `no-verdicts`, ...); None when it yields one."""


@dataclass(frozen=True)
class Settled:
    """The reply a prompt ends with after repair, and where it came from; None when it was dropped."""

    reply: str | None
    source: Source


@dataclass
class Curated:
    """One prompt's line of trace.jsonl: its steps, the reply it settled on (sl-cai, distill, on-policy), its SFT
    record and its preference pairs."""

    prompt: Prompt
    steps: SlCaiSteps | DistillSteps | RlaifSteps | OnPolicySteps
    settled: Settled | None
    sft: SftRecord | None
    pairs: list[PairRecord]

    def as_dict(self, meta: Record) -> Record:
        p = self.prompt
        rec: Record = {"id": p.id, "label": p.label, "category": p.category, **self.steps}
        pairs = [pair.as_dict(meta) for pair in self.pairs]
        # the key order is the one earlier traces have, so a resumed trace stays uniform
        if self.settled is not None:
            rec |= {"final": self.settled.reply, "source": self.settled.source}
            if self.sft is not None:
                rec["sft"] = self.sft.as_dict(meta)
            rec["pairs"] = pairs
        else:
            rec["pairs"] = pairs
            if self.sft is not None:
                rec["sft"] = self.sft.as_dict(meta)
        return rec
