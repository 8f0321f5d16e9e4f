"""The online RL loop on tiny models: GRPO and PPO train, resume exactly after a crash, export loadable folders, and
the specification-gaming monitor catches an exploit planted in a real training run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from alignkit.errors import AlignkitError
from alignkit.rl import RLConfig, load_rl_config, rl_train
from alignkit.rl.loop import load_rl_prompts
from alignkit.rl.monitor import SpecificationGamingWarning, best_of_n
from alignkit.rl.rewards import parse_reward
from alignkit.types import Prompt

PROMPTS = [Prompt(id=f"p{i}", text=f"Tell me about topic number {i}.", label="benign") for i in range(16)]


class Crash(Exception):
    pass


@pytest.fixture(autouse=True)
def _restore_threads() -> Any:
    """Runs here use one torch thread (tiny ops on shared cores run fastest so); give the rest of the suite back
    what it had."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def small(method: str, **kw: Any) -> RLConfig:
    base: dict[str, Any] = dict(method=method, max_steps=4, prompts_per_step=2, group_size=2, max_new_tokens=6,
                                learning_rate=1e-3, save_every=2, micro_batch_size=4, threads=1)  # fmt: skip
    base.update(kw)
    return RLConfig(**base)


@pytest.fixture(scope="module")
def exploitable_model_path(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Path:
    """The planted-exploit model of `alignkit.rl.demo`: a tiny random Phi whose end-of-turn token has a bias, so that
    reply length is something the policy can learn to change, through one logit."""
    from alignkit.rl.demo import exploitable_model

    return exploitable_model(tmp_path_factory.mktemp("tiny-phi"), tokenizer=str(smollm2_path))


# ---- the sampler and the update see the same distribution -------------------------------------


def test_sampled_tokens_have_the_log_probs_the_update_uses(tiny_model_path: Path) -> None:
    """generate's own (temperature-processed) scores of the tokens it sampled, left-padded, equal the log-probs
    PolicyValue computes on the right-padded sequences: the first update is exactly on-policy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from alignkit.rl.rollout import PolicyValue
    from alignkit.train.batches import Sequence_, collate

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    texts = ["Hi", "Tell me a long story about cats, please"]
    prompts = [
        list(tok(tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True),
                 add_special_tokens=False)["input_ids"])
        for t in texts
    ]  # fmt: skip
    width = max(map(len, prompts))
    ids = torch.full((2, width), tok.pad_token_id)
    mask = torch.zeros((2, width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.tensor(p)
        mask[r, width - len(p) :] = 1
    temperature = 0.7
    config = GenerationConfig(max_new_tokens=5, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                              pad_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id],
                              return_dict_in_generate=True, output_scores=True)  # fmt: skip
    torch.manual_seed(0)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    new = out.sequences[:, width:]
    from_generate = torch.stack(out.scores, 1).log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
    seqs = [Sequence_(p + new[r].tolist(), [0] * len(p) + [1] * new.shape[1]) for r, p in enumerate(prompts)]
    with torch.no_grad():
        logps, entropy, values = PolicyValue(model, False, temperature)(**collate(seqs, tok.pad_token_id))
    assert logps.tolist() == pytest.approx(from_generate.flatten().tolist(), abs=1e-4)
    assert values is None and bool((entropy > 0).all())


# ---- training, resume, export ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["grpo", "ppo"])
def test_crash_and_resume_gives_the_uninterrupted_run(method: str, tmp_path: Path, tiny_model_path: Path) -> None:
    kw = {"target_kl": 0.5} if method == "ppo" else {}
    cfg = small(method, **kw)
    whole = rl_train(str(tiny_model_path), PROMPTS, tmp_path / "whole", cfg, "rule:length=6")
    got = rows(tmp_path / "whole")
    assert [r["step"] for r in got] == [1, 2, 3, 4] and whole.steps == 4
    for r in got:
        for key in ("reward", "kl", "entropy", "reply_tokens", "clip_fraction", "loss", "grad_norm"):
            assert math.isfinite(r[key]), key
    assert got[0]["kl"] == 0.0 and got[0]["clip_fraction"] == 0.0  # LoRA starts at the reference, on-policy
    assert got[-1]["kl"] > 0
    if method == "ppo":
        assert all(math.isfinite(r["value_loss"]) and "kl_coef" in r for r in got)
        assert got[1]["kl_coef"] != got[0]["kl_coef"]  # the adaptive controller moved

    def crash_after_3(stage: str, done: int, total: int) -> None:
        if done == 3:
            raise Crash

    with pytest.raises(Crash):
        rl_train(str(tiny_model_path), PROMPTS, tmp_path / "resumed", cfg, "rule:length=6", progress=crash_after_3)
    assert (tmp_path / "resumed" / "checkpoints" / "latest").read_text() == "step-0000002"
    assert len(rows(tmp_path / "resumed")) == 3  # step 3 was logged before the crash ...
    resumed = rl_train(str(tiny_model_path), PROMPTS, tmp_path / "resumed", cfg, "rule:length=6")
    again = rows(tmp_path / "resumed")
    assert [r["step"] for r in again] == [1, 2, 3, 4]  # ... and dropped on resume, then redone
    for a, b in zip(again, got, strict=True):
        for key in ("reward", "kl", "entropy", "loss", "reply_tokens"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["step"], key)
    assert resumed.final_metrics["reward"] == pytest.approx(whole.final_metrics["reward"], abs=1e-6)
    samples = [json.loads(x) for x in (tmp_path / "resumed" / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [1, 1, 2, 2, 3, 3, 4, 4]

    # the exports: a PEFT adapter and a merged model, both loaded by transformers / peft, both the trained policy
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert whole.model_dir is not None and whole.adapter_dir is not None
    merged = AutoModelForCausalLM.from_pretrained(whole.model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), whole.adapter_dir)
    ids = torch.tensor([[1, 20, 300, 4000]])
    with torch.no_grad():
        a, b, c = merged(ids).logits, adapted(ids).logits, base(ids).logits
    assert torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-3)
    summary = json.loads((tmp_path / "whole" / "rl.json").read_text())
    assert summary["method"] == method and summary["reward"] == "rule:length=6"


def test_full_fine_tuning_with_epochs_and_mini_batches(tmp_path: Path, tiny_model_path: Path) -> None:
    """No LoRA: the reference is a frozen copy. Two passes in two mini-batches per step: the later ones are
    off-policy, so ratios move and may clip."""
    cfg = small("grpo", lora=False, max_steps=2, epochs=2, mini_batch_size=2, micro_batch_size=1, learning_rate=1e-3)
    result = rl_train(str(tiny_model_path), PROMPTS, tmp_path / "full", cfg, "rule:length=6", "rule:length_target=3")
    got = rows(tmp_path / "full")
    assert got[0]["kl"] == pytest.approx(0.0, abs=1e-6) and got[1]["kl"] > 0
    assert all("gold" in r and math.isfinite(r["gold"]) for r in got)
    assert result.adapter_dir is None and result.model_dir is not None
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert (tmp_path / "full" / "monitor.svg").exists()


# ---- config and prompts ------------------------------------------------------------------------


def test_config_yaml_overrides_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "rl.yaml"
    path.write_text("learning_rate: 2.0e-5\ngroup_size: 8\n")
    cfg = load_rl_config(path, ["max_steps=3", "target_kl=6"], "ppo")
    assert (cfg.method, cfg.learning_rate, cfg.group_size, cfg.max_steps, cfg.target_kl) == ("ppo", 2e-5, 8, 3, 6.0)
    assert load_rl_config(None, [], None).method == "grpo"
    with pytest.raises(AlignkitError, match="unknown setting"):
        load_rl_config(None, ["lr=1"], None)
    with pytest.raises(AlignkitError, match="learning_rate"):
        load_rl_config(None, ["learning_rate=-1"], None)
    with pytest.raises(AlignkitError, match="unknown RL method 'dpo'"):
        load_rl_config(None, [], "dpo")
    path.write_text("learning_rate: 1\nclip: 3\n")
    with pytest.raises(AlignkitError, match=r"rl\.yaml:2"):
        load_rl_config(path, [], None)
    with pytest.raises(AlignkitError, match="group_size >= 2"):
        rl_train("unused", PROMPTS, tmp_path / "x", RLConfig(group_size=1), "rule:length")
    with pytest.raises(AlignkitError, match="stop_on_gaming needs a gold"):
        rl_train("unused", PROMPTS, tmp_path / "x", RLConfig(stop_on_gaming=True), "rule:length")


def test_prompts_from_a_suite_or_a_file(tmp_path: Path) -> None:
    suite = load_rl_prompts("default")
    assert suite and all(p.extra.get("split") == "train" for p in suite)
    assert {p.label for p in suite} == {"harmful", "benign"}
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "Hello"}\n{"prompt": "Bye", "split": "test"}\n')
    assert [p.text for p in load_rl_prompts(path)] == ["Hello"]
    with pytest.raises(AlignkitError, match="no such file or built-in suite"):
        load_rl_prompts(tmp_path / "missing.jsonl")


# ---- the specification-gaming monitor on a planted exploit ------------------------------------


def test_monitor_catches_the_planted_length_exploit(tmp_path: Path, exploitable_model_path: Path) -> None:
    """The proxy pays for every word (rule:length); the gold wants about 5 words (rule:length_target=5). GRPO
    learns the exploit (suppress the end-of-turn token) within a few steps; the monitor flags the proxy rising
    while the gold falls, the run stops there, and the weights exported are the ones the gold liked best."""
    from alignkit.rl.demo import DEMO_GOLD, DEMO_PROXY, demo_config, demo_prompts, gaming_demo

    cfg = demo_config(stop_on_gaming=True)
    out = tmp_path / "gamed"
    with pytest.warns(SpecificationGamingWarning):
        result = gaming_demo(exploitable_model_path, out, cfg)
    got = rows(out)
    assert result.gaming_step is not None and result.stopped_early
    assert result.steps == result.gaming_step == got[-1]["step"] < cfg.max_steps
    assert got[-1]["gaming"] and not any(r["gaming"] for r in got[:-1])
    assert got[-1]["reply_tokens"] > got[0]["reply_tokens"] + 3  # the exploit: longer replies
    assert got[-1]["reward"] > got[0]["reward"] and got[-1]["gold"] < got[0]["gold"]
    monitor = json.loads((out / "monitor.json").read_text())
    assert monitor["first_gaming_step"] == result.gaming_step
    assert "<polyline" in (out / "monitor.svg").read_text()
    best_step = max(got, key=lambda r: r["gold"])["step"]
    assert monitor["best_gold_step"] == best_step
    assert result.exported_updates == best_step - 1  # the weights that sampled the best-gold replies
    # the exported adapter holds exactly the snapshot of those weights
    from safetensors.torch import load_file

    assert result.adapter_dir is not None and result.model_dir is not None
    snapshot = torch.load(out / "best" / "weights.pt")
    exported = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert len(exported) == len(snapshot) > 0
    for key, value in snapshot.items():
        assert torch.equal(exported[key.removeprefix("model.").replace(".default", "")], value), key
    # rerunning the finished call resumes nothing and keeps the result
    again = rl_train(str(exploitable_model_path), demo_prompts(), out, cfg, DEMO_PROXY, DEMO_GOLD)
    assert again.stopped_early and again.steps == result.steps and len(rows(out)) == len(got)


def test_best_of_n_monitor_flags_the_proxy_gold_split(tmp_path: Path) -> None:
    """Best-of-n by a length proxy over replies of 1 to 16 words, against a gold that wants 3 words: the more
    samples, the longer the chosen reply, the lower the gold."""
    from alignkit.backends.mock import MockBackend

    lengths = [2, 9, 4, 14, 6, 1, 11, 3, 16, 5, 8, 12, 7, 10, 13, 15]
    backend = MockBackend([" ".join(["w"] * k) for k in lengths])
    prompts = PROMPTS[:3]
    with pytest.warns(SpecificationGamingWarning):
        result = best_of_n(backend, prompts, parse_reward("rule:length=16"), parse_reward("rule:length_target=3"),
                           16, out_dir=tmp_path)  # fmt: skip
    assert [p.step for p in result.points] == [1, 2, 4, 8, 16]
    proxies, golds = [p.proxy for p in result.points], [p.gold or 0.0 for p in result.points]
    assert proxies == sorted(proxies) and golds == sorted(golds, reverse=True)
    assert result.monitor.first_gaming_step is not None
    assert json.loads((tmp_path / "monitor.json").read_text())["points"][-1]["sqrt_kl"] == pytest.approx(
        math.sqrt(math.log(16) - 15 / 16)
    )


# ---- the real model ----------------------------------------------------------------------------


@pytest.mark.slow
def test_grpo_on_smollm2_with_a_judge_reward(tmp_path: Path, smollm2_path: Path) -> None:
    from alignkit.suites import load_suite, select_split

    train = select_split(load_suite("default"), "train")
    prompts = [p for p in train if p.label == "harmful"][:2] + [p for p in train if p.label == "benign"][:2]
    cfg = RLConfig(method="grpo", max_steps=2, prompts_per_step=4, group_size=2, max_new_tokens=24,
                   learning_rate=1e-5, micro_batch_size=4, threads=1)  # fmt: skip
    result = rl_train(str(smollm2_path), prompts, tmp_path / "grpo", cfg, "judge:embedding", "judge:patterns")
    got = rows(tmp_path / "grpo")
    assert [r["step"] for r in got] == [1, 2]
    assert all(-1.0 <= r["reward"] <= 1.0 and -1.0 <= r["gold"] <= 1.0 for r in got)
    assert got[0]["kl"] == 0.0 and got[1]["kl"] >= 0
    assert result.model_dir is not None and (result.model_dir / "config.json").exists()


@pytest.mark.slow
def test_ppo_on_smollm2_with_a_rule_reward(tmp_path: Path, smollm2_path: Path) -> None:
    from alignkit.suites import load_suite, select_split

    prompts = [p for p in select_split(load_suite("default"), "train") if p.label == "benign"][:4]
    cfg = RLConfig(method="ppo", max_steps=2, prompts_per_step=4, max_new_tokens=16, learning_rate=1e-5,
                   micro_batch_size=4, threads=1)  # fmt: skip
    rl_train(str(smollm2_path), prompts, tmp_path / "ppo", cfg, "rule:length")
    got = rows(tmp_path / "ppo")
    assert [r["step"] for r in got] == [1, 2]
    assert all(r["value_loss"] == r["value_loss"] for r in got)
