"""The red-team page: attack success by category, each attack against the direct request, examples."""

from __future__ import annotations

from typing import Any

from alignkit.metrics import Rate
from alignkit.report.charts import heatmap
from alignkit.report.html import escape, page, pct


def render_redteam(summary: dict[str, Any], table: dict[str, dict[str, Rate]], examples: list[dict[str, Any]]) -> str:
    """The red-team report: the heat map, the table next to the direct baseline, example successes."""
    base = table.get("direct", {}).get("all")
    rows = "".join(
        f"<tr><td>{escape(a)}</td><td>{pct(cells['all'])}</td><td>"
        + (f"{100 * (cells['all'].rate - base.rate):+.1f} pts" if base and a != "direct" else "baseline")
        + "</td></tr>"
        for a, cells in sorted(table.items(), key=lambda kv: -kv[1]["all"].rate)
        if "all" in cells
    )
    ex = "".join(
        f"<tr><td>{escape(x['attack'])}<br><span class='muted'>{escape(x['category'])}</span></td>"
        f"<td>{escape(x['outcome'])}</td><td class='reply'>{escape(x['prompt'][:700])}</td>"
        f"<td class='reply'>{escape(x['reply'][:500])}</td></tr>"
        for x in examples
    )
    usage = summary["usage"]
    meta = {
        "model": summary["model"],
        "units (attack x seed x sample)": sum(r.n for cells in table.values() for c, r in cells.items() if c == "all"),
        "target calls / tokens / seconds": f"{usage['prompts']:.0f} / {usage['tokens']:.0f} / {usage['seconds']:.0f}",
        "complete": "yes" if summary["complete"] else f"no (stopped by {summary['stopped_by']})",
    }
    body = [
        "<h2>Attack success rate by category</h2>",
        '<p class="muted">A unit succeeds when any of its attempts is judged full or partial compliance.</p>',
        heatmap(table),
        "<h2>Against the direct request</h2>",
        f"<table><tr><th>attack</th><th>success rate (95% CI)</th><th>vs direct</th></tr>{rows}</table>",
        "<h2>Examples</h2>",
        f"<table><tr><th>attack</th><th>judged</th><th>sent</th><th>reply</th></tr>{ex}</table>",
    ]
    return page("alignkit red-team report", meta, body)
