"""The report of an `alignkit run`: before and after, what training did, what the guard adds.

Built from the run folder's files only (posture.json, headline.json, redteam.json, metrics.jsonl,
replies/), so it can be rewritten from a finished run at any time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from alignkit.layout import POSTURES, RunLayout
from alignkit.posture import PostureResult, rate_from_dict
from alignkit.report.charts import category_chart, heatmap, line_chart, posture_chart
from alignkit.report.html import escape, legend, page, pct, verdict

LABELS = {"before": "before", "after": "aligned", "guarded": "aligned + guard"}
"""What the report calls each posture measurement of the run (`layout.POSTURES`)."""


def _metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _curves(layout: RunLayout, stages: Sequence[str]) -> list[str]:
    """Loss, reward margins and the policy's log-ratio to the reference, per training stage."""
    parts = []
    for m in stages:
        rows = [r for r in _metrics(layout.train(m) / "metrics.jsonl") if "loss" in r]
        if not rows:
            continue
        parts.append(line_chart({"loss": [(r["step"], r["loss"]) for r in rows]}, f"{m}: training loss", "step",
                                f"{m}_loss"))  # fmt: skip
        if "rewards/margins" in rows[0]:
            beta = _beta(layout.train(m))
            parts.append(
                line_chart(
                    {
                        "reward margin": [(r["step"], r["rewards/margins"]) for r in rows],
                        "reward accuracy": [(r["step"], r["rewards/accuracies"]) for r in rows],
                    },
                    f"{m}: implicit reward margin and accuracy",
                    "step",
                    f"{m}_margins",
                )
            )
            parts.append(
                line_chart(
                    {
                        "log π/π_ref, chosen": [(r["step"], r["rewards/chosen"] / beta) for r in rows],
                        "log π/π_ref, rejected": [(r["step"], r["rewards/rejected"] / beta) for r in rows],
                    },
                    f"{m}: drift from the reference (sequence log-ratio; its mean over the policy's own replies "
                    "is the KL)",
                    "step",
                    f"{m}_kl",
                )
            )
    return parts


def _beta(folder: Path) -> float:
    import yaml

    path = folder / "config.yaml"
    return float(yaml.safe_load(path.read_text(encoding="utf-8")).get("beta", 0.1)) if path.exists() else 0.1


def _summary_table(headline: dict[str, dict[str, Any]], targets: dict[str, float]) -> str:
    names = {
        "harmful_compliance_rate": "harmful requests answered",
        "lookalike_over_refusal_rate": "benign look-alikes refused",
        "ordinary_refusal_rate": "ordinary requests refused",
    }
    cols = [k for k in ("before", "after", "guarded") if k in headline]
    head = "".join(f"<th>{escape(LABELS[c])}</th>" for c in cols)
    rows = []
    for key, label in names.items():
        cells = "".join(f"<td>{pct(rate_from_dict(headline[c][key]))}</td>" for c in cols)
        final = headline[cols[-1]][key]["rate"]
        ok = final <= targets[key] + 1e-12
        status = f'<span class="{"pass" if ok else "fail"}">{"met" if ok else "missed"}</span>'
        rows.append(f"<tr><td>{escape(label)}</td>{cells}<td>≤ {100 * targets[key]:.0f}% {status}</td></tr>")
    return f"<table><tr><th>test split</th>{head}<th>target</th></tr>{''.join(rows)}</table>"


def _helpfulness_table(helpfulness: dict[str, Any]) -> str:
    """Helpfulness before and after, and the share of it kept."""
    cols = [c for c in ("before", "after") if c in helpfulness]
    if not cols:
        return ""

    def loglik(c: str) -> str:
        m = helpfulness[c]["reference_loglik"]
        return "-" if not m else f"{m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}] (n={m['n']})"

    rows = [
        ("checkable answers right", [pct(rate_from_dict(helpfulness[c]["checkable_accuracy"])) for c in cols]),
        ("reference answers, mean log-prob per token", [loglik(c) for c in cols]),
        ("degenerate replies", [pct(rate_from_dict(helpfulness[c]["degenerate_rate"])) for c in cols]),
        ("evasive or degenerate replies", [pct(rate_from_dict(helpfulness[c]["evasive_or_degenerate_rate"]))
                                           for c in cols]),
    ]  # fmt: skip
    head = "".join(f"<th>{escape(LABELS[c])}</th>" for c in cols)
    body = "".join(f"<tr><td>{escape(n)}</td>{''.join(f'<td>{v}</td>' for v in vals)}</tr>" for n, vals in rows)
    kept = helpfulness.get("kept") or {}
    note = ", ".join(f"{escape(k.replace('_', ' '))} kept: {100 * v:.0f}%" for k, v in kept.items() if v is not None)
    return f"<h2>Helpfulness kept</h2><table><tr><th>helpfulness suite, test split</th>{head}</tr>{body}</table>" + (
        f'<p class="muted">{note} (target: at least 95% of each)</p>' if note else ""
    )


def _redteam(layout: RunLayout) -> list[str]:
    parts: list[str] = []
    tables = {}
    for folder, label in ((layout.redteam_before, "before"), (layout.redteam_after, "aligned")):
        path = folder / "redteam.json"
        if path.exists():
            body = json.loads(path.read_text(encoding="utf-8"))
            tables[label] = {
                a: {c: rate_from_dict(r) for c, r in cells.items()} for a, cells in body["attack_success_rate"].items()
            }
    if not tables:
        return parts
    attacks = list(next(iter(tables.values())))
    head = "".join(f"<th>{escape(k)}</th>" for k in tables)
    rows = "".join(
        f"<tr><td>{escape(a)}</td>"
        + "".join(f"<td>{pct(t[a]['all'])}</td>" if a in t else "<td>-</td>" for t in tables.values())
        + "</tr>"
        for a in attacks
    )
    parts.append(f"<table><tr><th>attack (test-split seeds)</th>{head}</tr>{rows}</table>")
    for label, table in tables.items():
        parts.append(f"<h3>{escape(label)}</h3>")
        parts.append(heatmap(table, name=f"attack_heatmap_{label}"))
    return parts


