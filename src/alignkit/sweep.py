"""`alignkit sweep GRID.yaml --out DIR`: many recipes on one preset, measured on the same test split.

Each variant is a full `alignkit run` into `DIR/<variant>/`. Variants whose settings agree on everything
before training (model, judge, measuring budgets, red-team, curation) share those stages: the first one
runs them, the others start from a copy, so a sweep over training recipes pays for baseline, red-team and
curation once. Training stages are shared the same way as far as two variants' method chains agree
(same methods with the same settings, in order): `[sft, dpo]` and `[sft, orpo]` train SFT once. A killed
sweep resumes: finished variants are skipped, the one in progress resumes inside itself. `sweep.json`,
`sweep.md` and `sweep.html` (table and Pareto plot) are written after each variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alignkit.errors import AlignkitError
from alignkit.layout import RunLayout
from alignkit.presets import ONLINE_DPO, Preset, make_preset
from alignkit.settings import merge

Progress = Callable[[str, int, int], None]
SHARED_STAGES = ("baseline", "redteam", "curate")
"""Stages that depend only on settings before training, so variants that agree there share them."""
TRAINING_KEYS = ("methods", "train", "on_policy", "guard")
"""Preset keys that only the training stages and after them read."""


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    """Folder name of the variant's run (letters, digits, '-', '_', '.')."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Preset settings over the sweep's own, dotted keys allowed (`train.dpo.beta: 0.2`)."""


class SweepSpec(BaseModel):
    """A sweep file: one preset, shared settings, then a grid and/or a list of named variants."""

    model_config = ConfigDict(extra="forbid")

    preset: str = "cpu-demo"
    """The preset every variant starts from."""
    model: str | None = None
    """The model to align (default: the preset's)."""
    constitution: str = "default"
    """default, healthcare, creative, or a YAML file."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Settings every variant shares, over the preset's."""
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """Every combination of these values is a variant (named from its values)."""
    variants: list[Variant] = Field(default_factory=list)
    """Named variants, besides the grid's."""


def load_sweep(path: str | Path) -> SweepSpec:
    from alignkit.yamlfile import load_yaml_model

    return load_yaml_model(Path(path), SweepSpec)


def _as_changes(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings with dotted keys as the nested mapping `merge` lays over a preset."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _label(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")).strip('"').replace("/", "-")


def expand(spec: SweepSpec) -> list[tuple[str, Preset]]:
    """(name, validated preset) per variant: the grid's combinations, then the named variants."""
    from alignkit.presets import PRESETS

    if spec.preset not in PRESETS:
        raise AlignkitError(f"sweep: unknown preset '{spec.preset}'; known: {', '.join(PRESETS)}")
    named: list[tuple[str, dict[str, Any]]] = []
    keys = list(spec.grid)
    for values in itertools.product(*(spec.grid[k] for k in keys)) if keys else []:
        chosen = dict(zip(keys, values, strict=True))
        named.append(("_".join(f"{k.split('.')[-1]}={_label(v)}" for k, v in chosen.items()), chosen))
    named += [(v.name, v.settings) for v in spec.variants]
    if not named:
        raise AlignkitError("sweep: no variants (give a grid or a list of variants)")
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise AlignkitError(f"sweep: two variants are named '{next(n for n in names if names.count(n) > 1)}'")
    out = []
    for name, settings in named:
        if not name.replace("-", "").replace("_", "").replace(".", "").replace("=", "").replace(",", "").isalnum():
            raise AlignkitError(f"sweep: variant name '{name}' must be letters, digits, '-', '_', '.', '=' or ','")
        changes = merge(_as_changes(spec.settings), _as_changes(settings))
        items = [f"{k}={json.dumps(v)}" for k, v in _flatten(changes).items()]
        out.append((name, make_preset(spec.preset, spec.model, items)))
    return out


def _flatten(changes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def shared_key(preset: Preset, constitution: str) -> str:
    """What the stages before training depend on: variants with the same key share them."""
    body = {k: v for k, v in preset.resolved().items() if k not in (*TRAINING_KEYS, "name")}
    body["constitution"] = constitution
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _chain(preset: Preset) -> list[tuple[str, str]]:
    """(stage, hash of the method chain up to and including it): two variants whose chains agree up to a
    stage trained the same model there."""
    from alignkit.layout import stage_names

    out: list[tuple[str, str]] = []
    body: list[Any] = []
    for stage, method in zip(stage_names(preset.methods), preset.methods, strict=True):
        body.append([method, preset.train[method].model_dump(mode="json")])
        if method == ONLINE_DPO:  # a round's data is curated with the on-policy settings
            body.append(dataclasses.asdict(preset.on_policy))
        out.append((stage, hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]))
    return out


