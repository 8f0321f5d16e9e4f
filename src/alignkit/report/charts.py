"""Inline SVG charts: the posture scatter, per-category bars, the attack heat map and line charts.

Every drawn datum carries the class `mark`, so a test in a browser can count what was drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from alignkit.metrics import Rate
from alignkit.report.html import colour, escape, pct

if TYPE_CHECKING:
    from alignkit.posture import PostureResult


def _svg_open(name: str, w: int, h: int) -> str:
    return f'<svg class="chart" data-chart="{escape(name)}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">'


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

    parts = [_svg_open("posture", w, h)]
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
        s, c = r.headline(), colour(i)
        x, y = s.over_refusal_rate, s.harmful_compliance_rate
        parts.append(
            f'<g class="mark" data-model="{escape(r.model)}" stroke="{c}" fill="{c}">'
            f'<line x1="{sx(x.low):.1f}" x2="{sx(x.high):.1f}" y1="{sy(y.rate):.1f}" y2="{sy(y.rate):.1f}"/>'
            f'<line x1="{sx(x.rate):.1f}" x2="{sx(x.rate):.1f}" y1="{sy(y.low):.1f}" y2="{sy(y.high):.1f}"/>'
            f'<circle cx="{sx(x.rate):.1f}" cy="{sy(y.rate):.1f}" r="5"/>'
            f'<text x="{sx(x.rate) + 8:.1f}" y="{sy(y.rate) - 8:.1f}" stroke="none">{escape(r.model)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def category_chart(results: Sequence[PostureResult], metric: str, title: str) -> str:
    """Horizontal bars per category and model, with 95% interval whiskers; `metric` names a `Rate`
    field of `CategoryStats`."""
    cats = [s.category for s in results[0].greedy]
    bar, gap, label_w, w = 12, 10, 150, 640
    h = 30 + len(cats) * (len(results) * bar + gap) + 20
    plot_w = w - label_w - 20

    def sx(v: float) -> float:
        return label_w + plot_w * v

    parts = [_svg_open(metric, w, h)]
    parts.append(f'<text x="{label_w}" y="14" font-weight="600">{escape(title)}</text>')
    for k in range(5):
        v = k / 4
        parts.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="20" y2="{h - 18}" stroke="#eee"/>')
        parts.append(f'<text x="{sx(v):.1f}" y="{h - 4}" text-anchor="middle">{100 * v:.0f}%</text>')
    y = 26
    for cat in cats:
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar * len(results) / 2 + 4:.1f}" text-anchor="end">{escape(cat)}</text>'
        )
        for i, r in enumerate(results):
            stats = {s.category: s for s in (r.worst_of_k or r.greedy)}
            rate: Rate = getattr(stats[cat], metric) if cat in stats else Rate.of(0, 0)
            if rate.n:
                parts.append(
                    f'<rect class="mark" x="{label_w}" y="{y}" width="{max(plot_w * rate.rate, 1):.1f}" '
                    f'height="{bar - 2}" fill="{colour(i)}"><title>{escape(r.model)} {escape(cat)}: '
                    f"{escape(pct(rate))}</title></rect>"
                    f'<line x1="{sx(rate.low):.1f}" x2="{sx(rate.high):.1f}" y1="{y + bar / 2 - 1}" '
                    f'y2="{y + bar / 2 - 1}" stroke="#000"/>'
                )
            y += bar
        y += gap
    parts.append("</svg>")
    return "".join(parts)


def heatmap(table: dict[str, dict[str, Rate]], name: str = "attack_heatmap") -> str:
    """Attack success rate per attack (rows) and category (columns), white (0%) to red (100%)."""
    attacks = list(table)
    cats = [*sorted({c for cells in table.values() for c in cells if c != "all"}), "all"]
    cell_w, cell_h, left, top = 74, 24, 170, 90
    w, h = left + cell_w * len(cats) + 10, top + cell_h * len(attacks) + 10
    parts = [_svg_open(name, w, h)]
    for j, c in enumerate(cats):
        x = left + j * cell_w + cell_w / 2
        parts.append(f'<text transform="translate({x:.0f},{top - 6}) rotate(-35)">{escape(c)}</text>')
    for i, a in enumerate(attacks):
        y = top + i * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="end">{escape(a)}</text>')
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
                f"<title>{escape(a)} / {escape(c)}: {escape(pct(rate))}</title></rect>"
                f'<text x="{x + cell_w / 2 - 1:.0f}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="middle">'
                f"{100 * rate.rate:.0f}%</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    series: dict[str, list[tuple[float, float]]], title: str, x_label: str, name: str, w: int = 520, h: int = 260
) -> str:
    """Lines of (x, y) points, one colour a series, with axis ticks at the data's range."""
    points = [pt for s in series.values() for pt in s]
    if not points:
        return f'<p class="muted">{escape(title)}: no data</p>'
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pad_l, pad, top = 60, 30, 28

    def sx(v: float) -> float:
        return pad_l + (w - pad_l - pad) * (v - x0) / (x1 - x0)

    def sy(v: float) -> float:
        return h - pad - (h - pad - top) * (v - y0) / (y1 - y0)

    parts = [_svg_open(name, w, h)]
    parts.append(f'<text x="{pad_l}" y="16" font-weight="600">{escape(title)}</text>')
    parts.append(
        f'<rect x="{pad_l}" y="{top}" width="{w - pad_l - pad}" height="{h - pad - top}" fill="#fafafa" stroke="#ccc"/>'
    )
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        xv = x0 + (x1 - x0) * k / 4
        parts.append(f'<text x="{pad_l - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        parts.append(f'<text x="{sx(xv):.1f}" y="{h - pad + 14}" text-anchor="middle">{xv:.3g}</text>')
    parts.append(f'<text x="{(w + pad_l) / 2}" y="{h - 2}" text-anchor="middle">{escape(x_label)}</text>')
    for i, (label, pts) in enumerate(series.items()):
        c = colour(i)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        every = max(1, len(pts) // 100)
        parts += [
            f'<circle class="mark" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{c}"/>' for x, y in pts[::every]
        ]
        parts.append(
            f'<text x="{w - pad - 4}" y="{top + 14 + 14 * i}" text-anchor="end" fill="{c}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