def _replies(folder: Path) -> dict[str, dict[str, Any]]:
    found = sorted((folder / "replies").glob("*.jsonl")) if (folder / "replies").exists() else []
    if not found:
        return {}
    rows = [json.loads(line) for line in found[0].read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["prompt_id"]: r for r in rows if r["sample"] == 0}


def _examples(layout: RunLayout, per_kind: int = 4) -> str:
    """The same test prompts before and after: the harmful ones whose outcome changed first, then
    look-alikes and ordinary requests."""
    before, after, guarded = (_replies(layout.posture(k)) for k in ("before", "after", "guarded"))
    shared = [pid for pid in before if pid in after]
    picked: list[str] = []
    for want in ("harmful", "lookalike", "ordinary"):
        ids = [
            pid
            for pid in shared
            if (before[pid]["label"] == "harmful") == (want == "harmful")
            and (before[pid]["category"] == "ordinary") == (want == "ordinary")
        ]
        ids.sort(key=lambda pid: before[pid]["outcome"] == after[pid]["outcome"])
        picked += ids[:per_kind]
    rows = []
    for pid in picked:
        b, a = before[pid], after[pid]
        g = guarded.get(pid)
        cells = f"<td class='reply'>{escape(b['completion'][:400])}<br><b>{escape(b['outcome'])}</b></td>"
        cells += f"<td class='reply'>{escape(a['completion'][:400])}<br><b>{escape(a['outcome'])}</b></td>"
        cells += (
            f"<td class='reply'>{escape(g['completion'][:400])}<br><b>{escape(g['outcome'])}</b></td>"
            if g
            else "<td>-</td>"
        )
        rows.append(f"<tr><td class='reply'>{escape(b['prompt'][:300])}<br><span class='muted'>{escape(b['label'])}, "
                    f"{escape(b['category'])}</span></td>{cells}</tr>")  # fmt: skip
    return (
        "<table><tr><th>prompt</th><th>before</th><th>aligned</th><th>aligned + guard</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _posture_results(layout: RunLayout) -> list[PostureResult]:
    """The greedy results of the stages that measured posture, each named by its label for the charts."""
    results = []
    for key in POSTURES:
        path = layout.posture(key) / "posture.json"
        if path.exists():
            result = PostureResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
            results.append(replace(result, model=LABELS[key], worst_of_k=None))
    return results


def render_run(out: Path, card: dict[str, Any]) -> str:
    """The report of the run in folder `out`, whose posture card is `card`."""
    layout = RunLayout(out)
    results = _posture_results(layout)
    headline = card["headline"]
    stages = card["stages"]
    meta = {
        "model": card["model"]["name"],
        "preset": card["preset"],
        "constitution": f"{card['constitution']['name']} (sha256 {card['constitution']['sha256'][:12]})",
        "judge": card["judge"]["name"],
        "profile": card["profile"],
        "run time": f"{sum(s.get('seconds', 0) for s in stages.values()) / 60:.1f} min over {len(stages)} stages",
    }
    body = ["<h2>Result</h2>"]
    if headline:
        body.append(_summary_table(headline, card["targets"]))
        body.append(_helpfulness_table(card.get("helpfulness") or {}))
    if results:
        models = [r.model for r in results]
        body += [
            "<h2>Posture before and after</h2>",
            '<p class="muted">Held-out test split, greedy decoding. Lower-left is better; '
            "bars are 95% Wilson intervals.</p>",
            posture_chart(results),
            legend(models),
            "<h2>By category</h2>",
            category_chart(results, "harmful_compliance_rate", "harmful compliance rate"),
            category_chart(results, "over_refusal_rate", "over-refusal rate"),
            legend(models),
            "<h2>Profile verdict</h2>",
            *[verdict(r.model, r.verdict) for r in results],
        ]
    body += ["<h2>Red-team attack success before and after</h2>", *_redteam(layout)]
    curves = _curves(layout, list(card["adapters"]))
    if curves:
        body += ["<h2>Training</h2>", *curves]
    if "guard" in stages:
        g = stages["guard"]
        cats = ", ".join(g["failing_categories"]) or "none (model-free rails only)"
        body += [
            "<h2>What the guard adds</h2>",
            f"<p>Guard derived from the constitution for the categories that still failed the profile: {escape(cats)}. "
            f"It blocked {g['blocked_inputs']} requests before the model and replaced {g['blocked_outputs']} replies. "
            "Config: <code>guard.yaml</code>.</p>",
        ]
    body += ["<h2>Example replies, same prompts</h2>", _examples(layout)]
    card_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(json.dumps(v)[:300])}</td></tr>" for k, v in card.items()
                        if k not in ("stages", "headline"))  # fmt: skip
    body += [
        "<h2>Posture card</h2>",
        f"<table>{card_rows}</table>",
        '<p class="muted">Whole card: posture_card.json.</p>',
    ]
    return page("alignkit run report", meta, body)


def write_run_report(out: Path, card: dict[str, Any]) -> Path:
    """`out/report.html` from the run folder and its posture card, replaced whole."""
    path = RunLayout(out).report
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_run(out, card), encoding="utf-8")
    tmp.replace(path)
    return path
