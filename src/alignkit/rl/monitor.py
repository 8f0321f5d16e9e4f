"""Specification-gaming monitor: the proxy being optimised against an independent gold signal, over sqrt(KL).

Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization" (arXiv:2210.10760): as a policy moves
away from its initial distribution (measured by sqrt(KL)), the proxy reward it is optimised for keeps rising while
the gold reward it stands for rises, peaks and falls. The monitor records (sqrt(KL), proxy, gold) per RL step, or per
n for best-of-n sampling, draws both curves as an SVG, and flags gaming.

Gaming, defined: over the last `window` points, a least-squares line through the proxy rises by more than
`tolerance` across the window with a t statistic of at least `min_t`, and a line through the gold falls by more
than `tolerance` with a t statistic of at most -`min_t`. A linear fit over a window, rather than two consecutive
points, keeps one noisy step from raising (or hiding) the alarm; the t statistic asks that each trend stand out
from the step-to-step noise around it; the tolerance ignores trends too small to matter.

Best-of-n has its KL in closed form (Stiennon et al. 2020, appendix G.3; Gao et al. 2022, section 2):
KL_bon = log n - (n - 1) / n.
"""

from __future__ import annotations

import html
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BestOfNResult",
    "GamingMonitor",
    "MonitorPoint",
    "SpecificationGamingWarning",
    "best_of_n",
    "best_of_n_curve",
    "is_gaming",
    "kl_best_of_n",
    "linear_trend",
    "svg_chart",
]


class SpecificationGamingWarning(UserWarning):
    """The proxy reward still rises while the gold signal falls."""


@dataclass
class MonitorPoint:
    step: int
    """The RL step (or n, for best-of-n)."""
    kl: float
    """KL(policy || reference) per reply, in nats."""
    proxy: float
    """Mean proxy reward (the one optimised)."""
    gold: float | None = None
    """Mean gold reward on the same replies; None when no gold is given."""

    @property
    def sqrt_kl(self) -> float:
        return math.sqrt(max(self.kl, 0.0))


