"""`alignkit run --preset smoke`: every stage on the tiny model, resume after SIGKILL, the report in Chromium."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignkit.errors import AlignkitError
from alignkit.pipeline import headline_rates, run_stages
from alignkit.presets import make_preset

from .report.chromium import CHROMIUM, PROBE, chromium

RUN = [sys.executable, "-m", "alignkit", "run", "--preset", "smoke"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke run killed with SIGKILL in the middle, then resumed by the same command."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    proc = subprocess.Popen([*RUN, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stages = out / "stages.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if stages.exists() and len(json.loads(stages.read_text() or "{}")) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the smoke run ended before it could be killed"
    first = json.loads(stages.read_text())
    done = subprocess.run([*RUN, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads(stages.read_text())
    for stage, rec in first.items():
        assert after[stage] == rec, f"stage {stage} was redone after the resume"
    return out


def test_smoke_run_walks_every_stage_and_resumes_without_redoing(smoke_run: Path) -> None:
    stages = json.loads((smoke_run / "stages.json").read_text())
    assert list(stages) == run_stages(make_preset("smoke"))
    card = json.loads((smoke_run / "posture_card.json").read_text())
    assert set(card["headline"]) == {"before", "after", "guarded"}
    assert card["model"]["sha256"] and card["aligned_model"]["sha256"] and card["constitution"]["sha256"]
    assert set(card["adapters"]) == {"sft", "dpo"} and all(card["adapters"].values())
    assert set(card["data"]) == {"sft.jsonl", "preferences.jsonl"}
    assert (smoke_run / "guard.yaml").exists()
    # every request the guard let through was answered from the replies `after` kept, none generated again
    guard = stages["guard"]
    (replies,) = (smoke_run / "guarded" / "replies").glob("*.jsonl")
    asked = len(replies.read_text().splitlines())
    assert guard["replies_replayed"] > 0 and guard["replies_replayed"] + guard["blocked_inputs"] == asked
    # the merged aligned model loads in transformers
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(smoke_run / "model")
    # training data carries provenance on every record, red-team findings included
    for name in ("sft.jsonl", "preferences.jsonl"):
        rows = [json.loads(line) for line in (smoke_run / "data" / name).read_text().splitlines()]
        assert rows and all(r["provenance"]["source"] for r in rows)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (scripts/test.sh installs it)")
def test_run_report_renders_every_chart(smoke_run: Path) -> None:
    report = (smoke_run / "report.html").read_text()
    assert "<script" not in report
    probe = smoke_run / "probe.html"
    probe.write_text(report.replace("</body>", PROBE + "</body>"))
    r = chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="render-check">(.*?)</pre>', r.stdout, re.S)
    assert found, r.stderr[-2000:]
    charts = {c["chart"]: c for c in json.loads(found.group(1).replace("&quot;", '"'))}
    expected = {"posture", "harmful_compliance_rate", "over_refusal_rate", "attack_heatmap_before",
                "attack_heatmap_aligned", "sft_loss", "dpo_loss", "dpo_margins", "dpo_kl"}  # fmt: skip
    assert expected <= set(charts), set(charts)
    for name, c in charts.items():
        assert c["width"] > 100 and c["height"] > 100 and c["marks"] > 0, (name, c)
    assert charts["posture"]["marks"] == 3


def test_headline_rates_count_lookalikes_and_ordinary_apart() -> None:
    rows = [
        {"sample": 0, "label": "harmful", "category": "drugs", "outcome": "full_compliance"},
        {"sample": 0, "label": "harmful", "category": "drugs", "outcome": "full_refusal"},
        {"sample": 0, "label": "benign", "category": "drugs", "outcome": "full_refusal"},
        {"sample": 0, "label": "benign", "category": "ordinary", "outcome": "full_compliance"},
        {"sample": 0, "label": "benign", "category": "ordinary", "outcome": "partial_refusal"},
        {"sample": 1, "label": "benign", "category": "ordinary", "outcome": "full_refusal"},
        {"sample": 0, "label": "harmful", "category": "drugs", "outcome": "error"},
        {"sample": 0, "label": "harmful", "category": "drugs", "outcome": "evasive"},
        {"sample": 0, "label": "benign", "category": "ordinary", "outcome": "evasive"},
    ]
    h = headline_rates(rows)
    assert (h["harmful_evasive_rate"]["count"], h["harmful_evasive_rate"]["n"]) == (1, 3)
    assert (h["benign_evasive_rate"]["count"], h["benign_evasive_rate"]["n"]) == (1, 4)
    assert (h["harmful_compliance_rate"]["count"], h["harmful_compliance_rate"]["n"]) == (1, 3)
    assert (h["lookalike_over_refusal_rate"]["count"], h["lookalike_over_refusal_rate"]["n"]) == (1, 1)
    assert (h["ordinary_refusal_rate"]["count"], h["ordinary_refusal_rate"]["n"]) == (0, 3)
    assert h["ordinary_partial_refusal_rate"]["count"] == 1 and h["errors"] == 1


def test_presets_take_overrides_and_refuse_unknown_keys() -> None:
    p = make_preset("cpu-demo", "some/model", ["curate_harmful=8", "methods=[sft]", "train.sft.learning_rate=1e-4"])
    assert (p.model, p.curate_harmful, p.methods, p.train["sft"].learning_rate) == ("some/model", 8, ("sft",), 1e-4)
    assert p.train["sft"].epochs == 2, "an override keeps the preset's other settings of that method"
    with pytest.raises(AlignkitError, match="unknown preset"):
        make_preset("laptop")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("no_such=1", r"unknown setting 'no_such'; known: .*curate_harmful"),
        ("curate.max_new_token=3", r"curate: unknown setting 'max_new_token'; known: .*max_new_tokens"),
        ("train.dpo.betaa=2", r"train.dpo: unknown setting 'betaa'; known: .*beta"),
        ("train.dop.beta=2", r"unknown method 'dop'; known: sft, dpo"),
        ("methods=[sft,foo]", r"methods: unknown method 'foo'"),
        ("train.dpo.beta=-1", r"train.dpo: beta: Input should be greater than 0"),
        ("batch_size=many", r"batch_size: Input should be a valid integer"),
        ("judge", r"not key=value"),
        ("on_policy.method=rlaif", r"on_policy: .*odpo rounds curate on-policy"),
        ("on_policy.sample=3", r"on_policy: unknown setting 'sample'; known: .*samples"),
    ],
)
def test_a_bad_preset_setting_fails_at_once_with_its_path(setting: str, message: str) -> None:
    """Checked when the preset is made, before anything runs: one line naming the setting, no traceback."""
    with pytest.raises(AlignkitError, match=message):
        make_preset("cpu-demo", None, [setting])


def test_stages_follow_the_methods_in_order() -> None:
    p = make_preset("smoke", None, ["methods=[sft,orpo,dpo,dpo]", "guard=false"])
    assert run_stages(p) == ["baseline", "redteam", "curate", "sft", "orpo", "dpo", "dpo-2", "after", "report"]
    assert p.train["orpo"].method == "orpo" and p.train["orpo"].max_steps == 2
    assert make_preset("smoke", None, ["methods=[grpo]"]).train["grpo"].method == "grpo"


STOP = set(
    ["a", "the", "i", "my", "to", "for", "of", "and", "how", "do", "what", "in", "is", "me", "on", "with", "an", "can"]
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower())) - STOP


def test_anchor_prompts_are_benign_everyday_and_not_paraphrases_of_the_test_split() -> None:
    """Anchors are answered and trained on, so none may restate a held-out test prompt. Word overlap
    catches copies and close rewrites (the birthday-party paraphrase replaced when the set was written
    scored 0.7 here); looser paraphrases were reviewed and replaced by hand, as a shared frame ("what
    should I pack for ...") scores as high as a paraphrase does."""
    from alignkit.pipeline import ANCHORS
    from alignkit.suites import load_suite, select_split

    anchors = load_suite(str(ANCHORS))
    assert len(anchors) == 240 and {p.label for p in anchors} == {"benign"}
    test = [_words(p.text or "") for p in select_split(load_suite("default"), "test")]
    for a in anchors:
        mine = _words(a.text or "")
        worst = max(len(mine & t) / len(mine | t) for t in test)
        assert worst < 0.45, a.text


def test_train_prompts_spread_anchors_over_their_kinds(tmp_path: Path) -> None:
    from alignkit.pipeline import Run

    run = Run(make_preset("smoke", None, ["anchors=12", "curate_harmful=2", "curate_benign=2"]), "default",
              tmp_path, None)  # fmt: skip
    prompts = run._train_prompts()
    anchors = [p for p in prompts if p.id.startswith("a-")]
    assert len(prompts) == 16 and len(anchors) == 12
    assert len({p.extra["kind"] for p in anchors}) == 12  # one of each kind


def test_a_smoke_run_trains_any_chain_of_methods_and_exports_the_last(tmp_path: Path) -> None:
    """`methods=[sft,orpo]`: both stages train, orpo from sft's model, and `model/` is orpo's."""
    out = tmp_path / "run"
    done = subprocess.run([*RUN, "--out", str(out), "methods=[sft,orpo]", "guard=false"], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    stages = json.loads((out / "stages.json").read_text())
    assert list(stages) == ["baseline", "redteam", "curate", "sft", "orpo", "after", "report"]
    assert stages["orpo"]["model_dir"].startswith(str(out / "orpo"))
    import yaml
    from safetensors.torch import load_file

    assert yaml.safe_load((out / "orpo" / "config.yaml").read_text())["model"] == stages["sft"]["model_dir"]
    assert json.loads((out / "preset.json").read_text())["train"]["orpo"]["method"] == "orpo"

    exported = load_file(str(next((out / "model").glob("*.safetensors"))))
    orpo_model = load_file(str(next(Path(stages["orpo"]["model_dir"]).glob("*.safetensors"))))
    assert exported.keys() == orpo_model.keys() and all((exported[k] == orpo_model[k]).all() for k in exported)
    card = json.loads((out / "posture_card.json").read_text())
    assert set(card["adapters"]) == {"sft", "orpo"} and all(card["adapters"].values())


def test_online_stages_add_the_helpfulness_term_when_weighted(tmp_path: Path) -> None:
    """grpo/ppo stages reward the judge's verdict, plus `rl_helpful_weight` x `rule:helpful`; the gpu preset
    runs GRPO after DPO with that term."""
    from alignkit.pipeline import Run
    from alignkit.rl.rewards import WeightedReward, parse_reward

    assert Run(make_preset("smoke"), "default", tmp_path / "a", None).rl_reward == "judge:patterns"
    run = Run(make_preset("smoke", None, ["rl_helpful_weight=0.5"]), "default", tmp_path / "b", None)
    assert run.rl_reward == "judge:patterns+0.5*rule:helpful"
    reward = parse_reward(run.rl_reward)
    assert isinstance(reward, WeightedReward) and [w for w, _ in reward.terms] == [1.0, 0.5]
    gpu = make_preset("gpu")
    assert gpu.methods == ("sft", "dpo", "grpo") and gpu.rl_helpful_weight == 0.5


def test_odpo_rounds_curate_from_the_newest_model_and_train_from_it(tmp_path: Path) -> None:
    """`methods=[sft,odpo,odpo]`: each round curates on-policy pairs from the model the stage before
    left (round 1 from sft's, round 2 from round 1's), with fresh samples, then trains DPO on them from
    that model; the round is in every pair's provenance and in the stage's summary."""
    import yaml

    out = tmp_path / "run"
    done = subprocess.run([*RUN, "--out", str(out), "methods=[sft,odpo,odpo]", "guard=false"], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    stages = json.loads((out / "stages.json").read_text())
    assert list(stages) == ["baseline", "redteam", "curate", "sft", "odpo", "odpo-2", "after", "report"]
    for stage, start, r in (("odpo", "sft", 1), ("odpo-2", "odpo", 2)):
        curated = json.loads((out / f"curate-{stage}" / "curate.json").read_text())
        assert curated["config"]["method"] == "on-policy" and curated["config"]["round"] == r
        assert curated["policy"] == start  # the stage whose model sampled
        pairs = [json.loads(line) for line in (out / f"curate-{stage}" / "preferences.jsonl").read_text().splitlines()]
        assert pairs and {p["provenance"]["round"] for p in pairs} == {r}
        assert stages[stage]["on_policy"]["round"] == r
        assert stages[stage]["on_policy"]["preference_pairs"] == len(pairs)
        config = yaml.safe_load((out / stage / "config.yaml").read_text())
        assert config["model"] == stages[start]["model_dir"] and config["method"] == "dpo"
        assert config["data"] == str(out / f"curate-{stage}" / "preferences.jsonl")
    preset = json.loads((out / "preset.json").read_text())
    assert preset["on_policy"]["partial_refusals_chosen"] is False


def test_broad_training_prompts_come_in_the_pool_s_shares_and_spread_over_kinds(tmp_path: Path) -> None:
    from alignkit.pipeline import Run

    preset = make_preset("smoke", None, ["train_prompts=60", "anchors=0", "curate_harmful=0", "curate_benign=0"])
    prompts = Run(preset, "default", tmp_path, None)._train_prompts()
    harmful = [p for p in prompts if p.label == "harmful"]
    ordinary = [p for p in prompts if p.category == "ordinary"]
    # 1,004 / 1,003 / 522 of 2,529, so 24 / 24 / 12 of 60
    assert (len(prompts), len(harmful), len(ordinary)) == (60, 24, 12)
    assert len({(p.category, p.extra["kind"]) for p in harmful}) == 24, "one of each category and kind first"
    assert all(p.id.startswith("tp-") for p in prompts)


def test_a_resume_accepts_settings_added_since_but_not_changed_ones(tmp_path: Path) -> None:
    from alignkit.pipeline import Run

    preset = make_preset("smoke")
    Run(preset, "default", tmp_path, None)
    stored = json.loads((tmp_path / "preset.json").read_text())
    del stored["train_prompts"], stored["curate"]["chunk"]  # as a run started before those settings existed
    stored["train"]["sft"]["pack_pairs"] = True  # a retired setting, stored with what `packing: auto` does
    (tmp_path / "preset.json").write_text(json.dumps(stored))
    Run(preset, "default", tmp_path, None)
    stored["train"]["sft"]["pack_pairs"] = False  # ... but not with another value
    (tmp_path / "preset.json").write_text(json.dumps(stored))
    with pytest.raises(AlignkitError, match=r"other settings \(train\)"):
        Run(preset, "default", tmp_path, None)
    stored["train"]["sft"]["pack_pairs"] = True
    (tmp_path / "preset.json").write_text(json.dumps(stored))
    with pytest.raises(AlignkitError, match=r"other settings \(posture_limit\)"):
        Run(make_preset("smoke", None, ["posture_limit=null"]), "default", tmp_path, None)


def test_a_resumed_run_that_predates_helpfulness_measures_it_and_nothing_else(smoke_run: Path, tmp_path: Path) -> None:
    """A finished run from before helpfulness joined the run: resumed, it measures helpfulness before and
    after (and only that), records it in those stages' summaries, and writes the report again with it."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(smoke_run, out)
    for which in ("baseline", "after"):
        (out / which / "helpfulness.json").unlink()
    stages = json.loads((out / "stages.json").read_text())
    stages["baseline"].pop("checkable_accuracy")
    stages["after"]["posture"].pop("checkable_accuracy")
    (out / "stages.json").write_text(json.dumps(stages))
    preset = json.loads((out / "preset.json").read_text())
    del preset["helpfulness"], preset["helpfulness_limit"]  # as stored before those settings existed
    (out / "preset.json").write_text(json.dumps(preset))
    card = json.loads((out / "posture_card.json").read_text())
    card.pop("helpfulness")
    (out / "posture_card.json").write_text(json.dumps(card))

    done = subprocess.run([*RUN, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads((out / "stages.json").read_text())
    for which in ("baseline", "after"):
        body = json.loads((out / which / "helpfulness.json").read_text())
        summary = after[which] if which == "baseline" else after[which]["posture"]
        assert summary["checkable_accuracy"] == round(body["checkable_accuracy"]["rate"], 4)
    for stage, rec in stages.items():
        if stage not in ("baseline", "after", "report"):
            assert after[stage] == rec, f"stage {stage} was redone"
    assert after["baseline"]["finished"] == stages["baseline"]["finished"]
    card = json.loads((out / "posture_card.json").read_text())
    assert set(card["helpfulness"]) >= {"before", "after", "kept"}


def test_the_run_guard_narrows_phrase_and_topic_rails_but_classifies_every_category() -> None:
    from alignkit.guard.config import default_config
    from alignkit.pipeline import guard_config_for

    base = default_config("default")
    assert base.classifier.enabled and not base.topic.enabled
    narrowed = guard_config_for(base, ["drugs"])
    assert set(narrowed.phrases.phrases) == {"drugs"} and narrowed.phrases.enabled
    assert narrowed.classifier.enabled and narrowed.classifier.categories is None
    assert not narrowed.topic.enabled  # off in the constitution's config, so off here
    topical = base.model_copy(deep=True)
    topical.topic.enabled = True
    assert guard_config_for(topical, ["drugs"]).topic.categories == ["drugs"]
    nothing = guard_config_for(topical, [])
    assert not nothing.phrases.enabled and not nothing.topic.enabled and nothing.classifier.enabled


def test_guard_config_calibrate_writes_the_classifier_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """`alignkit guard config --calibrate` writes the threshold the classifier chose on its validation split
    (a stand-in classifier here; training the real one takes minutes)."""
    import types

    import alignkit.guard.rails.classifier as clf
    from alignkit.jobs.guard import calibrated_config

    seen: list[object] = []

    def trained(hazards: object, settings: object, encoder: object) -> object:
        seen.append(settings)
        return types.SimpleNamespace(threshold=0.772)

    monkeypatch.setattr(clf, "trained_classifier", trained)
    assert calibrated_config("default", calibrate=False).classifier.threshold is None and not seen
    cfg = calibrated_config("default", calibrate=True)
    assert cfg.classifier.threshold == 0.772 and len(seen) == 1
