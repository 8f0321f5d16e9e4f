"""Curation: prompts plus a constitution in, SFT and preference data (TRL's JSONL) out."""

from alignkit.curate.core import METHODS, CurateConfig, CurateResult, Method, applicable_principles, curate

__all__ = ["METHODS", "CurateConfig", "CurateResult", "Method", "applicable_principles", "curate"]