def linear_trend(values: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through `values` at x = 0, 1, ...: (fitted change from the first to the last point,
    t statistic of the slope). A perfect line gives t = +-inf; a flat one gives (0, 0)."""
    n = len(values)
    if n < 2:
        return 0.0, 0.0
    mx = (n - 1) / 2
    my = sum(values) / n
    sxx = sum((i - mx) ** 2 for i in range(n))
    slope = sum((i - mx) * (v - my) for i, v in enumerate(values)) / sxx
    change = slope * (n - 1)
    if n < 3:
        return change, 0.0
    sse = sum((v - (my + slope * (i - mx))) ** 2 for i, v in enumerate(values))
    se = math.sqrt(sse / (n - 2) / sxx)
    if se < 1e-12:
        return change, 0.0 if abs(slope) < 1e-12 else math.copysign(math.inf, slope)
    return change, slope / se


def is_gaming(
    proxy: Sequence[float], gold: Sequence[float], *, window: int = 5, tolerance: float = 0.02, min_t: float = 2.0
) -> bool:
    """Over the last `window` values: the proxy's fitted rise exceeds `tolerance` (t >= min_t) while the gold's
    fitted fall exceeds `tolerance` (t <= -min_t). Fewer than `window` values never count as gaming."""
    if len(proxy) < window or len(gold) < window:
        return False
    dp, tp = linear_trend(proxy[-window:])
    dg, tg = linear_trend(gold[-window:])
    return dp > tolerance and tp >= min_t and dg < -tolerance and tg <= -min_t


@dataclass
class GamingMonitor:
    """Collects (sqrt(KL), proxy, gold) points and flags the ones at which gaming holds."""

    window: int = 5
    tolerance: float = 0.02
    min_t: float = 2.0
    x_label: str = "sqrt(KL) from the reference (nats^0.5)"
    points: list[MonitorPoint] = field(default_factory=list)
    gaming_steps: list[int] = field(default_factory=list)

    def add(self, point: MonitorPoint, *, warn: bool = True) -> bool:
        """Record a point; True (and a SpecificationGamingWarning the first time) when gaming holds at it."""
        self.points.append(point)
        last = self.points[-self.window :]
        golds = [p.gold for p in last if p.gold is not None]
        if len(golds) < len(last):
            return False
        proxies = [p.proxy for p in last]
        flagged = is_gaming(proxies, golds, window=self.window, tolerance=self.tolerance, min_t=self.min_t)
        if flagged:
            if not self.gaming_steps and warn:
                warnings.warn(
                    f"specification gaming at step {point.step}: over the last {self.window} steps the proxy rose "
                    f"while the gold fell (sqrt(KL) = {point.sqrt_kl:.3f})",
                    SpecificationGamingWarning,
                    stacklevel=2,
                )
            self.gaming_steps.append(point.step)
        return flagged

    @property
    def first_gaming_step(self) -> int | None:
        return self.gaming_steps[0] if self.gaming_steps else None

    def best_gold(self) -> MonitorPoint | None:
        scored = [p for p in self.points if p.gold is not None]
        return max(scored, key=lambda p: p.gold if p.gold is not None else -math.inf) if scored else None

    def as_dict(self) -> dict[str, Any]:
        best = self.best_gold()
        return {
            "rule": (
                f"gaming when, over the last {self.window} points, the proxy's least-squares line rises by more "
                f"than {self.tolerance} (t >= {self.min_t}) and the gold's falls by more than {self.tolerance} "
                f"(t <= -{self.min_t})"
            ),
            "window": self.window,
            "tolerance": self.tolerance,
            "min_t": self.min_t,
            "first_gaming_step": self.first_gaming_step,
            "gaming_steps": self.gaming_steps,
            "best_gold_step": best.step if best else None,
            "points": [{**asdict(p), "sqrt_kl": p.sqrt_kl} for p in self.points],
        }

    def svg(self, title: str = "proxy and gold reward against sqrt(KL)") -> str:
        xs = [p.sqrt_kl for p in self.points]
        flagged = {i for i, p in enumerate(self.points) if p.step in set(self.gaming_steps)}
        panels = [("proxy (optimised)", [p.proxy for p in self.points])]
        if any(p.gold is not None for p in self.points):
            panels.append(("gold (held out)", [math.nan if p.gold is None else p.gold for p in self.points]))
        return svg_chart(xs, panels, x_label=self.x_label, title=title, flagged=flagged)

    def write(self, out_dir: str | Path, title: str = "proxy and gold reward against sqrt(KL)") -> tuple[Path, Path]:
        """monitor.json and monitor.svg in `out_dir`, each written atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = (out / "monitor.json", out / "monitor.svg")
        for path, text in zip(paths, (json.dumps(self.as_dict(), indent=1) + "\n", self.svg(title)), strict=True):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        return paths


# ---- the chart -------------------------------------------------------------------------------


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi - lo < 1e-12:
        return [lo]
    raw = (hi - lo) / (count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + 1e-9 * step:
        out.append(round(v, 10))
        v += step
    return out


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def svg_chart(
    xs: Sequence[float],
    panels: Sequence[tuple[str, Sequence[float]]],
    *,
    x_label: str,
    title: str,
    flagged: set[int] | None = None,
) -> str:
    """A small inline SVG: one line chart per panel, side by side, sharing the x axis; points in `flagged`
    (indices) drawn in red, and a dashed line at the first of them."""
    flagged = flagged or set()
    pw, ph, ml, mr, mt, mb = 300, 210, 52, 14, 40, 48
    width, height = len(panels) * (pw + ml + mr), ph + mt + mb
    finite_x = [x for x in xs if math.isfinite(x)] or [0.0]
    x_lo, x_hi = min(finite_x), max(finite_x)
    if x_hi - x_lo < 1e-12:
        x_hi = x_lo + 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
    ]
    for k, (name, ys) in enumerate(panels):
        ox = k * (pw + ml + mr) + ml
        finite_y = [y for y in ys if math.isfinite(y)] or [0.0]
        y_lo, y_hi = min(finite_y), max(finite_y)
        pad = (y_hi - y_lo) * 0.08 or 0.5
        y_lo, y_hi = y_lo - pad, y_hi + pad

        def px(x: float, ox: float = ox) -> float:
            return ox + (x - x_lo) / (x_hi - x_lo) * pw

        def py(y: float, y_lo: float = y_lo, y_hi: float = y_hi) -> float:
            return mt + ph - (y - y_lo) / (y_hi - y_lo) * ph

        parts.append(f'<text x="{ox + pw / 2}" y="{mt - 8}" text-anchor="middle">{html.escape(name)}</text>')
        parts.append(f'<rect x="{ox}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        for t in _ticks(x_lo, x_hi):
            parts.append(f'<line x1="{px(t):.1f}" y1="{mt + ph}" x2="{px(t):.1f}" y2="{mt + ph + 4}" stroke="#888"/>')
            parts.append(f'<text x="{px(t):.1f}" y="{mt + ph + 16}" text-anchor="middle">{_fmt(t)}</text>')
        for t in _ticks(y_lo, y_hi):
            parts.append(f'<line x1="{ox - 4}" y1="{py(t):.1f}" x2="{ox}" y2="{py(t):.1f}" stroke="#888"/>')
            parts.append(
                f'<line x1="{ox}" y1="{py(t):.1f}" x2="{ox + pw}" y2="{py(t):.1f}" stroke="#eee"/>'
                f'<text x="{ox - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>'
            )
        parts.append(f'<text x="{ox + pw / 2}" y="{mt + ph + 34}" text-anchor="middle">{html.escape(x_label)}</text>')
        if flagged:
            first = min(flagged)
            if first < len(xs) and math.isfinite(xs[first]):
                fx = px(xs[first])
                parts.append(
                    f'<line x1="{fx:.1f}" y1="{mt}" x2="{fx:.1f}" y2="{mt + ph}" stroke="#c00" stroke-dasharray="4 3"/>'
                    f'<text x="{fx + 3:.1f}" y="{mt + 12}" fill="#c00">gaming</text>'
                )
        pts = [(px(x), py(y)) for x, y in zip(xs, ys, strict=True) if math.isfinite(x) and math.isfinite(y)]
        if pts:
            line = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            parts.append(f'<polyline points="{line}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>')
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if math.isfinite(x) and math.isfinite(y):
                colour = "#c00" if i in flagged else "#1f5fa8"
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# ---- best-of-n --------------------------------------------------------------------------------


def kl_best_of_n(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1) / n nats (Stiennon et al. 2020; Gao et al. 2022)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    return math.log(n) - (n - 1) / n


def _expected_best(proxy: Sequence[float], gold: Sequence[float], n: int) -> tuple[float, float]:
    """Expected (proxy, gold) of the sample with the highest proxy among n drawn without replacement from these N,
    exactly: the sample of proxy rank k (0 = lowest) is the best of a random n-subset with probability
    C(k, n-1) / C(N, n) (Nakano et al. 2021's unbiased estimator, as Gao et al. use). Samples tied on the proxy
    share their mean gold, which is the expectation under a random tie-break."""
    size = len(proxy)
    order = sorted(range(size), key=lambda i: proxy[i])
    ranked_gold = [gold[i] for i in order]
    ranked_proxy = [proxy[i] for i in order]
    start = 0
    while start < size:
        end = start
        while end + 1 < size and ranked_proxy[end + 1] == ranked_proxy[start]:
            end += 1
        block = sum(ranked_gold[start : end + 1]) / (end - start + 1)
        ranked_gold[start : end + 1] = [block] * (end - start + 1)
        start = end + 1
    total = math.comb(size, n)
    weights = [math.comb(k, n - 1) / total for k in range(size)]
    return (
        sum(w * v for w, v in zip(weights, ranked_proxy, strict=True)),
        sum(w * v for w, v in zip(weights, ranked_gold, strict=True)),
    )


def best_of_n_curve(
    proxy: Sequence[Sequence[float]], gold: Sequence[Sequence[float]], ns: Sequence[int] | None = None
) -> list[MonitorPoint]:
    """For n = 1, 2, 4, ... up to N (or `ns`): the mean over prompts of the expected proxy and gold of the best of n
    samples by the proxy, at KL_bon(n). `proxy[i][j]`, `gold[i][j]`: prompt i's j-th of N samples."""
    if not proxy or len(proxy) != len(gold):
        raise ValueError("best_of_n_curve needs proxy and gold scores for the same prompts")
    size = min(len(row) for row in proxy)
    if any(len(p) != len(g) for p, g in zip(proxy, gold, strict=True)):
        raise ValueError("each prompt needs as many gold scores as proxy scores")
    if ns is None:
        ns = [2**k for k in range(int(math.log2(size)) + 1)]
    points = []
    for n in ns:
        if not 1 <= n <= size:
            raise ValueError(f"n = {n} is outside 1..{size}")
        pairs = [_expected_best(p[:size], g[:size], n) for p, g in zip(proxy, gold, strict=True)]
        points.append(
            MonitorPoint(
                step=n,
                kl=kl_best_of_n(n),
                proxy=sum(a for a, _ in pairs) / len(pairs),
                gold=sum(b for _, b in pairs) / len(pairs),
            )
        )
    return points


@dataclass
class BestOfNResult:
    points: list[MonitorPoint]
    monitor: GamingMonitor
    proxy: list[list[float]]
    gold: list[list[float]]
    replies: list[list[str]]


def best_of_n(
    backend: Any,
    prompts: Sequence[Any],
    proxy: Any,
    gold: Any,
    n_max: int,
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    seed: int = 0,
    window: int = 3,
    tolerance: float = 0.02,
    out_dir: str | Path | None = None,
) -> BestOfNResult:
    """Sample `n_max` replies per prompt from `backend` (a Backend), score each with the `proxy` and `gold` rewards
    (`alignkit.rl.rewards`), and run the monitor over best-of-n for n = 1, 2, 4, ..., n_max; with `out_dir`, write
    monitor.json and monitor.svg there."""
    from alignkit.types import GenerationParams

    convs = [p.conversation() for p in prompts]
    replies: list[list[str]] = [[] for _ in prompts]
    for j in range(n_max):
        params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + 1000 * j)
        for i, c in enumerate(backend.generate(convs, params)):
            replies[i].append(c.text)
    flat_prompts = [p for p in prompts for _ in range(n_max)]
    flat_replies = [r for row in replies for r in row]
    proxy_flat, gold_flat = proxy(flat_prompts, flat_replies), gold(flat_prompts, flat_replies)
    proxy_scores = [proxy_flat[i * n_max : (i + 1) * n_max] for i in range(len(prompts))]
    gold_scores = [gold_flat[i * n_max : (i + 1) * n_max] for i in range(len(prompts))]
    points = best_of_n_curve(proxy_scores, gold_scores)
    monitor = GamingMonitor(window=min(window, len(points)), tolerance=tolerance)
    monitor.x_label = "sqrt(KL_bon) = sqrt(log n - (n-1)/n)"
    for p in points:
        monitor.add(p)
    if out_dir is not None:
        monitor.write(out_dir, title="best-of-n: proxy and gold against sqrt(KL_bon)")
    return BestOfNResult(points, monitor, proxy_scores, gold_scores, replies)
