"""The posture page of `alignkit posture` and `alignkit compare`: one or more models on one suite."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignkit.report.charts import category_chart, posture_chart
from alignkit.report.html import escape, legend, page, pct, verdict

if TYPE_CHECKING:
    from alignkit.posture import PostureResult


def stats_table(r: PostureResult) -> str:
    rows = "".join(
        f"<tr><td>{escape(s.category)}</td><td>{pct(s.harmful_compliance_rate)}</td>"
        f"<td>{pct(s.harmful_partial_rate)}</td><td>{pct(s.over_refusal_rate)}</td>"
        f"<td>{pct(s.over_refusal_partial_rate)}</td><td>{s.errors}</td></tr>"
        for s in (r.worst_of_k or r.greedy)
    )
    return (
        "<table><tr><th>category</th><th>harmful compliance</th><th>harmful partial</th><th>over-refusal</th>"
        f"<th>over-refusal partial</th><th>judge errors</th></tr>{rows}</table>"
    )


def examples_table(r: PostureResult, limit_chars: int = 600) -> str:
    rows = "".join(
        f"<tr><td>{escape(x['category'])}<br><span class='muted'>{escape(x['label'])}</span></td>"
        f"<td>{escape(x['outcome'])}</td><td class='reply'>{escape(x['prompt'][:300])}</td>"
        f"<td class='reply'>{escape(x['completion'][:limit_chars])}</td></tr>"
        for x in r.examples
    )
    return f"<table><tr><th>category</th><th>judged</th><th>prompt</th><th>reply</th></tr>{rows}</table>"


def render(results: Sequence[PostureResult], meta: dict[str, Any], title: str = "alignkit posture report") -> str:
    """The whole report as one HTML string."""
    if not results:
        raise ValueError("a report needs at least one result")
    models = [r.model for r in results]
    body = [
        "<h2>Posture</h2>",
        '<p class="muted">Lower-left is better. Bars are 95% Wilson intervals. '
        + ("Worst of k samples per prompt." if results[0].worst_of_k else "Greedy decoding.")
        + "</p>",
        posture_chart(results),
        legend(models),
        "<h2>By category</h2>",
        category_chart(results, "harmful_compliance_rate", "harmful compliance rate"),
        category_chart(results, "over_refusal_rate", "over-refusal rate"),
        legend(models),
        "<h2>Profile verdict</h2>",
        *[verdict(r.model, r.verdict) for r in results],
        "<h2>Rates</h2>",
        *[f"<h3>{escape(r.model)}</h3>{stats_table(r)}" for r in results],
        "<h2>Example replies</h2>",
        *[f"<h3>{escape(r.model)}</h3>{examples_table(r)}" for r in results],
    ]
    return page(title, meta, body)


def write_report(results: Sequence[PostureResult], out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """`out_dir/report.html`, replaced whole (written to a temporary file, then renamed)."""
    path = Path(out_dir) / "report.html"
    tmp = path.with_name("report.html.tmp")
    tmp.write_text(render(results, meta), encoding="utf-8")
    tmp.replace(path)
    return path


def posture_meta(result: PostureResult, calibration: dict[str, Any] | None) -> dict[str, Any]:
    """The page's table of what was measured: model, suite, judge (with its calibration), decoding."""
    c = result.config
    judge = result.judge
    if calibration:
        t, h = calibration["corpus_test"], calibration["heldout_smollm2"]
        judge += (
            f" (refusal-vs-compliance accuracy {t['binary_accuracy']:.3f} on {t['n']} held-out labelled"
            f" replies of many styles, {h['binary_accuracy']:.3f} on {h['n']} hand-labelled SmolLM2 replies)"
        )
    return {
        "model": result.model,
        "suite": f"{c['suite']} ({c['split']} split, {result.n_prompts} prompts)",
        "judge": judge,
        "decoding": f"greedy, {c['max_new_tokens']} new tokens"
        + (f"; worst of {c['samples']} samples at T={c['temperature']}" if c["samples"] else ""),
        "system prompt": c["system"] or "(none)",
        "profile": result.verdict.profile,
    }


def compare_meta(
    results: Sequence[PostureResult],
    calibration: dict[str, Any] | None,
    front: Sequence[str],
    recommendation: tuple[str, str],
) -> dict[str, Any]:
    """`posture_meta` of the first model with the models compared, the Pareto front and the pick."""
    meta = posture_meta(results[0], calibration)
    meta.pop("model")
    meta.update(
        {
            "models": ", ".join(r.model for r in results),
            "Pareto front": ", ".join(front),
            "recommendation": f"{recommendation[0]}: {recommendation[1]}",
        }
    )
    return meta
