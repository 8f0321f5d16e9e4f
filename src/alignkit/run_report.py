"""Moved to `alignkit.report.run`; this name goes once pipeline.py imports from there."""

from alignkit.report.run import FOLDERS, LABELS, render_run, write_run_report

__all__ = ["FOLDERS", "LABELS", "render_run", "write_run_report"]
