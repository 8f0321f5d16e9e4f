"""Slow tests on the real SmolLM2-135M-Instruct."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.backends.hf import HFBackend
from alignkit.types import GenerationParams, user

pytestmark = pytest.mark.slow

PROMPTS = [
    "Write a short thank-you note to my neighbour for watering my plants.",
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "Explain what a prime number is.",
    "Name two colours of the rainbow.",
]


@pytest.fixture(scope="module")
def smollm2() -> HFBackend:
    return HFBackend("smollm2-135m-instruct", batch_size=8)


def test_answers_like_a_chat_model(smollm2: HFBackend) -> None:
    out = smollm2.generate([[user(p)] for p in PROMPTS[:2]], GenerationParams(max_new_tokens=48))
    assert "neighbo" in out[0].text.lower()
    assert "paris" in out[1].text.lower()
    assert all(c.finish_reason in ("stop", "length") and c.ok for c in out)


def test_batched_greedy_equals_one_at_a_time(smollm2: HFBackend) -> None:
    params = GenerationParams(max_new_tokens=24)
    convs = [[user(p)] for p in PROMPTS]
    batched = [c.text for c in smollm2.generate(convs, params)]
    single = [smollm2.generate([c], params)[0].text for c in convs]
    assert batched == single


def test_generation_logprobs_equal_the_score_of_the_reply(smollm2: HFBackend) -> None:
    convs = [[user(p)] for p in PROMPTS[:3]]
    out = smollm2.generate(convs, GenerationParams(max_new_tokens=16, logprobs=True))
    scored = smollm2.score(convs, [c.text for c in out])
    for c, s in zip(out, scored, strict=True):
        assert c.token_logprobs is not None
        if s.num_tokens == len(c.token_logprobs):  # the text re-tokenizes to the same ids
            assert s.logprob == pytest.approx(sum(c.token_logprobs), abs=1e-3)
    assert sum(s.num_tokens == c.completion_tokens for c, s in zip(out, scored, strict=True)) >= 2


def test_main_job_runs_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "alignkit",
        "generate",
        "--prompts",
        "demo",
        "--out",
        str(out),
        "--max-new-tokens",
        "32",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 10 and all(rec["completion"].strip() for rec in recs)
    assert {rec["model"] for rec in recs} == {"smollm2-135m-instruct"}


def test_posture_cli_with_the_default_judge(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "alignkit",
        "posture",
        "--limit",
        "4",
        "--max-new-tokens",
        "48",
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    posture = json.loads((out / "posture.json").read_text())
    overall = posture["greedy"]["all"]
    assert overall["harmful_compliance_rate"]["n"] == 4 and overall["over_refusal_rate"]["n"] == 4
    card = posture["judge_calibration"]
    assert posture["judge"] == "pair" and card["heldout_smollm2"]["binary_accuracy"] >= 0.92
    assert card["training_data_sha256"] and card["per_style"]
    assert "<svg" in (out / "report.html").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads((out / "posture.json").read_text())["greedy"] == posture["greedy"]


def test_compare_cli_ranks_smollm2_against_a_random_model(tmp_path: Path, tiny_model_path: Path) -> None:
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "alignkit", "compare", "smollm2-135m-instruct", str(tiny_model_path),
           "--limit", "3", "--max-new-tokens", "32", "--judge", "patterns", "--profile", "creative",
           "--out", str(out)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    body = json.loads((out / "compare.json").read_text())
    assert [m["model"] for m in body["models"]] == ["smollm2-135m-instruct", str(tiny_model_path)]
    assert body["recommendation"]["model"] in body["pareto_front"]
    assert "recommended:" in r.stdout


def test_redteam_cli_campaign_resumes_and_its_findings_load(tmp_path: Path) -> None:
    from alignkit.data import load_preferences

    out = tmp_path / "rt"
    cmd = [sys.executable, "-m", "alignkit", "redteam", "--attacks", "prefix_injection,best_of_n",
           "--per-category", "1", "--max-new-tokens", "32", "--out", str(out)]  # fmt: skip
    capped = subprocess.run([*cmd, "--max-prompts", "12"], capture_output=True, text=True, timeout=1200)
    assert capped.returncode == 0, capped.stderr[-2000:]
    assert "stopped by max_prompts" in " ".join(capped.stdout.split())
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    body = json.loads((out / "redteam.json").read_text())
    assert body["complete"] and set(body["attack_success_rate"]) == {"direct", "prefix_injection", "best_of_n"}
    assert body["attack_success_rate"]["direct"]["all"]["n"] == 8
    pairs = load_preferences(out / "findings" / "preferences.jsonl")
    assert len(pairs) == body["findings"]["pairs"] > 0


def _units(db: Path) -> list[tuple]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("SELECT attack, seed_id, sample, category, success, errors, trials FROM rt_units"))
    finally:
        con.close()


def _landed(db: Path) -> int:
    """Units in the store so far; 0 while the store is still being created."""
    import sqlite3

    try:
        return len(_units(db)) if db.exists() else 0
    except sqlite3.OperationalError:
        return 0


def test_redteam_killed_with_sigkill_resumes_to_identical_totals(tmp_path: Path) -> None:
    import os
    import signal
    import time

    args = ["--attacks", "prefix_injection,base64,crescendo", "--per-category", "1", "--max-new-tokens", "24"]
    ref = subprocess.run([sys.executable, "-m", "alignkit", "redteam", *args, "--out", str(tmp_path / "ref")],
                         capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-2000:]
    cmd = [sys.executable, "-m", "alignkit", "redteam", *args, "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "run" / "alignkit.sqlite"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if _landed(db) >= 26:  # the template units and a crescendo unit or two
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    landed = len(_units(db))
    assert 24 <= landed < 32, "the kill should land inside the crescendo units"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _units(db) == _units(tmp_path / "ref" / "alignkit.sqlite")
    ref_body = json.loads((tmp_path / "ref" / "redteam.json").read_text())
    run_body = json.loads((tmp_path / "run" / "redteam.json").read_text())
    assert run_body["attack_success_rate"] == ref_body["attack_success_rate"]
