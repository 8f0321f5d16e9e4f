"""The offline loop on the tiny model: every method trains, masks are right, resume and DDP are exact."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alignkit.errors import AlignkitError
from alignkit.train.batches import ChatTokenizer, collate, epoch_order, load_examples
from alignkit.train.config import METHODS, TrainConfig, load_train_config
from alignkit.train.logps import SequenceLogps
from alignkit.train.loop import train

PROMPTS = [f"Question {i}: how do I do thing number {i}?" for i in range(24)]


def write_data(tmp: Path) -> dict[str, Path]:
    pref, sft, kto = tmp / "pref.jsonl", tmp / "sft.jsonl", tmp / "kto.jsonl"
    with pref.open("w") as f:
        for i, p in enumerate(PROMPTS):
            rec = {"prompt": p, "chosen": "I can't help with that." if i % 2 else f"Step one for {i}.",
                   "rejected": f"A long harmful answer {i}. " * (1 + i % 4)}  # fmt: skip
            if i % 3 == 0:
                rec["chosen_weight"] = 0.8
            f.write(json.dumps(rec) + "\n")
    with sft.open("w") as f:
        for i, p in enumerate(PROMPTS):
            msgs = [{"role": "user", "content": p}, {"role": "assistant", "content": f"Answer {i}."}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    with kto.open("w") as f:
        for i, p in enumerate(PROMPTS):
            f.write(json.dumps({"prompt": p, "completion": f"Reply {i}.", "label": i % 3 != 0}) + "\n")
    return {"pref": pref, "sft": sft, "kto": kto}


def cfg(method: str, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(method=method, max_steps=3, batch_size=4, max_length=64, save_every=2,
                                   learning_rate=1e-3, eval_fraction=0.2, merge=False)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_the_tiny_model(method: str, tmp_path: Path, tiny_model_path: Path) -> None:
    data = write_data(tmp_path)
    path = data["sft"] if method == "sft" else data["kto"] if method == "kto" else data["pref"]
    result = train(str(tiny_model_path), path, tmp_path / "run", cfg(method))
    assert result.steps == 3
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert summary["method"] == method and summary["eval_examples"] > 0
    got = losses(tmp_path / "run")
    assert len(got) == 3 and all(v == v for v in got)  # finite, one per step
    if method in ("dpo", "ipo", "robust"):
        # the policy starts as the reference: the first DPO loss is exactly log 2
        assert got[0] == pytest.approx(0.693147, abs=1e-5) if method != "ipo" else got[0] > 0
    if method != "sft":
        assert "eval/loss" in summary["eval"]
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()


def test_rpo_adds_the_chosen_nll_to_the_first_dpo_loss(tmp_path: Path, tiny_model_path: Path) -> None:
    # at step 1 the policy is the reference, so the loss is log 2 plus alpha times the chosen NLL it logs
    result = train(str(tiny_model_path), write_data(tmp_path)["pref"], tmp_path / "run", cfg("dpo", rpo_alpha=0.5))
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert result.steps == 3 and first["nll_loss"] > 0
    assert first["loss"] == pytest.approx(math.log(2) + 0.5 * first["nll_loss"], rel=1e-4)


def test_sft_mask_covers_the_assistant_turns_only(tiny_model_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = ChatTokenizer(AutoTokenizer.from_pretrained(tiny_model_path), 512)
    msgs = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye now"},
    ]
    s = tok.conversation(msgs)  # type: ignore[arg-type]
    trained = tok.tok.decode([i for i, m in zip(s.ids, s.loss_mask, strict=True) if m])
    assert trained == "Hello there<|im_end|>\nGoodbye now<|im_end|>\n"
    assert tok.tok.decode(s.ids) == tok.render(msgs, generation_prompt=False)  # type: ignore[arg-type]


def test_truncation_drops_prompt_from_the_left_first(tiny_model_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = ChatTokenizer(AutoTokenizer.from_pretrained(tiny_model_path), 40)
    long_prompt = [{"role": "user", "content": "word " * 100}]
    s = tok.pair(long_prompt, [{"role": "assistant", "content": "short reply"}])  # type: ignore[arg-type]
    assert len(s) == 40 and tok.tok.decode([i for i, m in zip(s.ids, s.loss_mask, strict=True) if m]).startswith(
        "short reply"
    )


def test_sequence_logps_equal_the_full_logits_computation(tiny_model_path: Path) -> None:
    """Logits only at trained positions give the same log-probs as the plain full-vocabulary way."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tok = ChatTokenizer(AutoTokenizer.from_pretrained(tiny_model_path), 128)
    seqs = [tok.pair([{"role": "user", "content": p}], [{"role": "assistant", "content": "x " * (i + 1)}])  # type: ignore[list-item]
            for i, p in enumerate(PROMPTS[:3])]  # fmt: skip
    b = collate(seqs, tok.tok.pad_token_id)
    sums, counts, _ = SequenceLogps(model)(**b)
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    full = torch.log_softmax(logits[:, :-1], -1).gather(-1, b["input_ids"][:, 1:, None])[..., 0]
    mask = b["loss_mask"][:, 1:].float()
    torch.testing.assert_close(sums, (full * mask).sum(-1), atol=1e-4, rtol=1e-5)
    assert counts.tolist() == mask.sum(-1).long().tolist()


