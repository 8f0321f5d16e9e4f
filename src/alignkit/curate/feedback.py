"""What a feedback model is asked: critiques, revisions, and multiple-choice comparisons.

The formats follow the Constitutional AI paper (Bai et al. 2022, arXiv:2212.08073, sections 3 and 4):
a critique request and a revision request appended to the conversation, and a comparison put as a
multiple-choice question whose answer is read from the option letters' log-probabilities.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from alignkit.backends.base import Backend, ScoringBackend
from alignkit.constitution import Principle
from alignkit.errors import BackendError
from alignkit.types import Conversation, GenerationParams, user

ANSWER_PREFIX = "The answer is: ("
CoT_PREFIX = "Let's think step by step:"
CoT_CLAMP = (0.4, 0.6)
"""The paper clamps chain-of-thought preferences to 40-60%: reasoning makes them overconfident."""


def critique_conversation(prompt: Conversation, reply: str, principle: Principle) -> Conversation:
    return [
        *prompt,
        {"role": "assistant", "content": reply},
        user(f"Critique request: {principle.critique}"),
    ]


def revision_conversation(prompt: Conversation, reply: str, principle: Principle, critique: str) -> Conversation:
    return [
        *critique_conversation(prompt, reply, principle),
        {"role": "assistant", "content": critique},
        user(f"Revision request: {principle.revision} Write only the new response to the original request."),
    ]


_LEAD = re.compile(r"^\s*(?:\*\*)?(?:revision|revised response|new response|response)\s*(?:\*\*)?\s*:\s*", re.I)


def clean_revision(text: str) -> str:
    """The revision without a leading "Revision:" label that models like to add."""
    return _LEAD.sub("", text).strip()


_ABOUT_A_REPLY = re.compile(
    r"\b(?:the|this|that|my|your|its|their)\s+(?:[\w-]+(?:'s)?\s+){0,2}(?:response|reply)\b"
    r"|\bthe assistant\b|\bassistant's\b|\bthe (?:original|last|previous) (?:request|message)\b",
    re.IGNORECASE,
)
"""Words a reply to the user has no reason to use, and a critique always does: "the last response",
"the assistant's reply", "the original request"."""


def _word_grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def revision_problem(revision: str, critique: str, max_copied: float = 0.5) -> str | None:
    """Why a teacher's revision is not a reply to the user, or None when it may be one. A weak teacher
    often writes its critique again, or a sentence about the reply it was asked to rewrite ("The
    assistant's response was rewritten to remove ..."); a judge reads either as a refusal, and training
    on it teaches the model to talk about responses instead of giving one. Caught: a reply that speaks of
    "the response" or "the assistant", and one whose word 4-grams are at least `max_copied` the critique's."""
    if not revision.strip():
        return "empty"
    if _ABOUT_A_REPLY.search(revision):
        return "speaks about a response"
    grams = _word_grams(revision)
    if grams and len(grams & _word_grams(critique)) >= max_copied * len(grams):
        return "copies the critique"
    return None


def _transcript(prompt: Conversation) -> str:
    names = {"user": "HUMAN", "assistant": "ASSISTANT", "system": "SYSTEM", "tool": "TOOL"}
    return "\n".join(f"[{names[m['role']]}]: {m['content']}" for m in prompt)


def comparison_question(prompt: Conversation, reply_a: str, reply_b: str, principle: Principle) -> Conversation:
    text = (
        "Consider the following conversation between a human and an assistant:\n"
        f"{_transcript(prompt)}\n\n"
        f"Which of these assistant responses better follows this principle: {principle.statement}\n"
        "Options:\n"
        f"(A) {reply_a}\n"
        f"(B) {reply_b}\n"
        "Answer with A or B."
    )
    return [user(text)]


def _normalised(logp_a: float, logp_b: float) -> float:
    """P(A) from two log-probabilities, renormalised over the two options."""
    top = max(logp_a, logp_b)
    ea, eb = math.exp(logp_a - top), math.exp(logp_b - top)
    return ea / (ea + eb)


def prefer_first(
    teacher: Backend,
    questions: Sequence[Conversation],
    *,
    chain_of_thought: bool = False,
    max_new_tokens: int = 128,
) -> list[float | None]:
    """P(option A is the better reply) for each multiple-choice question; None where the teacher gave no
    usable answer. A scoring backend is read exactly: log p("...(A") against log p("...(B"), normalised
    over the two. Other backends (an API) answer greedily with log-probs: the chosen letter's probability
    is taken as its share, the rest as the other option's."""
    prefixes = [ANSWER_PREFIX] * len(questions)
    if chain_of_thought:
        asked = [
            [
                *q[:-1],
                user(q[-1]["content"] + f"\nReason first, then end with '{ANSWER_PREFIX}A)' or '{ANSWER_PREFIX}B)'."),
            ]
            for q in questions
        ]
        thoughts = teacher.generate(asked, GenerationParams(max_new_tokens=max_new_tokens))
        prefixes = [f"{CoT_PREFIX} {_before_answer(t.text)}\n{ANSWER_PREFIX}" for t in thoughts]
        questions = asked
    if isinstance(teacher, ScoringBackend):
        scored = teacher.score([*questions, *questions], [*(p + "A" for p in prefixes), *(p + "B" for p in prefixes)])
        n = len(questions)
        probs: list[float | None] = [_normalised(scored[i].logprob, scored[n + i].logprob) for i in range(n)]
    else:
        probs = _from_answers(teacher, questions)
    if chain_of_thought:
        lo, hi = CoT_CLAMP
        probs = [None if p is None else min(hi, max(lo, p)) for p in probs]
    return probs


def _before_answer(text: str) -> str:
    cut = text.find(ANSWER_PREFIX)
    return (text if cut < 0 else text[:cut]).strip()


def _from_answers(teacher: Backend, questions: Sequence[Conversation]) -> list[float | None]:
    replies = teacher.generate(list(questions), GenerationParams(max_new_tokens=4, logprobs=True))
    out: list[float | None] = []
    for r in replies:
        if not r.ok:
            raise BackendError(f"feedback model failed: {r.error}")
        letter = re.search(r"[AB]", r.text)
        if letter is None or not r.token_logprobs:
            out.append(None)
            continue
        share = math.exp(r.token_logprobs[0]) if r.text.lstrip().startswith(letter.group()) else 1.0
        share = max(0.5, min(1.0, share))
        out.append(share if letter.group() == "A" else 1.0 - share)
    return out
