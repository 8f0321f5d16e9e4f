"""Moved to `alignkit.report.run`; this name goes once pipeline.py imports from there."""

from alignkit.report.run import LABELS, render_run, write_run_report

__all__ = ["LABELS", "render_run", "write_run_report"]
