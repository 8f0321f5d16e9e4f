"""alignkit's HTML pages: shared pieces (`html`), SVG charts (`charts`), and one module a page:
`posture` (posture and compare), `redteam`, `run` (the report of `alignkit run`)."""

from alignkit.report.charts import category_chart, heatmap, line_chart, posture_chart
from alignkit.report.html import CSS, PALETTE
from alignkit.report.posture import render, write_report
from alignkit.report.redteam import render_redteam

__all__ = [
    "CSS",
    "PALETTE",
    "category_chart",
    "heatmap",
    "line_chart",
    "posture_chart",
    "render",
    "render_redteam",
    "write_report",
]
