"""The run folder both loops share: metric truncation on resume, checkpoints read without unpickling code, one
LoRA settings model for both configs, the objectives table, and TensorBoard rows from either loop."""

from __future__ import annotations

import ast
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from alignkit.errors import AlignkitError
from alignkit.rl.config import RLConfig, load_rl_config
from alignkit.train.checkpoint import load_checkpoint, load_tensors, truncate_metrics
from alignkit.train.config import METHODS, LoraSettings, TrainConfig, load_train_config
from alignkit.train.objectives import OBJECTIVES, Scores, sft_nll, sft_token_mean
from alignkit.train.rundir import RunDir, mixed_precision

SRC = Path(__file__).resolve().parents[2] / "src" / "alignkit"


# ---- metrics.jsonl on resume ---------------------------------------------------------------------


def test_truncate_metrics_drops_a_last_line_cut_mid_json(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 0.5 / s} for s in (1, 2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')  # killed mid-write
    truncate_metrics(path, 2)
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:2]


def test_truncate_metrics_names_a_malformed_line_before_the_last(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(AlignkitError, match=r"metrics\.jsonl:2"):
        truncate_metrics(path, 3)


# ---- nothing in a run folder is unpickled as code ------------------------------------------------


class Planted:
    """Unpickling this creates a file: the proof that a checkpoint file ran code when it was loaded."""

    def __init__(self, proof: Path) -> None:
        self.proof = proof

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.proof,))


@pytest.fixture
def torch_unsafe_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch before 2.6 unpickled anything by default; this variable brings that default back. A call that passes
    weights_only=True explicitly is not affected."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


class StubAccelerator:
    def load_state(self, path: str) -> None:
        pass


def test_a_planted_scheduler_file_is_refused_not_run(tmp_path: Path, torch_unsafe_default: None) -> None:
    ckpt = tmp_path / "checkpoints" / "step-0000002"
    ckpt.mkdir(parents=True)
    proof = tmp_path / "ran"
    torch.save(Planted(proof), ckpt / "alignkit_scheduler.pt")
    (ckpt / "alignkit_state.json").write_text(json.dumps({"step": 2}))
    (tmp_path / "checkpoints" / "latest").write_text(ckpt.name)
    scheduler = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), lambda s: 1)
    with pytest.raises(AlignkitError, match=r"alignkit_scheduler\.pt"):
        load_checkpoint(StubAccelerator(), tmp_path / "checkpoints", scheduler)
    assert not proof.exists()


def test_load_tensors_reads_tensors_and_plain_values(tmp_path: Path) -> None:
    weights = torch.arange(3.0)
    torch.save({"w": weights, "step": 2, "lrs": [0.1, None]}, tmp_path / "ok.pt")
    got = load_tensors(tmp_path / "ok.pt")
    assert torch.equal(got["w"], weights) and got["step"] == 2 and got["lrs"] == [0.1, None]


def test_a_planted_reference_cache_is_refused_on_resume(
    tmp_path: Path, tiny_model_path: Path, torch_unsafe_default: None
) -> None:
    from alignkit.train.loop import train

    data = tmp_path / "pref.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "no", "rejected": f"yes {i}"}) + "\n"
                            for i in range(4)))  # fmt: skip
    cfg = TrainConfig.model_validate(
        {"method": "dpo", "max_steps": 1, "batch_size": 2, "max_length": 32, "eval_fraction": 0.0, "merge": False}
    )
    train(str(tiny_model_path), data, tmp_path / "run", cfg)
    (cache,) = (tmp_path / "run").glob("reference-*.pt")
    proof = tmp_path / "ran"
    torch.save(Planted(proof), cache)
    with pytest.raises(AlignkitError, match="reference-"):
        train(str(tiny_model_path), data, tmp_path / "run", cfg)
    assert not proof.exists()


