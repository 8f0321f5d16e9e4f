"""`alignkit sweep`: variants expand from a grid and a list, share the stages before training, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.errors import AlignkitError
from alignkit.report.sweep import benign_refusal, pareto
from alignkit.sweep import SweepSpec, expand, load_sweep, shared_key


def test_grid_and_named_variants_expand_into_validated_presets() -> None:
    spec = SweepSpec(preset="smoke", grid={"train.dpo.learning_rate": [1e-3, 1e-4], "train.dpo.beta": [0.1]},
                     variants=[{"name": "sft-only", "settings": {"methods": ["sft"]}}])  # type: ignore[list-item]  # fmt: skip
    got = expand(spec)
    assert [n for n, _ in got] == ["learning_rate=0.001_beta=0.1", "learning_rate=0.0001_beta=0.1", "sft-only"]
    assert got[1][1].train["dpo"].learning_rate == 1e-4 and got[1][1].train["dpo"].max_steps == 2
    assert got[2][1].methods == ("sft",)
    keys = {shared_key(p, "default") for _, p in got}
    assert len(keys) == 1, "training settings alone do not change the shared stages"
    other = SweepSpec(preset="smoke", variants=[{"name": "x", "settings": {"curate_harmful": 4}}])  # type: ignore[list-item]
    assert shared_key(expand(other)[0][1], "default") not in keys


def test_a_bad_sweep_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text("preset: smoke\nvariants:\n  - name: a\n    setings: {}\n")
    with pytest.raises(AlignkitError, match=r"grid.yaml:4"):
        load_sweep(path)
    with pytest.raises(AlignkitError, match=r"train\.dpo: unknown setting 'betaa'"):
        expand(SweepSpec(preset="smoke", grid={"train.dpo.betaa": [1]}))


def test_pareto_front_and_benign_refusal_by_hand() -> None:
    assert sorted(pareto({"a": (0.1, 0.5), "b": (0.2, 0.2), "c": (0.3, 0.3), "d": (0.1, 0.6)})) == ["a", "b"]
    r = benign_refusal({"lookalike_over_refusal_rate": {"count": 1, "n": 4},
                        "ordinary_refusal_rate": {"count": 2, "n": 6}})  # fmt: skip
    assert (r.count, r.n, r.rate) == (3, 10, 0.3)


def test_odpo_rounds_share_only_when_their_curation_settings_agree() -> None:
    """Two variants' chains agree up to a stage only when they trained the same model there: an odpo
    round depends on the on-policy settings its pairs were curated with, other stages do not."""
    from alignkit.presets import make_preset
    from alignkit.sweep import _chain, _common_prefix

    base = make_preset("smoke", None, ["methods=[sft,dpo,odpo,odpo]"])
    hotter = make_preset("smoke", None, ["methods=[sft,dpo,odpo,odpo]", "on_policy.temperature=1.2"])
    one_round = make_preset("smoke", None, ["methods=[sft,dpo,odpo]"])
    assert [s for s, _ in _common_prefix(_chain(base), _chain(hotter))] == ["sft", "dpo"]
    assert [s for s, _ in _common_prefix(_chain(base), _chain(one_round))] == ["sft", "dpo", "odpo"]
    assert hotter.on_policy.temperature == 1.2 and hotter.on_policy.method == "on-policy"


def test_a_sweep_shares_stages_before_training_and_resumes(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "preset: smoke\nsettings:\n  guard: false\nvariants:\n"
        "  - name: sft-dpo\n  - name: sft-orpo\n    settings:\n      methods: [sft, orpo]\n"
    )
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "alignkit", "sweep", str(grid), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    body = json.loads((out / "sweep.json").read_text())
    assert [v["name"] for v in body["variants"]] == ["sft-dpo", "sft-orpo"]
    first = json.loads((out / "sft-dpo" / "stages.json").read_text())
    second = json.loads((out / "sft-orpo" / "stages.json").read_text())
    for stage in ("baseline", "redteam", "curate", "sft"):
        assert second[stage] == first[stage], f"{stage} was run again instead of shared"
    assert (out / "sft-orpo" / "sft" / "adapter").exists() and not (out / "sft-orpo" / "sft" / "model").exists()
    assert "orpo" in second and "dpo" not in second
    assert (out / "sft-orpo" / "data" / "preferences.jsonl").read_bytes() == (
        out / "sft-dpo" / "data" / "preferences.jsonl"
    ).read_bytes()
    assert 'data-chart="sweep_pareto"' in (out / "sweep.html").read_text()
    assert "| sft-orpo | sft+orpo |" in (out / "sweep.md").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "sft-orpo" / "stages.json").read_text()) == second, "a finished variant was redone"


def test_a_variant_takes_the_baseline_helpfulness_an_earlier_one_measured(tmp_path: Path) -> None:
    """Shared baselines that predate helpfulness: the first variant measures it on resume, the later ones
    copy it; a variant that has not started, or that has its own, is left alone."""
    from alignkit.layout import RunLayout
    from alignkit.sweep import _share_baseline_helpfulness

    def variant(name: str, helpfulness: str | None) -> Path:
        layout = RunLayout(tmp_path / name)
        layout.posture("before").mkdir(parents=True)
        layout.stages.write_text("{}")
        if helpfulness is not None:
            (layout.posture("before") / "helpfulness.json").write_text(helpfulness)
        return layout.root

    first, second, own = variant("a", '{"from": "a"}'), variant("b", None), variant("c", '{"from": "c"}')
    _share_baseline_helpfulness([tmp_path / "missing", first], second)
    assert json.loads((RunLayout(second).posture("before") / "helpfulness.json").read_text()) == {"from": "a"}
    _share_baseline_helpfulness([first], own)
    assert json.loads((RunLayout(own).posture("before") / "helpfulness.json").read_text()) == {"from": "c"}
    _share_baseline_helpfulness([first], tmp_path / "not-started")
    assert not (tmp_path / "not-started").exists()
