"""Refusals to put in training data as the `chosen` reply: brief, not judgmental, and offering a safe
alternative where there is one. The constitution's refusal guidance will write these per principle;
until then they come from this table, per hazard category."""

from __future__ import annotations

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