def test_every_torch_load_in_the_training_code_is_weights_only() -> None:
    unsafe = []
    for path in sorted([*(SRC / "train").glob("*.py"), *(SRC / "rl").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    unsafe.append(f"{path.name}:{node.lineno}")
    assert unsafe == []


# ---- one LoRA settings model, flat keys in both configs ------------------------------------------


def test_both_configs_share_the_lora_settings_with_flat_keys(tmp_path: Path) -> None:
    offline = load_train_config(None, ["lora_r=8", "lora_alpha=16", "lora_target_modules=[q_proj]"], "sft")
    online = load_rl_config(None, ["lora_r=8", "lora_alpha=16", "lora_target_modules=[q_proj]"])
    preset = TrainConfig.model_validate({"method": "sft", "lora_r": 8})  # how the pipeline's presets pass it
    for cfg in (offline, online, preset):
        assert isinstance(cfg, LoraSettings) and cfg.lora_r == 8
    assert {k: getattr(offline, k) for k in LoraSettings.model_fields} == {
        k: getattr(online, k) for k in LoraSettings.model_fields
    }
    with pytest.raises(AlignkitError, match="lora_rank"):
        load_rl_config(None, ["lora_rank=8"])
    with pytest.raises(ValueError, match="lora_r"):
        RLConfig.model_validate({"lora_r": 0})


# ---- the objectives table --------------------------------------------------------------------------


def test_every_method_has_exactly_one_objective() -> None:
    assert sorted(OBJECTIVES) == sorted(METHODS)


def test_sft_objective_summed_then_divided_by_tokens_is_the_token_mean() -> None:
    """Two examples of 2 and 3 trained tokens: the loop divides the summed losses by the 5 tokens."""
    token_logps = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.25, -0.25]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    sums, counts = (token_logps * mask).sum(-1), mask.sum(-1)  # (-3, -1), (2, 3)
    losses, metrics = OBJECTIVES["sft"](Scores(sums, counts), TrainConfig.model_validate({"method": "sft"}))
    assert losses.tolist() == [3.0, 1.0] and losses.sum() / counts.sum() == pytest.approx(0.8)
    assert float(losses.sum() / counts.sum()) == pytest.approx(float(sft_token_mean(token_logps, mask)))
    assert metrics["logps/mean_token"].tolist() == pytest.approx([-1.5, -1.0 / 3])
    assert sft_nll(sums, counts)[0].tolist() == [3.0, 1.0]


def test_an_objective_missing_its_inputs_says_which() -> None:
    with pytest.raises(ValueError, match="ref_chosen"):
        OBJECTIVES["dpo"](Scores(torch.zeros(2), rejected=torch.zeros(2)), TrainConfig.model_validate({}))


# ---- TensorBoard rows, whichever loop logs them -----------------------------------------------------


def test_run_dir_writes_metrics_and_tensorboard_scalars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scalars: list[tuple[str, float, int]] = []

    class Writer:
        def __init__(self, logdir: str) -> None:
            assert logdir == str(tmp_path / "run" / "tensorboard")

        def add_scalar(self, key: str, value: float, step: int) -> None:
            scalars.append((key, value, step))

        def close(self) -> None:
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    run = RunDir(tmp_path / "run", bf16=False, tensorboard=True)
    run.begin(RLConfig.model_validate({"lora_r": 4}), {"model": "m"})
    run.log({"step": 1, "loss": 0.25, "gaming": False, "kl": 0.1})
    run.close()
    assert scalars == [("loss", 0.25, 1), ("kl", 0.1, 1)]
    assert run.logged() == [{"step": 1, "loss": 0.25, "gaming": False, "kl": 0.1}]
    import yaml

    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert list(written)[:3] == ["model", "method", "lora"] and written["lora_r"] == 4


# ---- where the trainers run ------------------------------------------------------------------------


def test_trainers_follow_the_device_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGNKIT_DTYPE", raising=False)
    cpu = torch.device("cpu")
    assert mixed_precision(None, cpu) == "no" and mixed_precision(True, cpu) == "bf16"
    monkeypatch.setenv("ALIGNKIT_DTYPE", "bf16")
    assert mixed_precision(None, cpu) == "bf16" and mixed_precision(False, cpu) == "no"
    if not torch.cuda.is_available():
        assert mixed_precision(None, torch.device("cuda")) == "bf16"  # the dtype variable still rules
        monkeypatch.delenv("ALIGNKIT_DTYPE")
        monkeypatch.setenv("ALIGNKIT_DEVICE", "cuda")
        with pytest.raises(AlignkitError, match="cuda requested"):
            RunDir(tmp_path / "run", bf16=None)
        monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")
        assert RunDir(tmp_path / "run", bf16=None).acc.device.type == "cpu"
