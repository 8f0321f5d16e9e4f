"""Moved to tests/report/ (test_pages.py, chromium.py); this file goes once test_pipeline.py imports the
Chromium helpers from `.report.chromium`."""

from .report.chromium import CHROMIUM, PROBE, chromium

__all__ = ["CHROMIUM", "PROBE", "chromium"]
