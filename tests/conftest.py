"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer, and the slow-test switch."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run the slow tests on the real SmolLM2")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The converted SmolLM2 folder in the user's cache (converted once, on first use)."""
    from alignkit.models import DEFAULT_MODEL, resolve

    return Path(resolve(DEFAULT_MODEL))


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Path:
    """A 2-layer random Llama saved as a HF folder, with SmolLM2's tokenizer and chat template."""
    from alignkit.models import build_tiny

    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    build_tiny(path)
    return path


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_path: Path):  # type: ignore[no-untyped-def]
    from alignkit.backends.hf import HFBackend

    return HFBackend(str(tiny_model_path), batch_size=4)
