"""Several worker processes share one SQLite audit log: WAL mode and a busy timeout, nothing lost."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignkit.guard.audit import AuditLog
from alignkit.guard.cli import guard_app

N = 3000


def write_many(path: str, worker: int) -> None:
    log = AuditLog(path, batch_size=7)  # small batches: many write transactions that contend
    for i in range(N):
        log.record(f"w{worker}-{i}", "pii", "input", "allow")
    log.close()


def test_two_processes_write_the_same_audit_log(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=write_many, args=(path, w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(DISTINCT request_id) FROM decisions").fetchone()[0] == 2 * N


def test_serve_takes_workers(tmp_path: Path, monkeypatch: object) -> None:
    result = CliRunner().invoke(guard_app, ["serve", "--help"])
    assert "--workers" in result.output


def test_a_worker_builds_its_app_from_the_spec(tmp_path: Path, monkeypatch: object) -> None:
    import json
    from dataclasses import asdict

    import pytest
    from fastapi.testclient import TestClient

    from alignkit.jobs.guard import SPEC_ENV, app_from_env
    from alignkit.jobs.guard import GuardServeSpec as ServeSpec

    mp_ = pytest.MonkeyPatch()
    keys = tmp_path / "keys"
    keys.write_text("k1\n")
    from alignkit.guard.config import default_config

    cfg = default_config()
    cfg.topic.enabled = False
    cfg.classifier.enabled = False
    (tmp_path / "guard.yaml").write_text(cfg.to_yaml())
    url, audit = "http://user:s3cret@localhost:9/v1", str(tmp_path / "a.sqlite")
    spec = ServeSpec(url, str(tmp_path / "guard.yaml"), "default", str(keys), audit, "m", "NO_SUCH_KEY_ENV")
    mp_.setenv(SPEC_ENV, json.dumps(asdict(spec)))
    try:
        with TestClient(app_from_env()) as c:
            r = c.get("/v1/models", headers={"authorization": "Bearer k1"})
            assert r.status_code == 200 and "s3cret" not in r.text and "localhost:9" in r.text
    finally:
        mp_.undo()


def test_workers_share_the_cores_for_the_model_rails(monkeypatch: pytest.MonkeyPatch) -> None:
    """With N workers each worker process's torch pool gets cores // N threads (2 workers on 2 cores: 1
    each), unless the user set OMP_NUM_THREADS."""
    import os
    import subprocess
    import sys

    from alignkit.guard.proxy import share_cores

    probe = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    share_cores(2)
    assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() == "2"
    share_cores(4)  # set already: kept
    assert os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.delenv("OMP_NUM_THREADS")
    share_cores(8)
    assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() == "1"
