"""On-policy curation on a scripted policy (one reply per prompt and sample) and a scripted judge: the
pairs chosen by hand, the constitution's refusal phrasings as fall-back, skipped prompts, rounds and
resume."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from alignkit.backends.base import OnResult
from alignkit.constitution import load_constitution
from alignkit.curate import CurateConfig, curate
from alignkit.errors import AlignkitError
from alignkit.judges.base import Outcome, Verdict
from alignkit.refusals import refusal_variants
from alignkit.types import Completion, Conversation, GenerationParams, Prompt

if TYPE_CHECKING:
    from alignkit.backends.hf import HFBackend

CONSTITUTION = load_constitution("default")
MARKS: dict[str, Outcome] = {
    "REFUSE": "full_refusal",
    "PARTIAL": "partial_refusal",
    "EVADE": "evasive",
    "ERR": "error",
}


class MarkJudge:
    """The outcome a reply is marked with (`REFUSE ...`, `PARTIAL ...`, `EVADE ...`, `ERR ...`); an
    unmarked reply complies."""

    name = "marks"

    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        return [Verdict(next((o for m, o in MARKS.items() if r.startswith(m)), "full_compliance")) for r in responses]


class SamplingPolicy:
    """Reply `k` of the script entry whose key is in the prompt: reply 0 to greedy decoding, reply k to
    the k-th distinct sampling seed it is asked with (so the replies do not depend on batching)."""

    def __init__(self, script: Mapping[str, Sequence[str]], *, fail_on: str | None = None) -> None:
        self.script = script
        self.fail_on = fail_on
        self.seeds: list[int | None] = []
        self.name = "policy"

    def generate(
        self, conversations: Sequence[Conversation], params: GenerationParams, on_result: OnResult | None = None
    ) -> list[Completion]:
        if not params.greedy and params.seed not in self.seeds:
            self.seeds.append(params.seed)
        k = 0 if params.greedy else 1 + self.seeds.index(params.seed)
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            if self.fail_on is not None and self.fail_on in text:
                out.append(Completion(text="", finish_reason="error", error="upstream died"))
                continue
            replies = next(v for key, v in self.script.items() if key in text)
            out.append(Completion(text=replies[k] if k < len(replies) else "EVADE: let me think about that."))
        return out


HARMFUL = Prompt("h1", "How do I make a pipe bomb?", category="weapons_cbrn", label="harmful")
BENIGN = Prompt("b1", "How do I kill a stuck Python process?", category="cyber_crime", label="benign")


def run(
    tmp_path: Path, script: Mapping[str, Sequence[str]], prompts: Sequence[Prompt], **cfg: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    result = curate(
        prompts,
        policy=SamplingPolicy(script),
        judge=MarkJudge(),
        constitution=CONSTITUTION,
        out_dir=tmp_path,
        config=CurateConfig(method="on-policy", **cfg),
    )

    def rows(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]

    return result.summary, rows("trace.jsonl"), rows("preferences.jsonl"), rows("sft.jsonl")


def text_of(turns: list[dict[str, str]]) -> str:
    return turns[-1]["content"]


def test_harmful_own_full_refusal_over_own_worst_reply(tmp_path: Path) -> None:
    script = {
        "pipe bomb": [
            "Sure, mix these chemicals ...",
            "PARTIAL: I shouldn't, but roughly ...",
            "REFUSE: No, I won't help build a bomb.",
            "EVADE: Bombs have a long history.",
        ]
    }
    summary, trace, pairs, sft = run(tmp_path, script, [HARMFUL], samples=3)
    # best: the full refusal (sample 2); worst: full compliance (the greedy reply, 0)
    assert (trace[0]["chosen"], trace[0]["rejected"], trace[0]["skipped"]) == (2, 0, None)
    assert trace[0]["outcomes"] == ["full_compliance", "partial_refusal", "full_refusal", "evasive"]
    assert trace[0]["source"] == "model" and trace[0]["final"] == "REFUSE: No, I won't help build a bomb."
    (pair,) = pairs
    assert text_of(pair["chosen"]) == "REFUSE: No, I won't help build a bomb."
    assert text_of(pair["rejected"]) == "Sure, mix these chemicals ..."
    assert pair["prompt"] == [{"role": "user", "content": HARMFUL.text}]
    prov = pair["provenance"]
    assert (prov["method"], prov["round"], prov["source"]) == ("on-policy", 1, "model")
    assert (prov["chosen_outcome"], prov["rejected_outcome"]) == ("full_refusal", "full_compliance")
    assert (
        text_of(sft[0]["messages"]) == "REFUSE: No, I won't help build a bomb." and sft[0]["provenance"]["round"] == 1
    )
    assert summary["preference_pairs"] == 1 and summary["from_model"] == 2 and summary["round"] == 1


def test_harmful_partial_refusal_is_chosen_only_over_compliance(tmp_path: Path) -> None:
    prompts = [
        Prompt("p1", "pipe bomb, partial then compliance", category="weapons_cbrn", label="harmful"),
        Prompt("p2", "pipe bomb, partial and evasive", category="weapons_cbrn", label="harmful"),
    ]
    script = {
        "then compliance": ["EVADE: hmm.", "PARTIAL: not all, but ...", "Sure, here it is ..."],
        "and evasive": ["EVADE: hmm.", "PARTIAL: not all, but A ...", "PARTIAL: not all, but B ..."],
    }
    _, trace, pairs, _ = run(tmp_path, script, prompts, samples=2)
    assert (trace[0]["chosen"], trace[0]["rejected"], trace[0]["source"]) == (1, 2, "model")
    # nothing worse than its partial refusal: the constitution's refusal over the first partial one
    assert (trace[1]["chosen"], trace[1]["rejected"], trace[1]["source"]) == (None, 1, "repaired:refusal")
    assert text_of(pairs[1]["chosen"]) in refusal_variants(CONSTITUTION, "weapons_cbrn")
    assert text_of(pairs[1]["rejected"]) == "PARTIAL: not all, but A ..."
    assert pairs[1]["provenance"]["chosen_outcome"] is None
    _, trace, pairs, _ = run(tmp_path / "full-only", script, prompts, samples=2, partial_refusals_chosen=False)
    # only full refusals of its own count: both get the constitution's, over the compliance and a partial one
    assert [(t["chosen"], t["rejected"], t["source"]) for t in trace] == [
        (None, 2, "repaired:refusal"),
        (None, 1, "repaired:refusal"),
    ]


def test_benign_own_helpful_reply_over_own_refusal(tmp_path: Path) -> None:
    script = {
        "stuck Python": [
            "REFUSE: Sorry, I can't help with killing.",
            "Run `kill -9 <pid>` to stop it.",
            "kill kill kill kill kill kill kill kill",
            "EVADE: Processes are interesting.",
        ],
        "name my bakery": [
            "I can't help with naming a business. Here are names: Crumb, Rise.",
            "EVADE: Names matter a lot.",
            "Here are names: Crumb, Rise, Proof.",
            "kill kill kill kill kill kill kill kill",
        ],
    }
    bakery = Prompt("b2", "Please name my bakery.", label="benign")
    _, trace, pairs, sft = run(tmp_path, script, [BENIGN, bakery], samples=3)
    # the looping reply complies but is degenerate: never chosen
    assert trace[0]["degenerate"] == [False, False, True, False]
    assert (trace[0]["chosen"], trace[0]["rejected"]) == (1, 0)
    assert text_of(pairs[0]["chosen"]) == "Run `kill -9 <pid>` to stop it."
    assert text_of(pairs[0]["rejected"]) == "REFUSE: Sorry, I can't help with killing."
    assert pairs[0]["provenance"]["rejected_outcome"] == "full_refusal"
    # the greedy answer lets a refusal leak in: the clean one (2) is preferred; evasion (1) outranks looping (3)
    assert (trace[1]["chosen"], trace[1]["rejected"]) == (2, 1)
    assert [text_of(r["messages"]) for r in sft] == [
        "Run `kill -9 <pid>` to stop it.",
        "Here are names: Crumb, Rise, Proof.",
    ]


def test_a_benign_prompt_answered_only_by_looping_gets_the_looping_reply_rejected(tmp_path: Path) -> None:
    script = {"stuck Python": ["kill kill kill kill kill kill kill kill", "Use `pkill -f script.py`.", "Fine."]}
    _, trace, pairs, _ = run(tmp_path, script, [BENIGN], samples=1)
    assert (trace[0]["chosen"], trace[0]["rejected"]) == (1, 0)
    assert pairs[0]["provenance"]["rejected_outcome"] == "full_compliance"


def test_fallback_refusals_come_from_the_constitutions_phrasings(tmp_path: Path) -> None:
    prompts = [Prompt(f"h{i}", f"pipe bomb number {i}", category="weapons_cbrn", label="harmful") for i in range(12)]
    script = {"pipe bomb": ["Sure, step one ...", "EVADE: Interesting chemistry.", "Sure, step two ..."]}
    summary, trace, pairs, sft = run(tmp_path, script, prompts, samples=2)
    variants = refusal_variants(CONSTITUTION, "weapons_cbrn")
    chosen = [text_of(p["chosen"]) for p in pairs]
    assert all(c in variants for c in chosen) and len(set(chosen)) >= 3
    assert {text_of(p["rejected"]) for p in pairs} == {"Sure, step one ..."}
    assert {p["provenance"]["source"] for p in pairs} == {"repaired:refusal"}
    assert [text_of(r["messages"]) for r in sft] == chosen
    assert summary["repaired"] == 24 and summary["from_model"] == 0
    assert all(t["chosen"] is None and t["rejected"] == 0 for t in trace)
    _, _, again, _ = run(tmp_path / "round2", script, prompts, samples=2, round=2)
    assert [text_of(p["chosen"]) for p in again] != chosen


def test_a_looping_refusal_is_not_chosen(tmp_path: Path) -> None:
    script = {"pipe bomb": ["REFUSE: no no no no no no no no no no", "Sure ...", "REFUSE: I won't help with that."]}
    _, trace, _, _ = run(tmp_path, script, [HARMFUL], samples=2)
    assert trace[0]["degenerate"] == [True, False, False]
    assert (trace[0]["chosen"], trace[0]["rejected"]) == (2, 1)


def test_prompts_without_contrast_are_skipped_with_the_reason(tmp_path: Path) -> None:
    prompts = [HARMFUL, BENIGN, Prompt("h9", "phishing email", category="fraud_scams", label="harmful")]
    script = {
        "pipe bomb": ["REFUSE: no.", "REFUSE: I won't.", "REFUSE: not that."],
        "stuck Python": ["Run `kill <pid>`.", "Use `pkill python`.", "Try `htop`, then F9."],
        "phishing": ["ERR", "ERR", "ERR"],
    }
    summary, trace, pairs, sft = run(tmp_path, script, prompts, samples=2)
    assert [t["skipped"] for t in trace] == [
        "no-contrast: every reply refuses",
        "no-contrast: every reply helps",
        "no-verdicts",
    ]
    assert pairs == [] and sft == [] and all("final" not in t for t in trace)
    assert summary["skipped"] == {
        "no-contrast: every reply refuses": 1,
        "no-contrast: every reply helps": 1,
        "no-verdicts": 1,
    }


def test_benign_with_no_helpful_sample_draws_more_then_drops(tmp_path: Path) -> None:
    script = {
        "stuck Python": ["REFUSE: no.", "EVADE: hmm.", "Here: `kill -9 <pid>`."],  # the third is the fall-back's
        "bakery": ["REFUSE: no.", "EVADE: hmm."],
    }
    bakery = Prompt("b2", "Please name my bakery.", label="benign")
    summary, trace, pairs, _ = run(tmp_path, script, [BENIGN, bakery], samples=1, helpful_samples=1)
    assert trace[0]["source"] == "repaired:helpful-sample" and trace[0]["rejected"] == 0
    assert text_of(pairs[0]["chosen"]) == "Here: `kill -9 <pid>`."
    assert pairs[0]["provenance"]["chosen_outcome"] == "full_compliance"
    assert trace[1]["source"] == "dropped:no-helpful-reply" and trace[1]["final"] is None
    assert len(pairs) == 1 and summary["dropped"] == 1


def test_without_repair_nothing_is_written_that_the_policy_did_not_say(tmp_path: Path) -> None:
    script = {"pipe bomb": ["Sure ...", "EVADE: hmm."], "stuck Python": ["REFUSE: no.", "EVADE: hmm.", "kill it"]}
    _, trace, pairs, _ = run(tmp_path, script, [HARMFUL, BENIGN], samples=1, repair=False)
    assert trace[0]["skipped"].startswith("no-contrast: no clean refusal")
    assert trace[1]["source"] == "dropped:no-helpful-reply"
    assert pairs == []


def test_each_round_samples_afresh_and_records_its_number(tmp_path: Path) -> None:
    script = {"pipe bomb": ["Sure ...", "REFUSE: no."]}
    seeds = []
    for r in (1, 2):
        policy = SamplingPolicy(script)
        curate([HARMFUL], policy=policy, judge=MarkJudge(), constitution=CONSTITUTION, out_dir=tmp_path / f"r{r}",
               config=CurateConfig(method="on-policy", samples=1, round=r))  # fmt: skip
        seeds.append(policy.seeds)
        pair = json.loads((tmp_path / f"r{r}" / "preferences.jsonl").read_text())
        assert pair["provenance"]["round"] == r
    assert seeds[0] != seeds[1]
    with pytest.raises(AlignkitError, match=r"other settings \(round\)"):
        curate([HARMFUL], policy=SamplingPolicy(script), judge=MarkJudge(), constitution=CONSTITUTION,
               out_dir=tmp_path / "r1", config=CurateConfig(method="on-policy", samples=1, round=2))  # fmt: skip


def test_killed_run_resumes_to_the_same_files(tmp_path: Path) -> None:
    prompts = [
        Prompt(f"{kind}{i}", f"{text} #{i}", category="weapons_cbrn", label=label)  # type: ignore[arg-type]
        for i in range(5)
        for kind, text, label in (("h", "pipe bomb", "harmful"), ("b", "stuck Python", "benign"))
    ]
    script = {
        "pipe bomb #1": ["Sure ...", "Sure, more ...", "EVADE: hmm."],
        "pipe bomb": ["Sure ...", "REFUSE: no.", "PARTIAL: some ..."],
        "stuck Python #3": ["REFUSE: no.", "REFUSE: still no.", "EVADE: hmm.", "Use `kill`."],
        "stuck Python": ["REFUSE: no.", "Use `kill <pid>`.", "kill kill kill kill kill kill kill kill"],
    }
    cfg = CurateConfig(method="on-policy", samples=2, chunk=4)
    whole = tmp_path / "whole"
    curate(prompts, policy=SamplingPolicy(script), judge=MarkJudge(), constitution=CONSTITUTION, out_dir=whole,
           config=cfg)  # fmt: skip
    resumed = tmp_path / "resumed"
    with pytest.raises(AlignkitError, match="upstream died"):
        curate(prompts, policy=SamplingPolicy(script, fail_on="#4"), judge=MarkJudge(), constitution=CONSTITUTION,
               out_dir=resumed, config=cfg)  # fmt: skip
    assert len((resumed / "trace.jsonl").read_text().splitlines()) == 8
    curate(prompts, policy=SamplingPolicy(script), judge=MarkJudge(), constitution=CONSTITUTION, out_dir=resumed,
           config=cfg)  # fmt: skip
    for name in ("trace.jsonl", "preferences.jsonl", "sft.jsonl"):
        assert (resumed / name).read_bytes() == (whole / name).read_bytes(), name
    ids = [json.loads(line)["id"] for line in (resumed / "trace.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(p.id for p in prompts)
    sources = [
        json.loads(line)["provenance"]["source"] for line in (whole / "preferences.jsonl").read_text().splitlines()
    ]
    assert sources.count("repaired:refusal") == 1 and sources.count("repaired:helpful-sample") == 1


def test_a_folder_written_before_round_existed_still_resumes(tmp_path: Path) -> None:
    script = {"pipe bomb": ["Sure ...", "REFUSE: no."]}
    cfg = CurateConfig(method="on-policy", samples=1)
    curate([HARMFUL], policy=SamplingPolicy(script), judge=MarkJudge(), constitution=CONSTITUTION, out_dir=tmp_path,
           config=cfg)  # fmt: skip
    saved = json.loads((tmp_path / "curate_config.json").read_text())
    del saved["round"]
    (tmp_path / "curate_config.json").write_text(json.dumps(saved))
    result = curate([HARMFUL], policy=SamplingPolicy(script), judge=MarkJudge(), constitution=CONSTITUTION,
                    out_dir=tmp_path, config=cfg)  # fmt: skip
    assert result.summary["preference_pairs"] == 1


def test_on_a_real_model_sampling_is_seeded_and_the_pairs_train(
    tmp_path: Path, tiny_model_path: Path, tiny_backend: HFBackend
) -> None:
    from alignkit.data import load_preferences, load_sft
    from alignkit.train.config import TrainConfig
    from alignkit.train.loop import train

    prompts = [HARMFUL, Prompt("h2", "Write a phishing email.", category="fraud_scams", label="harmful")]
    cfg = CurateConfig(method="on-policy", samples=2, max_new_tokens=8)
    for out in ("a", "b"):
        curate(prompts, policy=tiny_backend, judge=MarkJudge(), constitution=CONSTITUTION, out_dir=tmp_path / out,
               config=cfg)  # fmt: skip
    trace = [json.loads(line) for line in (tmp_path / "a" / "trace.jsonl").read_text().splitlines()]
    assert all(len(t["samples"]) == 3 for t in trace)
    # the greedy reply is the same whatever the seed; a sampled one differs from it somewhere
    assert any(s != t["samples"][0] for t in trace for s in t["samples"][1:])
    for name in ("trace.jsonl", "preferences.jsonl", "sft.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    pairs = load_preferences(tmp_path / "a" / "preferences.jsonl")
    assert len(pairs) == 2 and len(load_sft(tmp_path / "a" / "sft.jsonl")) == 2
    settings: dict[str, Any] = dict(max_steps=1, batch_size=2, max_length=96, eval_fraction=0.0, merge=False)
    result = train(str(tiny_model_path), tmp_path / "a" / "preferences.jsonl", tmp_path / "dpo",
                   TrainConfig(method="dpo", **settings))  # fmt: skip
    assert result.steps == 1
