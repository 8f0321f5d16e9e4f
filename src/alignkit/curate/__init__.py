"""Curation: prompts plus a constitution in, SFT and preference data (TRL's JSONL) out.

One module a method (`sl_cai`, `rlaif`, `distill`, `onpolicy`), the judge-checked repair they share (`repair`),
the typed records they write (`records`), and the driver that runs one and resumes it (`core`).
"""

from alignkit.curate.config import METHODS, CurateConfig, Method
from alignkit.curate.context import applicable_principles
from alignkit.curate.core import CurateResult, curate

__all__ = ["METHODS", "CurateConfig", "CurateResult", "Method", "applicable_principles", "curate"]
