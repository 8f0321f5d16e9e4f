"""A self-contained HTML report: inline SVG charts, no script and no network at view time."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignkit.metrics import Rate

if TYPE_CHECKING:
    from alignkit.posture import PostureResult

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;
vertical-align:top}th{background:#f5f5f5}.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.reply{white-space:pre-wrap;max-width:520px;font-family:ui-monospace,monospace;font-size:.75rem}
.muted{color:#666;font-size:.85rem}svg text{font-size:11px;fill:#333}
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _pct(r: Rate) -> str:
    return f"{100 * r.rate:.1f}% [{100 * r.low:.1f}, {100 * r.high:.1f}] (n={r.n})"


def posture_chart(results: Sequence[PostureResult]) -> str:
    """Harmful compliance (y) against over-refusal (x), one point per model with 95% intervals."""
    w, h, pad = 520, 380, 50
    top = max(
        [0.2] + [max(r.headline().harmful_compliance_rate.high, r.headline().over_refusal_rate.high) for r in results]
    )
    scale = min(1.0, round(top + 0.05, 1))

    def sx(v: float) -> float:
        return pad + (w - 2 * pad) * v / scale

    def sy(v: float) -> float:
        return h - pad - (h - 2 * pad) * v / scale

    parts = [f'<svg class="chart" data-chart="posture" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">']
    parts.append(
        f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="#fafafa" stroke="#ccc"/>'
    )
    for k in range(6):
        v = scale * k / 5
        parts.append(f'<text x="{sx(v):.1f}" y="{h - pad + 16}" text-anchor="middle">{100 * v:.0f}%</text>')
        parts.append(f'<text x="{pad - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{100 * v:.0f}%</text>')
    parts.append(
        f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">over-refusal rate (benign prompts refused)</text>'
    )
    parts.append(
        f'<text transform="translate(14,{h / 2}) rotate(-90)" text-anchor="middle">harmful compliance rate</text>'
    )
    for i, r in enumerate(results):
        s, colour = r.headline(), PALETTE[i % len(PALETTE)]
        x, y = s.over_refusal_rate, s.harmful_compliance_rate
        parts.append(
            f'<g class="mark" data-model="{_e(r.model)}" stroke="{colour}" fill="{colour}">'
            f'<line x1="{sx(x.low):.1f}" x2="{sx(x.high):.1f}" y1="{sy(y.rate):.1f}" y2="{sy(y.rate):.1f}"/>'
            f'<line x1="{sx(x.rate):.1f}" x2="{sx(x.rate):.1f}" y1="{sy(y.low):.1f}" y2="{sy(y.high):.1f}"/>'
            f'<circle cx="{sx(x.rate):.1f}" cy="{sy(y.rate):.1f}" r="5"/>'
            f'<text x="{sx(x.rate) + 8:.1f}" y="{sy(y.rate) - 8:.1f}" stroke="none">{_e(r.model)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def category_chart(results: Sequence[PostureResult], metric: str, title: str) -> str:
    """Horizontal bars per category and model, with 95% interval whiskers."""
    cats = [s.category for s in results[0].greedy]
    bar, gap, label_w, w = 12, 10, 150, 640
    h = 30 + len(cats) * (len(results) * bar + gap) + 20
    plot_w = w - label_w - 20

    def sx(v: float) -> float:
        return label_w + plot_w * v

    parts = [f'<svg class="chart" data-chart="{metric}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">']
    parts.append(f'<text x="{label_w}" y="14" font-weight="600">{_e(title)}</text>')
    for k in range(5):
        v = k / 4
        parts.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="20" y2="{h - 18}" stroke="#eee"/>')
        parts.append(f'<text x="{sx(v):.1f}" y="{h - 4}" text-anchor="middle">{100 * v:.0f}%</text>')
    y = 26
    for c in cats:
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar * len(results) / 2 + 4:.1f}" text-anchor="end">{_e(c)}</text>'
        )
        for i, r in enumerate(results):
            stats = {s.category: s for s in (r.worst_of_k or r.greedy)}
            rate: Rate = getattr(stats[c], metric) if c in stats else Rate.of(0, 0)
            colour = PALETTE[i % len(PALETTE)]
            if rate.n:
                parts.append(
                    f'<rect class="mark" x="{label_w}" y="{y}" width="{max(plot_w * rate.rate, 1):.1f}" height="{bar - 2}" '
                    f'fill="{colour}"><title>{_e(r.model)} {_e(c)}: {_e(_pct(rate))}</title></rect>'
                    f'<line x1="{sx(rate.low):.1f}" x2="{sx(rate.high):.1f}" y1="{y + bar / 2 - 1}" '
                    f'y2="{y + bar / 2 - 1}" stroke="#000"/>'
                )
            y += bar
        y += gap
    parts.append("</svg>")
    return "".join(parts)


def _legend(results: Sequence[PostureResult]) -> str:
    items = [
        f'<span style="color:{PALETTE[i % len(PALETTE)]}">&#9632;</span> {_e(r.model)}' for i, r in enumerate(results)
    ]
    return '<p class="muted">' + " &nbsp; ".join(items) + "</p>"


def _stats_table(r: PostureResult) -> str:
    rows = "".join(
        f"<tr><td>{_e(s.category)}</td><td>{_pct(s.harmful_compliance_rate)}</td><td>{_pct(s.harmful_partial_rate)}</td>"
        f"<td>{_pct(s.over_refusal_rate)}</td><td>{_pct(s.over_refusal_partial_rate)}</td><td>{s.errors}</td></tr>"
        for s in (r.worst_of_k or r.greedy)
    )
    return (
        "<table><tr><th>category</th><th>harmful compliance</th><th>harmful partial</th><th>over-refusal</th>"
        f"<th>over-refusal partial</th><th>judge errors</th></tr>{rows}</table>"
    )


def _verdict(r: PostureResult) -> str:
    v = r.verdict
    head = f'<p><b>{_e(r.model)}</b>: profile <b>{_e(v.profile)}</b> <span class="{"pass" if v.passed else "fail"}">'
    head += ("PASS" if v.passed else "FAIL") + "</span></p>"
    if not v.failures:
        return head
    rows = "".join(
        f"<tr><td>{_e(f.category)}</td><td>{_e(f.metric)}</td><td>{100 * f.value:.1f}%</td><td>{100 * f.ceiling:.1f}%</td></tr>"
        for f in v.failures
    )
    return head + f"<table><tr><th>category</th><th>metric</th><th>measured</th><th>ceiling</th></tr>{rows}</table>"


def _examples(r: PostureResult, limit_chars: int = 600) -> str:
    rows = "".join(
        f"<tr><td>{_e(x['category'])}<br><span class='muted'>{_e(x['label'])}</span></td><td>{_e(x['outcome'])}</td>"
        f"<td class='reply'>{_e(x['prompt'][:300])}</td><td class='reply'>{_e(x['completion'][:limit_chars])}</td></tr>"
        for x in r.examples
    )
    return f"<table><tr><th>category</th><th>judged</th><th>prompt</th><th>reply</th></tr>{rows}</table>"


def _page(title: str, meta: dict[str, Any], sections: Sequence[str]) -> str:
    """A whole self-contained page: title, the table of what was run, then the sections."""
    meta_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in meta.items())
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1><table>{meta_rows}</table>"
        f"{''.join(sections)}</body></html>"
    )


def render(results: Sequence[PostureResult], meta: dict[str, Any], title: str = "alignkit posture report") -> str:
    """The whole report as one HTML string."""
    if not results:
        raise ValueError("a report needs at least one result")
    body = [
        "<h2>Posture</h2>",
        '<p class="muted">Lower-left is better. Bars are 95% Wilson intervals. '
        + ("Worst of k samples per prompt." if results[0].worst_of_k else "Greedy decoding.")
        + "</p>",
        posture_chart(results),
        _legend(results),
        "<h2>By category</h2>",
        category_chart(results, "harmful_compliance_rate", "harmful compliance rate"),
        category_chart(results, "over_refusal_rate", "over-refusal rate"),
        _legend(results),
        "<h2>Profile verdict</h2>",
        *[_verdict(r) for r in results],
        "<h2>Rates</h2>",
        *[f"<h3>{_e(r.model)}</h3>{_stats_table(r)}" for r in results],
        "<h2>Example replies</h2>",
        *[f"<h3>{_e(r.model)}</h3>{_examples(r)}" for r in results],
    ]
    return _page(title, meta, body)


def write_report(results: Sequence[PostureResult], out_dir: str | Path, meta: dict[str, Any]) -> Path:
    path = Path(out_dir) / "report.html"
    tmp = path.with_name("report.html.tmp")
    tmp.write_text(render(results, meta), encoding="utf-8")
    tmp.replace(path)
    return path


def heatmap(table: dict[str, dict[str, Rate]]) -> str:
    """Attack success rate per attack (rows) and category (columns), white (0%) to red (100%)."""
    attacks = list(table)
    cats = [*sorted({c for cells in table.values() for c in cells if c != "all"}), "all"]
    cell_w, cell_h, left, top = 74, 24, 170, 90
    w, h = left + cell_w * len(cats) + 10, top + cell_h * len(attacks) + 10
    parts = [
        f'<svg class="chart" data-chart="attack_heatmap" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">'
    ]
    for j, c in enumerate(cats):
        x = left + j * cell_w + cell_w / 2
        parts.append(f'<text transform="translate({x:.0f},{top - 6}) rotate(-35)">{_e(c)}</text>')
    for i, a in enumerate(attacks):
        y = top + i * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="end">{_e(a)}</text>')
        for j, c in enumerate(cats):
            rate = table[a].get(c)
            x = left + j * cell_w
            if rate is None or rate.n == 0:
                parts.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="#f0f0f0"/>')
                continue
            shade = int(255 * (1 - rate.rate))
            fill = f"rgb(255,{shade},{shade})"
            parts.append(
                f'<rect class="mark" x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}">'
                f"<title>{_e(a)} / {_e(c)}: {_e(_pct(rate))}</title></rect>"
                f'<text x="{x + cell_w / 2 - 1:.0f}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="middle">{100 * rate.rate:.0f}%</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def render_redteam(summary: dict[str, Any], table: dict[str, dict[str, Rate]], examples: list[dict[str, Any]]) -> str:
    """The red-team report: the heat map, the table next to the direct baseline, example successes."""
    base = table.get("direct", {}).get("all")
    rows = "".join(
        f"<tr><td>{_e(a)}</td><td>{_pct(cells['all'])}</td><td>"
        + (f"{100 * (cells['all'].rate - base.rate):+.1f} pts" if base and a != "direct" else "baseline")
        + "</td></tr>"
        for a, cells in sorted(table.items(), key=lambda kv: -kv[1]["all"].rate)
        if "all" in cells
    )
    ex = "".join(
        f"<tr><td>{_e(x['attack'])}<br><span class='muted'>{_e(x['category'])}</span></td><td>{_e(x['outcome'])}</td>"
        f"<td class='reply'>{_e(x['prompt'][:700])}</td><td class='reply'>{_e(x['reply'][:500])}</td></tr>"
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
    return _page("alignkit red-team report", meta, body)
