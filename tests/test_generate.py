from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignkit.backends import MockBackend
from alignkit.data import load_prompts
from alignkit.errors import DataError
from alignkit.generate import generate_file, prompts_path
from alignkit.types import GenerationParams


def write_prompts(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}"}) + "\n" for i in range(n)))
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_writes_one_line_per_prompt_with_trl_fields(tmp_path: Path) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "a", "prompt": "hello", "category": "ordinary", "label": "benign"}) + "\n")
    backend = MockBackend({"hello": "hi there"})
    s = generate_file(backend, src, tmp_path / "out.jsonl", GenerationParams(), system="Be nice.")
    assert (s.written, s.skipped, s.failed) == (1, 0, 0)
    [rec] = lines(tmp_path / "out.jsonl")
    assert rec["prompt"] == "hello" and rec["completion"] == "hi there"
    assert rec["category"] == "ordinary" and rec["label"] == "benign" and rec["model"] == "mock"
    assert backend.calls[0][0] == {"role": "system", "content": "Be nice."}


def test_rerun_skips_done_ids_and_retries_failures(tmp_path: Path) -> None:
    src = write_prompts(tmp_path / "p.jsonl", 5)
    out = tmp_path / "out.jsonl"
    flaky = MockBackend(lambda conv: RuntimeError("boom") if conv[-1]["content"] == "question 3" else "ok")
    first = generate_file(flaky, src, out, GenerationParams(), chunk_size=2)
    assert (first.written, first.failed) == (4, 1)
    second_backend = MockBackend(("fine",))
    second = generate_file(second_backend, src, out, GenerationParams())
    assert (second.written, second.skipped, second.failed) == (1, 4, 0)
    assert [c[-1]["content"] for c in second_backend.calls] == ["question 3"]
    ids = [r["id"] for r in lines(out)]
    assert sorted(ids) == [f"p{i}" for i in range(5)]


def test_torn_last_line_is_repaired_and_redone(tmp_path: Path) -> None:
    src = write_prompts(tmp_path / "p.jsonl", 3)
    out = tmp_path / "out.jsonl"
    generate_file(MockBackend(("x",)), src, out, GenerationParams())
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 7])  # a kill in the middle of the last write
    s = generate_file(MockBackend(("y",)), src, out, GenerationParams())
    assert (s.written, s.skipped) == (1, 2)
    assert sorted(r["id"] for r in lines(out)) == ["p0", "p1", "p2"]


def test_bad_prompt_file_is_one_located_line(tmp_path: Path) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text('{"id": "a", "prompt": "x"}\n{"id": "b"}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:2: 'prompt' is missing"):
        generate_file(MockBackend(), src, tmp_path / "o.jsonl", GenerationParams())


def test_builtin_demo_prompts_load() -> None:
    prompts = load_prompts(prompts_path("demo"))
    assert len(prompts) >= 8
    assert {p.label for p in prompts} == {"harmful", "benign"}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alignkit", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_cli_kill_and_rerun_loses_nothing_and_duplicates_nothing(tmp_path: Path, tiny_model_path: Path) -> None:
    src = write_prompts(tmp_path / "p.jsonl", 40)
    out = tmp_path / "out.jsonl"
    args = ["-m", "alignkit", "generate", "--model", str(tiny_model_path), "--prompts", str(src),
            "--out", str(out), "--max-new-tokens", "24", "--batch-size", "2"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 6):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = out.read_bytes().count(b"\n")  # complete lines; a torn last one is redone
    assert 6 <= partial < 40, "the kill should land half way"
    r = run_cli(*args[2:])
    assert r.returncode == 0, r.stderr
    recs = lines(out)
    assert sorted(int(r["id"][1:]) for r in recs) == list(range(40))
    said = " ".join(r.stdout.split())
    assert f"{40 - partial} written, {partial} already there, 0 failed" in said


def test_cli_unknown_model_is_one_line_with_the_known_names(tmp_path: Path) -> None:
    r = run_cli("generate", "--model", "no-such-model", "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "unknown model 'no-such-model'" in r.stderr and "smollm2-135m-instruct" in r.stderr


def test_cli_unreachable_endpoint_is_one_line(tmp_path: Path) -> None:
    from .servers import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    r = run_cli(
        "generate",
        "--backend",
        "openai",
        "--model",
        "m",
        "--base-url",
        url,
        "--out",
        str(tmp_path / "o.jsonl"),
    )
    assert r.returncode == 2
    assert "unreachable after" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error:")


def test_cli_bad_data_is_one_line_and_keeps_earlier_results(tmp_path: Path) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text('{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": "y", "label": "evil"}\n')
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "z", "completion": "kept"}\n')
    r = run_cli("generate", "--model", "no-such-model-either", "--prompts", str(src), "--out", str(out))
    assert r.returncode == 2
    r = run_cli("generate", "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                "--prompts", str(src), "--out", str(out))  # fmt: skip
    assert r.returncode == 2
    assert "p.jsonl:2: 'label' is 'evil'" in r.stderr and "Traceback" not in r.stderr
    assert out.read_text() == '{"id": "z", "completion": "kept"}\n'


def test_every_command_has_help() -> None:
    for cmd in (
        ["generate"],
        ["serve"],
        ["models"],
        ["models", "list"],
        ["models", "pull"],
        ["posture"],
        ["compare"],
        ["redteam"],
        ["judge", "calibrate"],
        ["constitution", "validate"],
        ["constitution", "show"],
        ["models", "info"],
    ):
        r = run_cli(*cmd, "--help", timeout=60)
        assert r.returncode == 0 and "Usage" in r.stdout, cmd


def test_cli_constitution_validate_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "name: x\nprinciples:\n  - id: a\n    kind: vibes\n    statement: The assistant is nice.\n"
        "    critique: Identify problems.\n    revision: Rewrite it better.\n"
    )
    r = run_cli("constitution", "validate", str(bad), timeout=60)
    assert r.returncode == 2 and "c.yaml:4: principles[0] (id a).kind" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    ok = run_cli("constitution", "validate", "default", timeout=60)
    assert ok.returncode == 0 and "valid, 16 principles" in ok.stdout
