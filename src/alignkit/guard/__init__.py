"""Runtime guardrails: rails on the way in and out of any Backend, as a Backend or an OpenAI-compatible proxy."""

from __future__ import annotations

from alignkit.guard.audit import AuditLog
from alignkit.guard.backend import GuardedBackend
from alignkit.guard.base import Decision, Rail, RailContext, Redaction
from alignkit.guard.config import GuardConfig, default_config
from alignkit.guard.engine import Guard, GuardError, Reply, Screened, StreamGuard, build_rails
from alignkit.guard.normalize import Reading, View, clean, read

__all__ = [
    "AuditLog",
    "Decision",
    "Guard",
    "GuardConfig",
    "GuardError",
    "GuardedBackend",
    "Rail",
    "RailContext",
    "Reading",
    "Redaction",
    "Reply",
    "Screened",
    "StreamGuard",
    "View",
    "build_rails",
    "clean",
    "default_config",
    "read",
]