def _seed_from(source: Path, source_preset: Preset, target: Path, preset: Preset) -> list[str]:
    """Start `target`'s run with what `source` finished that `target` would do the same way: the stages
    before training (copied), then the longest common prefix of training stages (their adapter and metrics
    copied; the next stage starts from the source's model, which stays where it is). Returns the stages."""
    src, dst = RunLayout(source), RunLayout(target)
    if dst.stages.exists() or not src.stages.exists():
        return []
    done = json.loads(src.stages.read_text(encoding="utf-8"))
    if not all(s in done for s in SHARED_STAGES):
        return []
    dst.root.mkdir(parents=True, exist_ok=True)
    for folder in (src.posture("before"), src.redteam_train, src.redteam_before, src.curate, src.data):
        if folder.exists():
            shutil.copytree(folder, dst.root / folder.name, dirs_exist_ok=True)
    shared = {k: v for k, v in done.items() if k in SHARED_STAGES}
    for (stage, key), (other, other_key) in zip(_chain(preset), _chain(source_preset), strict=False):
        if stage != other or key != other_key or stage not in done:
            break
        if src.round_curate(stage).exists():  # an odpo round's pairs
            shutil.copytree(src.round_curate(stage), dst.round_curate(stage), dirs_exist_ok=True)
        for name in ("adapter", "metrics.jsonl", "config.yaml"):
            path = src.train(stage) / name
            if path.is_dir():
                shutil.copytree(path, dst.train(stage) / name, dirs_exist_ok=True)
            elif path.exists():
                dst.train(stage).mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dst.train(stage) / name)
        shared[stage] = done[stage]
    dst.stages.write_text(json.dumps(shared, indent=1) + "\n", encoding="utf-8")
    return list(shared)


def _share_baseline_helpfulness(sources: list[Path], target: Path) -> None:
    """A variant whose shared baseline predates helpfulness takes it from an earlier variant with the same
    shared stages that measured it (the same model and settings), instead of measuring it again."""
    dest = RunLayout(target).posture("before") / "helpfulness.json"
    if not RunLayout(target).stages.exists() or dest.exists():
        return
    for source in sources:
        path = RunLayout(source).posture("before") / "helpfulness.json"
        if path.exists():
            shutil.copy2(path, dest)
            return


def run_sweep(spec: SweepSpec, out_dir: str | Path, progress: Progress | None = None) -> dict[str, Any]:
    """Run every variant (resuming), then write sweep.json, sweep.md and sweep.html into `out_dir`."""
    from alignkit.pipeline import run as run_pipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants = expand(spec)
    (out / "sweep.yaml").write_text(json.dumps(spec.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8")
    earlier: dict[str, list[tuple[Path, Preset]]] = {}
    rows: list[dict[str, Any]] = []
    for i, (name, preset) in enumerate(variants):
        folder = out / name
        key = shared_key(preset, spec.constitution)
        # the earlier variant that shares the most finished stages with this one
        best: tuple[int, Path, Preset] | None = None
        for source, source_preset in earlier.get(key, []):
            common = sum(1 for _ in _common_prefix(_chain(preset), _chain(source_preset)))
            if best is None or common > best[0]:
                best = (common, source, source_preset)
        if best is not None:
            _seed_from(best[1], best[2], folder, preset)
        _share_baseline_helpfulness([source for source, _ in earlier.get(key, [])], folder)
        earlier.setdefault(key, []).append((folder, preset))
        started = time.monotonic()
        inner = _prefixed(progress, f"{name} ({i + 1}/{len(variants)})")
        result = run_pipeline(preset, spec.constitution, folder, inner)
        rows.append(variant_row(name, preset, folder, result.stages, time.monotonic() - started))
        write_sweep(out, spec, rows)
    return {"variants": rows}


def _common_prefix(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return out


def _prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    if progress is None:
        return None
    outer = progress

    def report(stage: str, done: int, total: int) -> None:
        outer(f"{prefix} {stage}", done, total)

    return report


def variant_row(name: str, preset: Preset, folder: Path, stages: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One line of the sweep table: the variant's settings, its rates before/after with intervals, the
    helpfulness it kept (when measured), and its wall time (all stages, and the training ones alone)."""
    layout = RunLayout(folder)
    headline = {}
    for which in ("before", "after", "guarded"):
        path = layout.posture(which) / "headline.json"
        if path.exists():
            headline[which] = json.loads(path.read_text(encoding="utf-8"))
    helpful = {}
    for which in ("before", "after"):
        path = layout.posture(which) / "helpfulness.json"
        if path.exists():
            helpful[which] = json.loads(path.read_text(encoding="utf-8"))
    trained = [s for s in stages if s not in (*SHARED_STAGES, "after", "guard", "report")]
    return {
        "name": name,
        "folder": str(folder),
        "methods": list(preset.methods),
        "settings": {m: preset.train[m].model_dump(mode="json") for m in preset.methods},
        "headline": headline,
        "helpfulness": helpful,
        "seconds_all_stages": round(sum(float(v.get("seconds", 0)) for v in stages.values()), 1),
        "seconds_training": round(sum(float(stages[s].get("seconds", 0)) for s in trained), 1),
        "seconds_this_invocation": round(seconds, 1),
    }


def write_sweep(out: Path, spec: SweepSpec, rows: list[dict[str, Any]]) -> None:
    from alignkit.report.sweep import render_sweep, sweep_table_markdown

    body = {"preset": spec.preset, "constitution": spec.constitution, "variants": rows}
    (out / "sweep.json").write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    (out / "sweep.md").write_text(sweep_table_markdown(rows), encoding="utf-8")
    (out / "sweep.html").write_text(render_sweep(body), encoding="utf-8")
