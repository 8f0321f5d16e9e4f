"""The command line: every command parses, shares the backend options, and fails in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from alignkit.cli import app

RUNNER = CliRunner()
COMMANDS = ["generate", "serve", "posture", "compare", "redteam", "curate", "train", "run", "sweep"]
BACKEND_OPTIONS = ["--backend", "--batch-size", "--device", "--steer", "--concurrency", "--base-url", "--api-key-env"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = RUNNER.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["generate", "serve", "posture", "compare", "redteam", "curate"])
def test_commands_that_run_a_model_take_the_same_backend_options(command: str) -> None:
    result = RUNNER.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    for option in BACKEND_OPTIONS:
        assert option in result.output, (command, option)


def test_the_backend_bundle_builds_one_spec() -> None:
    from alignkit.cli.base import BackendChoice, _backend_spec

    spec = _backend_spec(BackendChoice.openai, batch_size=None, device=None, steer=None, concurrency=3,
                         base_url="http://x/v1", api_key_env="K")  # fmt: skip
    assert (spec.kind, spec.concurrency, spec.base_url, spec.api_key_env) == ("openai", 3, "http://x/v1", "K")


def test_a_misspelt_preset_key_is_one_line_and_exit_2() -> None:
    done = subprocess.run([sys.executable, "-m", "alignkit", "run", "--preset", "smoke", "curate.max_new_token=3"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "curate: unknown setting 'max_new_token'" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_steering_needs_the_hf_backend() -> None:
    from alignkit.errors import AlignkitError
    from alignkit.jobs.backend import BackendSpec

    with pytest.raises(AlignkitError, match="--steer needs --backend hf"):
        BackendSpec(kind="openai", steer="x").build("m")


def test_curate_on_policy_takes_its_round_samples_and_temperature(tmp_path: object) -> None:
    """`alignkit curate --method on-policy` passes every on-policy setting through to the data it writes,
    and says which prompts it skipped and why; rlaif with one sample is refused before anything loads."""
    import json
    from pathlib import Path

    out = Path(str(tmp_path)) / "cur"
    args = ["curate", "--method", "on-policy", "--model", "tiny-random-llama", "--judge", "patterns", "--limit", "6",
            "--samples", "1", "--round", "2", "--temperature", "0.5", "--no-partial-refusals-chosen",
            "--max-new-tokens", "8", "--out", str(out)]  # fmt: skip
    result = RUNNER.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "curate.json").read_text())["config"]
    assert (cfg["round"], cfg["samples"], cfg["temperature"], cfg["partial_refusals_chosen"]) == (2, 1, 0.5, False)
    summary = json.loads((out / "curate.json").read_text())
    assert ("skipped: " in result.output) == bool(summary["skipped"])
    bad = RUNNER.invoke(app, ["curate", "--method", "rlaif", "--samples", "1", "--out", str(out / "x")])
    assert bad.exit_code == 2 and "at least 2" in bad.output and not (out / "x").exists()
