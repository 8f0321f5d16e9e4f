"""The pieces every alignkit HTML page shares: the page shell, escaping, rates, verdicts, legends.

Pages are self-contained: inline CSS and SVG, no script and no network at view time.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from alignkit.metrics import Rate
from alignkit.profiles import ProfileVerdict

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
"""Series colours, in order: the i-th model or line is drawn in PALETTE[i % len(PALETTE)]."""
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;
vertical-align:top}th{background:#f5f5f5}.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.reply{white-space:pre-wrap;max-width:520px;font-family:ui-monospace,monospace;font-size:.75rem}
.muted{color:#666;font-size:.85rem}svg text{font-size:11px;fill:#333}
"""


def escape(x: object) -> str:
    """Any value as HTML text, quotes included."""
    return html.escape(str(x))


def pct(r: Rate) -> str:
    """A rate as `12.5% [8.1, 18.0] (n=120)`: the point estimate, its 95% interval and its count."""
    return f"{100 * r.rate:.1f}% [{100 * r.low:.1f}, {100 * r.high:.1f}] (n={r.n})"


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def legend(names: Sequence[str]) -> str:
    """A line of coloured squares naming the series in chart order."""
    items = [f'<span style="color:{colour(i)}">&#9632;</span> {escape(name)}' for i, name in enumerate(names)]
    return '<p class="muted">' + " &nbsp; ".join(items) + "</p>"


def verdict(model: str, v: ProfileVerdict) -> str:
    """A model's profile verdict, PASS or FAIL, and a table of the failing checks."""
    status = "pass" if v.passed else "fail"
    head = f'<p><b>{escape(model)}</b>: profile <b>{escape(v.profile)}</b> <span class="{status}">'
    head += status.upper() + "</span></p>"
    if not v.failures:
        return head
    rows = "".join(
        f"<tr><td>{escape(f.category)}</td><td>{escape(f.metric)}</td><td>{100 * f.value:.1f}%</td>"
        f"<td>{100 * f.ceiling:.1f}%</td></tr>"
        for f in v.failures
    )
    return head + f"<table><tr><th>category</th><th>metric</th><th>measured</th><th>ceiling</th></tr>{rows}</table>"


def page(title: str, meta: dict[str, Any], sections: Sequence[str]) -> str:
    """A whole self-contained page: title, the table of what was run, then the sections."""
    meta_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in meta.items())
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1><table>{meta_rows}</table>"
        f"{''.join(sections)}</body></html>"
    )
