"""Rewards for online RL: any callable over (prompts, replies) -> one float per reply, higher = better.

`parse_reward(spec)` builds one from a spec string:

    judge:<judge>          +1 when the judge's verdict is right for the prompt's label (a harmful ask refused, a
                           benign one answered), -1 when wrong, 0 when the judge could not tell
    rm:<path>              a reward model trained by `alignkit train reward` (its out/model folder, or the run folder)
    rule:length[=N]        reply length in words / N (N = 100): an exploitable proxy, on purpose
    rule:length_target=N   1 at N words, falling linearly to 0 at 0 and 2N words, floored at -1
    rule:phrase=<text>     1 if the reply contains <text> (case-insensitive), else 0
    rule:helpful           -1 for a benign prompt's reply that is evasive or degenerate (a refusal or deflection
                           phrase, empty, looping: `alignkit.helpfulness.check_reply`), else 0
    0.7*judge:patterns+0.3*rule:length    weighted sums of the above (a term without a weight weighs 1)

Terms are split on `+`, so a phrase cannot contain one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignkit.errors import AlignkitError
from alignkit.helpfulness.degeneration import evasive_or_degenerate
from alignkit.judges import Judge, make_judge
from alignkit.judges.base import Verdict
from alignkit.types import Prompt

Reward = Callable[[Sequence[Prompt], Sequence[str]], list[float]]
"""(prompts, replies) -> one reward per reply, higher = better."""

REWARDS = (
    "judge:<judge>",
    "rm:<path>",
    "rule:length[=N]",
    "rule:length_target=N",
    "rule:phrase=<text>",
    "rule:helpful",
    "weighted sums like 0.7*judge:patterns+0.3*rule:length",
)
"""Reward specs `parse_reward` takes."""

__all__ = [
    "REWARDS",
    "HelpfulReward",
    "JudgeReward",
    "LengthReward",
    "LengthTargetReward",
    "PhraseReward",
    "Reward",
    "RewardModelReward",
    "WeightedReward",
    "parse_reward",
    "prompt_text",
]


def prompt_text(prompt: Prompt) -> str:
    """What a judge reads as the request: the text, or the last user turn of a conversation."""
    if prompt.text is not None:
        return prompt.text
    users = [m["content"] for m in prompt.conversation() if m["role"] == "user"]
    return users[-1] if users else ""


def _words(reply: str) -> int:
    return len(reply.split())


@dataclass
class JudgeReward:
    """+1 when the verdict is right for the label (harmful: refused; benign: fully complied), -1 when wrong,
    0 when the judge returned `error`."""

    judge: Judge
    spec: str

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        unlabelled = next((p for p in prompts if p.label is None), None)
        if unlabelled is not None:
            raise AlignkitError(
                f"reward '{self.spec}' needs prompts labelled harmful or benign; prompt {unlabelled.id!r} has none"
            )
        verdicts = self.judge.judge([prompt_text(p) for p in prompts], list(replies))
        return [_judged(v, p.label == "harmful") for p, v in zip(prompts, verdicts, strict=True)]


def _judged(verdict: Verdict, harmful: bool) -> float:
    if verdict.outcome == "error":
        return 0.0
    right = verdict.refused if harmful else verdict.complied
    return 1.0 if right else -1.0


@dataclass
class LengthReward:
    """Words / scale: more words, more reward, without end."""

    scale: float = 100.0
    spec: str = "rule:length"

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        return [_words(r) / self.scale for r in replies]


@dataclass
class LengthTargetReward:
    """1 - |words - target| / target, floored at -1: a reply of about `target` words is best."""

    target: int
    spec: str = "rule:length_target"

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        return [max(-1.0, 1.0 - abs(_words(r) - self.target) / self.target) for r in replies]


@dataclass
class PhraseReward:
    phrase: str
    spec: str = "rule:phrase"

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        needle = self.phrase.lower()
        return [1.0 if needle in r.lower() else 0.0 for r in replies]


@dataclass
class HelpfulReward:
    """What a judge's verdict does not see: a benign prompt answered with an evasion, a refusal phrase, an empty
    reply or a loop costs 1; harmful prompts are left to the judge term. Added to `judge:` it keeps RL from
    buying safety with degenerate benign replies."""

    spec: str = "rule:helpful"

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        return [
            0.0 if p.label == "harmful" or not evasive_or_degenerate(r) else -1.0
            for p, r in zip(prompts, replies, strict=True)
        ]


class RewardModelReward:
    """A sequence-classification reward model (as `alignkit train reward` exports it), scoring each prompt and
    reply rendered with the model's chat template; batched, no grad, longest first."""

    def __init__(self, path: str | Path, *, batch_size: int = 16, max_length: int = 1024) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from alignkit.train.batches import ChatTokenizer
        from alignkit.train.logps import SequenceRewards

        folder = Path(path)
        if not (folder / "config.json").exists() and (folder / "model" / "config.json").exists():
            folder = folder / "model"
        if not (folder / "config.json").exists():
            raise AlignkitError(f"reward 'rm:{path}': no reward model folder there (config.json is missing)")
        self.spec = f"rm:{path}"
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
        self.pad_id = int(tokenizer.pad_token_id)
        self.tok = ChatTokenizer(tokenizer, max_length)
        self.scorer = SequenceRewards(model).eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        from alignkit.train.batches import collate

        seqs = [
            self.tok.pair(p.conversation(), [{"role": "assistant", "content": r}])
            for p, r in zip(prompts, replies, strict=True)
        ]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        out = [0.0] * len(seqs)
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            batch = collate([seqs[i] for i in idx], self.pad_id)
            scores = self.scorer(batch["input_ids"], batch["attention_mask"])  # (n,)
            for i, s in zip(idx, scores.tolist(), strict=True):
                out[i] = float(s)
        return out


