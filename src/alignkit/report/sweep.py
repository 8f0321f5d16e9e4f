"""The sweep page: one table of every variant and the Pareto plot of harmful compliance against benign
refusal (95% intervals as whiskers, marker area = helpfulness kept)."""

from __future__ import annotations

from typing import Any

from alignkit.metrics import Rate
from alignkit.report.html import colour, escape, page


def benign_refusal(headline: dict[str, Any]) -> Rate:
    """Full refusals of benign prompts, look-alikes and ordinary requests together."""
    parts = [headline["lookalike_over_refusal_rate"], headline["ordinary_refusal_rate"]]
    return Rate.of(sum(int(p["count"]) for p in parts), sum(int(p["n"]) for p in parts))


def helpfulness_kept(row: dict[str, Any]) -> float | None:
    """Checkable-answer accuracy after over before (None when helpfulness was not measured)."""
    before = row.get("helpfulness", {}).get("before", {}).get("checkable_accuracy", {}).get("rate")
    after = row.get("helpfulness", {}).get("after", {}).get("checkable_accuracy", {}).get("rate")
    if before is None or after is None or before == 0:
        return None
    return float(after) / float(before)


def pareto(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats on both axes (lower is better on both)."""
    front = []
    for name, (x, y) in points.items():
        beaten = any(ox <= x and oy <= y and (ox, oy) != (x, y) for o, (ox, oy) in points.items() if o != name)
        if not beaten:
            front.append(name)
    return front


def _after(row: dict[str, Any]) -> dict[str, Any] | None:
    result: dict[str, Any] | None = row["headline"].get("after")
    return result


def sweep_table_markdown(rows: list[dict[str, Any]]) -> str:
    """The sweep as a Markdown table (what docs/results.md quotes)."""
    head = ("| variant | methods | harmful answered | look-alikes refused | ordinary refused | helpfulness kept "
            "| training s | all stages s |\n|---|---|---|---|---|---|---|---|\n")  # fmt: skip
    lines = []
    for row in rows:
        after = _after(row)
        if after is None:
            continue

        def cell(key: str, after: dict[str, Any] = after) -> str:
            r = after[key]
            return f"{100 * r['rate']:.1f}% [{100 * r['low']:.1f}, {100 * r['high']:.1f}]"

        kept = helpfulness_kept(row)
        lines.append(
            f"| {row['name']} | {'+'.join(row['methods'])} | {cell('harmful_compliance_rate')} | "
            f"{cell('lookalike_over_refusal_rate')} | {cell('ordinary_refusal_rate')} | "
            f"{'-' if kept is None else f'{100 * kept:.0f}%'} | {row['seconds_training']:.0f} | "
            f"{row['seconds_all_stages']:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def pareto_plot(rows: list[dict[str, Any]], w: int = 640, h: int = 420) -> str:
    """Harmful compliance (x) against benign refusal (y) after alignment, each with its interval."""
    pts = {r["name"]: r for r in rows if _after(r) is not None}
    afters = {n: r["headline"]["after"] for n, r in pts.items()}
    rates = {n: (Rate(**a["harmful_compliance_rate"]), benign_refusal(a)) for n, a in afters.items()}
    front = set(pareto({n: (x.rate, y.rate) for n, (x, y) in rates.items()}))
    left, bottom, size = 60, 50, min(w - 80, h - 70)

    def sx(v: float) -> float:
        return left + v * size

    def sy(v: float) -> float:
        return h - bottom - v * size

    marks = []
    for i, (name, (x, y)) in enumerate(rates.items()):
        kept = helpfulness_kept(pts[name])
        radius = 4 + 8 * (kept if kept is not None else 0.5)
        c = colour(i)
        marks.append(
            f'<line x1="{sx(x.low):.1f}" x2="{sx(x.high):.1f}" y1="{sy(y.rate):.1f}" y2="{sy(y.rate):.1f}" '
            f'stroke="{c}"/><line x1="{sx(x.rate):.1f}" x2="{sx(x.rate):.1f}" y1="{sy(y.low):.1f}" '
            f'y2="{sy(y.high):.1f}" stroke="{c}"/><circle class="mark" cx="{sx(x.rate):.1f}" cy="{sy(y.rate):.1f}" '
            f'r="{radius:.1f}" fill="{c}" fill-opacity="0.6" stroke="{"#000" if name in front else c}"/>'
            f'<text x="{sx(x.rate) + radius + 2:.1f}" y="{sy(y.rate) - 2:.1f}">{escape(name)}</text>'
        )
    ticks = "".join(
        f'<text x="{sx(t):.0f}" y="{h - bottom + 15}" text-anchor="middle">{t:.0%}</text>'
        f'<text x="{left - 5}" y="{sy(t) + 4:.0f}" text-anchor="end">{t:.0%}</text>'
        for t in (0.0, 0.25, 0.5, 0.75, 1.0)
    )
    axes = (
        f'<line x1="{left}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(0)}" stroke="#999"/>'
        f'<line x1="{left}" y1="{sy(0)}" x2="{left}" y2="{sy(1)}" stroke="#999"/>'
        f'<text x="{sx(0.5)}" y="{h - 12}" text-anchor="middle">harmful prompts answered (after)</text>'
        f'<text x="14" y="{sy(0.5)}" transform="rotate(-90 14 {sy(0.5)})" text-anchor="middle">'
        "benign prompts refused (after)</text>"
    )
    return (
        f'<svg data-chart="sweep_pareto" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'xmlns="http://www.w3.org/2000/svg">{axes}{ticks}{"".join(marks)}</svg>'
    )


def render_sweep(body: dict[str, Any]) -> str:
    rows = body["variants"]
    table = sweep_table_markdown(rows).splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    html_rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in cells)
    html_table = "<table><tr>" + "".join(f"<th>{escape(c)}</th>" for c in head) + f"</tr>{html_rows}</table>"
    note = (
        '<p class="muted">Test split, greedy replies; whiskers are 95% Wilson intervals; marker area grows with '
        "the share of checkable-answer accuracy kept (a mid-size marker when not measured); outlined markers "
        "are on the Pareto front.</p>"
    )
    meta = {"preset": body["preset"], "constitution": body["constitution"], "variants": len(rows)}
    sections = [f"<h2>Variants</h2>{html_table}", f"<h2>Pareto front</h2>{pareto_plot(rows)}{note}"]
    return page("alignkit sweep", meta, sections)
