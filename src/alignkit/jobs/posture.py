"""The jobs behind `alignkit posture` and `alignkit compare`: measure, then write the JSON and the page.

They sit above `alignkit.posture` (the measurement) and `alignkit.report` (the page), so neither of
those imports the other's files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alignkit.backends.base import Backend
from alignkit.errors import AlignkitError
from alignkit.helpfulness import HelpfulnessResult
from alignkit.jobs.backend import BackendSpec
from alignkit.judges.base import Judge
from alignkit.posture import (
    PostureConfig,
    PostureResult,
    Progress,
    judge_calibration,
    pareto_front,
    recommend,
    run_posture,
    write_posture,
)
from alignkit.profiles import Profile
from alignkit.report.posture import compare_meta, posture_meta, write_report


def measure(
    backend: Backend,
    judge: Judge,
    profile: Profile,
    config: PostureConfig,
    out_dir: str | Path,
    progress: Progress | None = None,
) -> PostureResult:
    """Measure one model, then write posture.json and report.html into `out_dir`."""
    result = run_posture(backend, judge, profile, config, out_dir, progress)
    calibration = judge_calibration(judge)
    write_posture(result, out_dir, calibration)
    write_report([result], out_dir, posture_meta(result, calibration))
    return result


def compare(
    models: list[str],
    load: Callable[[str], Backend],
    judge: Judge,
    profile: Profile,
    config: PostureConfig,
    out_dir: str | Path,
    progress: Progress | None = None,
) -> tuple[list[PostureResult], list[str], tuple[str, str]]:
    """Measure several models into one run folder, loading one at a time (so that two large models
    never sit in memory together); writes compare.json and report.html and returns
    (results, Pareto front, (recommended model, why))."""
    results = []
    for model in models:
        backend = load(model)
        results.append(run_posture(backend, judge, profile, config, out_dir, progress))
        del backend
    if len({r.model for r in results}) != len(results):
        raise ValueError("compare needs models with distinct names")
    front, rec = pareto_front(results), recommend(results)
    calibration = judge_calibration(judge)
    body = {
        "models": [r.as_dict() for r in results],
        "pareto_front": front,
        "recommendation": {"model": rec[0], "why": rec[1]},
        "judge_calibration": calibration,
    }
    (Path(out_dir) / "compare.json").write_text(json.dumps(body, indent=1) + "\n")
    write_report(results, out_dir, compare_meta(results, calibration, front, rec))
    return results, front, rec


@dataclass
class PostureSpec:
    models: list[str]
    """The model to measure, or several to compare (registry names, folders, .gguf, hub ids, endpoint names)."""
    out: Path
    """Run folder: alignkit.sqlite, posture.json (compare.json), report.html, replies/."""
    judge: str
    """Judge of every reply (a `make_judge` spec)."""
    profile: str = "general"
    """Workload profile: general, healthcare, legal, finance, creative, or a YAML file."""
    config: PostureConfig = field(default_factory=PostureConfig)
    """Suite, split, reply length, samples."""
    backend: BackendSpec = field(default_factory=BackendSpec)
    helpfulness: bool = True
    """Also measure helpfulness (checkable answers, reference likelihood, degeneration) into
    helpfulness.json; `config.limit` caps its items per kind too."""


@dataclass
class Loaded:
    """What a posture job needs in memory: the judge, the profile, and (for one model) its backend."""

    judge: Judge
    profile: Profile
    backend: Backend | None = None


def load(spec: PostureSpec, models: bool = True) -> Loaded:
    """Load the judge and the profile, and the model too when `models` (compare loads them one at a time)."""
    from alignkit.judges import make_judge
    from alignkit.profiles import load_profile

    profile = load_profile(spec.profile)
    backend = spec.backend.build(spec.models[0]) if models else None
    return Loaded(make_judge(spec.judge), profile, backend)


def measure_posture(
    spec: PostureSpec, progress: Progress | None = None, loaded: Loaded | None = None
) -> tuple[PostureResult, HelpfulnessResult | None]:
    """`alignkit posture`: one model measured into `spec.out`, and its helpfulness beside it."""
    loaded = loaded or load(spec)
    backend = loaded.backend or spec.backend.build(spec.models[0])
    result = measure(backend, loaded.judge, loaded.profile, spec.config, spec.out, progress)
    if not spec.helpfulness:
        return result, None
    from alignkit.helpfulness import measure_helpfulness

    helpful = measure_helpfulness(backend, max_new_tokens=spec.config.max_new_tokens, system=spec.config.system,
                                  limit=spec.config.limit, out_dir=spec.out, progress=progress)  # fmt: skip
    (Path(spec.out) / "helpfulness.json").write_text(json.dumps(helpful.as_dict(), indent=1) + "\n")
    return result, helpful


def compare_posture(
    spec: PostureSpec, progress: Progress | None = None, loaded: Loaded | None = None
) -> tuple[list[PostureResult], list[str], tuple[str, str]]:
    """`alignkit compare`: several models on one suite, the Pareto front and the recommendation."""
    if len(spec.models) < 2:
        raise AlignkitError("compare needs at least two models")
    loaded = loaded or load(spec, models=False)
    return compare(spec.models, spec.backend.build, loaded.judge, loaded.profile, spec.config, spec.out, progress)
