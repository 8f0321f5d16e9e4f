"""`run_curate`: prompts into SFT and preference data under a constitution, from one spec."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.curate import CurateConfig, CurateResult
from alignkit.errors import AlignkitError
from alignkit.jobs.backend import BackendSpec
from alignkit.types import Prompt

Progress = Callable[[str, int, int], None]


@dataclass
class CurateSpec:
    model: str
    """The policy whose replies are critiqued, compared or distilled."""
    out: Path
    """Folder: sft.jsonl, preferences.jsonl, trace.jsonl, curate.json."""
    judge: str
    """Judge of the repair step (a `make_judge` spec)."""
    prompts: str | Sequence[Prompt] = "default"
    """A built-in suite (its `split`), a prompts file, or the prompts themselves."""
    split: str = "train"
    """Split of a built-in suite."""
    limit: int | None = None
    """Curate only the first N prompts."""
    constitution: str = "default"
    """default, healthcare, creative, or a YAML file."""
    config: CurateConfig = field(default_factory=CurateConfig)
    teacher: str | None = None
    """Feedback model (None: the policy itself)."""
    teacher_base_url: str | None = None
    """OpenAI-compatible endpoint serving the teacher (None: the teacher loads like the policy)."""
    backend: BackendSpec = field(default_factory=BackendSpec)
    name: str | None = None
    """Name the policy is recorded under (default: the model)."""
    prompts_source: str | None = None
    """What the provenance calls the prompts (default: `prompts` when it is a name)."""


def curate_provenance(constitution: str, prompts_source: str) -> dict[str, Any]:
    """What every curated record carries about where it came from."""
    from alignkit.constitution import constitution_hash

    return {"constitution_sha256": constitution_hash(constitution), "prompts_source": prompts_source}


def run_curate(
    spec: CurateSpec, progress: Progress | None = None, policy: Any = None, judge: Any = None
) -> CurateResult:
    """Curate (or resume curating) the prompts; `policy` and `judge` may be given already loaded."""
    from alignkit.constitution import load_constitution
    from alignkit.curate import curate
    from alignkit.judges import make_judge
    from alignkit.suites import load_suite, select_split

    principles = load_constitution(spec.constitution)
    if isinstance(spec.prompts, str):
        prompts = select_split(load_suite(spec.prompts), spec.split)  # type: ignore[arg-type]
        source = spec.prompts_source or spec.prompts
    else:
        prompts, source = list(spec.prompts), spec.prompts_source or "given"
    prompts = prompts[: spec.limit] if spec.limit is not None else prompts
    if not prompts:
        raise AlignkitError(f"no prompts in {spec.prompts} (split {spec.split})")
    policy = policy if policy is not None else spec.backend.build(spec.model, spec.name)
    if spec.teacher is None:
        teacher = policy
    elif spec.teacher_base_url:
        teacher = BackendSpec(kind="openai", base_url=spec.teacher_base_url, api_key_env=spec.backend.api_key_env,
                              concurrency=spec.backend.concurrency).build(spec.teacher)  # fmt: skip
    else:
        teacher = BackendSpec(batch_size=spec.backend.batch_size, device=spec.backend.device).build(spec.teacher)
    return curate(
        prompts,
        policy=policy,
        judge=judge if judge is not None else make_judge(spec.judge),
        constitution=principles,
        out_dir=spec.out,
        config=spec.config,
        teacher=teacher,
        progress=progress,
        provenance=curate_provenance(spec.constitution, source),
    )