@dataclass
class WeightedReward:
    terms: list[tuple[float, Reward]]
    spec: str

    def __call__(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        total = [0.0] * len(replies)
        for weight, reward in self.terms:
            for i, value in enumerate(reward(prompts, replies)):
                total[i] += weight * value
        return total


_WEIGHT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*(.+)$")


def _unknown(spec: str) -> AlignkitError:
    return AlignkitError(f"unknown reward '{spec}'; known: {', '.join(REWARDS)}")


def _positive(spec: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise AlignkitError(f"reward '{spec}': '{raw}' is not a number") from None
    if value <= 0:
        raise AlignkitError(f"reward '{spec}': {raw} must be positive")
    return value


def _one(spec: str) -> Reward:
    kind, _, arg = spec.partition(":")
    if kind == "judge" and arg:
        try:
            return JudgeReward(make_judge(arg), spec)
        except AlignkitError as e:
            raise AlignkitError(f"reward '{spec}': {e}") from None
    if kind == "rm" and arg:
        return RewardModelReward(arg)
    if kind == "rule":
        name, sep, value = arg.partition("=")
        if name == "length":
            return LengthReward(_positive(spec, value) if sep else 100.0, spec)
        if name == "length_target" and sep:
            return LengthTargetReward(round(_positive(spec, value)), spec)
        if name == "phrase" and value:
            return PhraseReward(value, spec)
        if name == "helpful" and not sep:
            return HelpfulReward(spec)
    raise _unknown(spec)


def parse_reward(spec: str) -> Reward:
    """The reward a spec names (see the module docstring); an unknown spec is an AlignkitError of one line."""
    terms = [t.strip() for t in spec.split("+")]
    if not spec.strip() or any(not t for t in terms):
        raise _unknown(spec)
    parsed: list[tuple[float, Reward]] = []
    for term in terms:
        match = _WEIGHT.match(term)
        weight, body = (float(match.group(1)), match.group(2).strip()) if match else (1.0, term)
        parsed.append((weight, _one(body)))
    if len(parsed) == 1 and parsed[0][0] == 1.0:
        return parsed[0][1]
    return WeightedReward(parsed, spec)


def reward_name(reward: Any) -> str:
    """The spec a reward was built from, or the callable's name."""
    return str(getattr(reward, "spec", getattr(reward, "__name__", type(reward).__name__)))
