"""Credentials: API keys, cloud access keys, tokens, JWTs and private keys."""

from __future__ import annotations

import math
import re
from collections import Counter

from alignkit.guard.base import Decision, RailContext, Redaction, Side, allow, redact

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(
        r"-{2,}\s*BEGIN\s*(?:[A-Z0-9]+\s+)*PRIVATE\s*KEY(?:\s*BLOCK)?\s*-{2,}"
        r"(?:.*?-{2,}\s*END\s*(?:[A-Z0-9]+\s+)*PRIVATE\s*KEY(?:\s*BLOCK)?\s*-{2,}|.*)",
        re.DOTALL | re.IGNORECASE,
    ),
    "anthropic_key": re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    "openai_key": re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    "stripe_key": re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}"),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"),
    "aws_secret_key": re.compile(r"(?i)aws.{0,20}?(?:secret|private).{0,20}?['\"=:\s]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
    "gitlab_token": re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"),
    "slack_token": re.compile(r"\bxox[abposrce]-[A-Za-z0-9-]{10,}"),
    "slack_webhook": re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}"),
    "huggingface_token": re.compile(r"\bhf_[A-Za-z0-9]{30,}"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "password_assignment": re.compile(
        r"(?i)\b(?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|password|passwd)"
        r"\s*[:=]\s*['\"]?(?P<value>[A-Za-z0-9_\-/+=!@#$%^&*.]{12,})"
    ),
}


# A substring (lower case) each kind needs, so that a text without any runs none of the patterns.
NEEDS: dict[str, tuple[str, ...]] = {
    "private_key": ("priv",),
    "anthropic_key": ("sk-ant-",),
    "openai_key": ("sk-",),
    "stripe_key": ("_live_", "_test_"),
    "aws_access_key": ("akia", "asia", "abia", "acca", "agpa", "aida", "aroa", "anpa"),
    "aws_secret_key": ("aws",),
    "github_token": ("gh", "github_pat_"),
    "gitlab_token": ("glpat-",),
    "slack_token": ("xox",),
    "slack_webhook": ("hooks.slack",),
    "google_api_key": ("aiza",),
    "huggingface_token": ("hf_",),
    "jwt": ("eyj",),
    "password_assignment": ("key", "secret", "token", "passw"),
}
_NEEDED = tuple(sorted({w for words in NEEDS.values() for w in words}))
_STRUCTURED = frozenset({"private_key", "jwt", "slack_webhook", "aws_secret_key", "aws_access_key"})


def looks_random(value: str) -> bool:
    """Keys are random: letters and digits mixed, about 3+ bits of entropy per character."""
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value) and entropy_bits_per_char(value) >= 3.0


def entropy_bits_per_char(s: str) -> float:
    counts = Counter(s)
    return -sum(n / len(s) * math.log2(n / len(s)) for n in counts.values())


class SecretsRail:
    """Finds credentials: OpenAI, Anthropic, Stripe, Google and Hugging Face keys, AWS access and secret
    keys, GitHub, GitLab and Slack tokens, Slack webhooks, JWTs, PEM private keys (from the BEGIN line on,
    so that a half-streamed key is caught) and high-entropy values assigned to `password`, `api_key` and
    the like. Redacts as `[SECRET]` or blocks, as configured per side."""

    name = "secrets"
    uses_model = False

    def __init__(self, side: Side = "input", *, block: bool = False) -> None:
        self.side: Side = side
        self.block = block

    def check(self, text: str, context: RailContext) -> Decision:
        found: list[tuple[str, Redaction]] = []
        for view in context.views:
            view_kind = view.kind.split(":")[-1]
            if view_kind == "squashed":
                continue
            lowered = view.text.lower()
            present = {w for w in _NEEDED if w in lowered}
            if not present:
                continue
            for kind, pattern in SECRET_PATTERNS.items():
                if present.isdisjoint(NEEDS[kind]):
                    continue
                # De-leeted text is only read for the PEM header: it would garble key bodies into false hits.
                if view_kind.startswith("deleet") and kind != "private_key":
                    continue
                for m in pattern.finditer(view.text):
                    start, end = m.span()
                    if kind == "password_assignment":
                        if not looks_random(m.group("value")):
                            continue
                        start, end = m.span("value")
                    elif kind not in _STRUCTURED and not looks_random(m.group()):
                        continue
                    found.append((kind, Redaction(*view.source_span(start, end), "[SECRET]")))
        if not found:
            return allow(self.name)
        kinds = sorted({k for k, _ in found})
        reason = f"{len(found)} credential(s): {', '.join(kinds)}"
        if self.block:
            return Decision("block", self.name, reason)
        return redact(self.name, text, [r for _, r in found], reason)
