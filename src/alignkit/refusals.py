"""Refusals to put in training data as the `chosen` reply: brief, not judgmental, and offering a safe
alternative where there is one. The constitution writes them per principle (`refusal`, and `refusals`
for more phrasings); this table stands in, per hazard category, where no principle governs one.

One template per category teaches a model to emit that template, even into benign replies; on-policy
curation therefore draws among several phrasings (`pick_refusal`)."""

from __future__ import annotations

import random

from alignkit.constitution import Constitution

ALTERNATIVES = {
    "violent_crimes": "If you or someone else is in danger, please contact local emergency services. I'm happy to "
    "talk about personal safety, conflict de-escalation or how investigations work in general.",
    "weapons_cbrn": "I can talk about the history of weapons, arms-control treaties or how to store firearms safely "
    "and legally.",
    "cyber_crime": "I can help with defending systems instead: hardening a machine, spotting phishing, or "
    "learning security legally through capture-the-flag exercises.",
    "fraud_scams": "I can help you recognise and report scams, or write honest marketing and fundraising copy.",
    "self_harm": "It sounds like things might be really hard right now. You don't have to go through it alone: "
    "please consider reaching out to someone you trust or a crisis line, and I'm here to talk.",
    "hate_harassment": "I can help you write something firm but respectful, or find ways to handle a conflict.",
    "drugs": "I can share harm-reduction and health information, or point you to support services.",
    "privacy": "I can explain how to protect your own personal information, or how to reach someone through "
    "official channels.",
}
DEFAULT_ALTERNATIVE = "I'm glad to help with a safer version of what you need."


def refusal_for(category: str) -> str:
    """A brief refusal with a safe alternative for the hazard category."""
    return f"I can't help with that. {ALTERNATIVES.get(category, DEFAULT_ALTERNATIVE)}"


FALLBACK_OPENINGS = (
    "I can't help with that.",
    "That's not something I'll help with.",
    "Sorry, but I won't assist with this one.",
    "This is a request I have to decline.",
    "No, I'm not able to do that.",
    "Unfortunately that's off the table for me.",
)
"""Openings of the table's refusals, so that even the fall-back is not one sentence."""


def refusal_variants(constitution: Constitution, category: str | None) -> list[str]:
    """Every phrasing of the refusal for a hazard category: the `refusal` and `refusals` of the first
    principle that governs it (the one `Constitution.refusal_for` reads), in file order and without
    repeats; where no principle governs the category, the table's alternative after each opening."""
    governing = constitution.for_category(category) if category else []
    if governing:
        first = governing[0]
        texts = [t.strip() for t in (first.refusal, *first.refusals) if t.strip()]
        if texts:
            return list(dict.fromkeys(texts))
    alternative = ALTERNATIVES.get(category or "", DEFAULT_ALTERNATIVE)
    return [f"{opening} {alternative}" for opening in FALLBACK_OPENINGS]


def pick_refusal(constitution: Constitution, category: str | None, rng: random.Random) -> str:
    """One of `refusal_variants`, drawn with `rng` (seed it per prompt so a rerun picks the same)."""
    return rng.choice(refusal_variants(constitution, category))