def test_packed_pairs_equal_separate_rows_in_value_and_gradient(tiny_model_path: Path) -> None:
    """A pair in one shared-prompt row gives the same log-probs and gradients as chosen and rejected in
    their own rows: multi-turn prompts, replies of other lengths, and a pair whose prompts differ (no
    shared prefix) so the mask alone keeps the replies apart."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignkit.train.batches import Sequence_, pack_pairs, packed_length, shared_prefix

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert model.config._attn_implementation == "sdpa"
    tok = ChatTokenizer(AutoTokenizer.from_pretrained(tiny_model_path), 128)
    convo = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
             {"role": "user", "content": PROMPTS[5]}]  # fmt: skip
    pairs = []
    for i, prompt in enumerate([[{"role": "user", "content": PROMPTS[0]}], convo, [{"role": "user", "content": "Hm"}]]):
        chosen = tok.pair(prompt, [{"role": "assistant", "content": "No. " * (1 + i)}])  # type: ignore[arg-type]
        rejected = tok.pair(prompt, [{"role": "assistant", "content": f"Sure {i}, " * (3 + 2 * i)}])  # type: ignore[arg-type]
        pairs.append((chosen, rejected))
    c, r = pairs[2]
    pairs[2] = (c, Sequence_([7, *r.ids[1:]], r.loss_mask))  # differs at token 0: nothing shared
    assert shared_prefix(*pairs[0]) > 0 and shared_prefix(*pairs[2]) == 0
    assert packed_length(*pairs[2]) == len(c) + len(r)

    wrapper = SequenceLogps(model)
    sep_sums, sep_counts, _ = wrapper(**collate([a for a, _ in pairs] + [b for _, b in pairs], tok.tok.pad_token_id))
    sep_grads = torch.autograd.grad(sep_sums.sum(), list(model.parameters()))
    batch = pack_pairs(pairs, tok.tok.pad_token_id)
    assert batch["input_ids"].shape[1] == max(packed_length(a, b) for a, b in pairs)
    sums, counts, _ = wrapper(**batch)
    grads = torch.autograd.grad(sums.sum(), list(model.parameters()))
    torch.testing.assert_close(sums, sep_sums, atol=1e-4, rtol=1e-5)
    assert counts.tolist() == sep_counts.tolist()
    for g, h in zip(grads, sep_grads, strict=True):
        torch.testing.assert_close(g, h, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("method", ["dpo", "sft"])
def test_every_packing_trains_like_separate_rows(tmp_path: Path, tiny_model_path: Path, method: str) -> None:
    """The same run with shared-prompt rows (DPO only), position-id packing and one padded row per
    sequence: same losses step by step (LoRA, so the reference pass runs with the adapters off). One
    batch holds all the data, as length grouping orders packed pairs by their row length and would
    otherwise batch them differently."""
    data = write_data(tmp_path)["pref" if method == "dpo" else "sft"]
    same = dict(eval_fraction=0.0, batch_size=len(PROMPTS))
    layouts = ["pairs", "positions", "off"] if method == "dpo" else ["positions", "off"]
    for packing in layouts:
        run = train(str(tiny_model_path), data, tmp_path / packing, cfg(method, packing=packing, **same))
        assert run.steps == 3
    for packing in layouts[:-1]:
        assert losses(tmp_path / packing) == pytest.approx(losses(tmp_path / "off"), abs=1e-4), packing


def test_auto_packing_per_kernel_and_device(tiny_model_path: Path) -> None:
    """auto: shared-prompt rows for paired methods under SDPA on the CPU (the CPU bench's winner), one
    row per sequence under SDPA on a GPU (no dense mask), position ids under a flash kernel; an explicit
    layout the kernel cannot run is a one-line error."""
    from transformers import AutoModelForCausalLM

    from alignkit.train.batches import choose_packing

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert model.config._attn_implementation == "sdpa"
    assert [choose_packing("auto", m, model, cpu) for m in ("dpo", "sft", "reward")] == ["pairs", "off", "off"]
    assert choose_packing("auto", "dpo", model, gpu) == "off"
    assert choose_packing("positions", "reward", model, cpu) == "off"
    model.config._attn_implementation = "flash_attention_2"
    assert [choose_packing("auto", m, model, gpu) for m in ("dpo", "kto")] == ["positions", "positions"]
    with pytest.raises(AlignkitError, match="packing=pairs needs sdpa attention; this model runs flash_attention_2"):
        choose_packing("pairs", "dpo", model, gpu)
    model.config._attn_implementation = "eager"
    with pytest.raises(AlignkitError, match="packing=positions needs one of"):
        choose_packing("positions", "dpo", model, cpu)


def test_epoch_order_is_deterministic_and_length_grouped(tiny_model_path: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = ChatTokenizer(AutoTokenizer.from_pretrained(tiny_model_path), 256)
    train_set, _ = load_examples(write_data(tmp_path)["pref"], TrainConfig(eval_fraction=0.0), tok)
    a = epoch_order(train_set, 4, seed=1, epoch=0)
    assert [[e.index for e in b] for b in a] == [[e.index for e in b] for b in epoch_order(train_set, 4, 1, 0)]
    assert [[e.index for e in b] for b in a] != [[e.index for e in b] for b in epoch_order(train_set, 4, 1, 1)]
    assert all(len(b) == 4 for b in a) and len(a) == 6
    # sorted inside the window: each batch's lengths are non-increasing
    assert all([e.length for e in b] == sorted((e.length for e in b), reverse=True) for b in a)


def test_config_file_overrides_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 1e-4\nlora: false\n")
    c = load_train_config(f, ["beta=0.5", "lora_target_modules=[q_proj, v_proj]"], "ipo")
    assert (c.method, c.learning_rate, c.lora, c.beta, c.lora_target_modules) == ("ipo", 1e-4, False, 0.5,
                                                                                   ["q_proj", "v_proj"])  # fmt: skip
    with pytest.raises(AlignkitError, match="unknown setting"):
        load_train_config(None, ["betta=1"])
    with pytest.raises(AlignkitError, match="learning_rate"):
        load_train_config(None, ["learning_rate=-1"])
    f.write_text("learning_rate: 1e-4\nwarmup: 3\n")
    with pytest.raises(AlignkitError, match=r"c\.yaml:2"):
        load_train_config(f, [])


def test_bad_data_line_is_named(tmp_path: Path, tiny_model_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n" + json.dumps({"prompt": "a"}))
    with pytest.raises(AlignkitError, match=r"bad\.jsonl:2.*chosen"):
        train(str(tiny_model_path), bad, tmp_path / "run", cfg("dpo"))


class Crash(Exception):
    pass


@pytest.mark.parametrize("lora", [True, False])
def test_resume_after_a_crash_gives_the_uninterrupted_losses(lora: bool, tmp_path: Path, tiny_model_path: Path) -> None:
    data = write_data(tmp_path)["pref"]
    c = cfg("dpo", max_steps=6, save_every=2, lora=lora, lora_dropout=0.1 if lora else 0.0, eval_fraction=0.0)
    whole = train(str(tiny_model_path), data, tmp_path / "whole", c)

    def crash_at_5(stage: str, done: int, total: int) -> None:
        if stage == "train" and done == 5:
            raise Crash

    with pytest.raises(Crash):
        train(str(tiny_model_path), data, tmp_path / "resumed", c, crash_at_5)
    assert (tmp_path / "resumed" / "checkpoints" / "latest").read_text() == "step-0000004"
    resumed = train(str(tiny_model_path), data, tmp_path / "resumed", c)
    assert losses(tmp_path / "resumed") == pytest.approx(losses(tmp_path / "whole"), abs=1e-6)
    assert len(losses(tmp_path / "resumed")) == 6
    assert resumed.final_metrics["loss"] == pytest.approx(whole.final_metrics["loss"], abs=1e-6)


def test_sigkill_then_the_same_command_resumes(tmp_path: Path, tiny_model_path: Path) -> None:
    data = write_data(tmp_path)["pref"]
    settings = ["max_steps=60", "save_every=5", "batch_size=2", "max_length=64", "eval_fraction=0", "merge=false"]
    args = [sys.executable, "-m", "alignkit", "train", "dpo", *settings, "--model", str(tiny_model_path),
            "--data", str(data)]  # fmt: skip
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*args, "--out", str(whole)], check=True, capture_output=True)
    proc = subprocess.Popen([*args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 12:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "train.json").exists()
    subprocess.run([*args, "--out", str(killed)], check=True, capture_output=True)
    assert losses(killed) == pytest.approx(losses(whole), abs=1e-6)


def test_exported_models_load_in_transformers_and_peft(tmp_path: Path, tiny_model_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = write_data(tmp_path)["sft"]
    result = train(str(tiny_model_path), data, tmp_path / "run", cfg("sft", merge=True))
    assert result.model_dir is not None and result.adapter_dir is not None
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    with_adapter = PeftModel.from_pretrained(base, result.adapter_dir)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    torch.testing.assert_close(merged(ids).logits, with_adapter(ids).logits, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(merged(ids).logits, AutoModelForCausalLM.from_pretrained(tiny_model_path)(ids).logits)


def test_full_finetune_exports_a_model_that_moved(tmp_path: Path, tiny_model_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    data = write_data(tmp_path)["sft"]
    result = train(str(tiny_model_path), data, tmp_path / "run", cfg("sft", lora=False))
    assert result.adapter_dir is None and result.model_dir is not None
    trained = AutoModelForCausalLM.from_pretrained(result.model_dir)
    before = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    ids = torch.tensor([[1, 2, 3]])
    assert not torch.allclose(trained(ids).logits, before(ids).logits)


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path: Path, tiny_model_path: Path) -> None:
    """gloo on CPU: 2 processes x batch 2 must step exactly like 1 process x batch 4."""
    data = write_data(tmp_path)["sft"]
    common = ["max_steps=4", "max_length=64", "eval_fraction=0", "merge=false", "learning_rate=1e-3", "save_every=100",
              "--model", str(tiny_model_path), "--data", str(data)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = tmp_path / "one"
    subprocess.run([sys.executable, "-m", "alignkit", "train", "sft", "batch_size=4", *common, "--out", str(one)],
                   check=True, capture_output=True, env=env)  # fmt: skip
    two = tmp_path / "two"
    from ..servers import free_port

    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    done = subprocess.run([*launch, "-m", "alignkit", "train", "sft", "batch_size=2", *common, "--out", str(two)],
                          capture_output=True, env=env, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((two / "train.json").read_text())["processes"] == 2
    assert losses(two) == pytest.approx(losses(one), abs=1e-5)


def test_train_cli_rejects_an_unknown_method(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from alignkit.cli import app

    res = CliRunner().invoke(app, ["train", "ppo-typo", "--data", str(tmp_path)])
    assert res.exit_code != 0


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_smollm2(method: str, tmp_path: Path, smollm2_path: Path) -> None:
    data = write_data(tmp_path)
    path = data["sft"] if method == "sft" else data["kto"] if method == "kto" else data["pref"]
    c = cfg(method, max_steps=1, batch_size=2, max_length=96, learning_rate=1e-5, eval_fraction=0.0, save_every=10)
    result = train(str(smollm2_path), path, tmp_path / "run", c)
    assert result.steps == 1 and result.adapter_dir is not None
    assert all(v == v for v in losses(tmp_path / "run"))
