"""The audit log: one SQLite row per rail decision, written by one thread per process (several worker
processes may share the file), never holding the text checked."""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    request_id TEXT NOT NULL,
    rail TEXT NOT NULL,
    side TEXT NOT NULL,
    action TEXT NOT NULL,
    category TEXT,
    reason TEXT NOT NULL,
    latency_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_request ON decisions (request_id);
"""


@dataclass(frozen=True)
class AuditRecord:
    request_id: str
    rail: str
    side: str
    action: str
    """allow, block, redact, rewrite, or error when the rail failed (the request then fails closed)."""
    reason: str
    category: str | None
    latency_ms: float
    time: float


_STOP = object()
BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's write lock (uvicorn workers share one log)."""


class AuditLog:
    """Thread-safe: callers only enqueue; a single writer thread inserts in batches, so that no record
    is lost or interleaved however many requests log at once. `flush` waits until everything queued
    so far is on disk; `close` flushes and stops the writer.

    Rows carry the rail's reason, which rails word without quoting the text they checked: the log
    never holds a message, a reply, or the personal data a rail redacted."""

    def __init__(self, path: str | Path, *, batch_size: int = 512) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self._queue: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        # Several worker processes may open the same log at once: WAL lets readers and one writer
        # proceed together, and the busy timeout makes a writer wait for another's lock instead of failing.
        with sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self._writer = threading.Thread(target=self._write_loop, name="guard-audit", daemon=True)
        self._closed = False
        self._lock = threading.Lock()
        self._writer.start()

    @property
    def error(self) -> BaseException | None:
        """What stopped the writer, or None while it works."""
        return self._error

    def record(
        self,
        request_id: str,
        rail: str,
        side: str,
        action: str,
        reason: str = "",
        category: str | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        if self._error is not None:
            raise RuntimeError(f"the audit writer failed: {self._error}")
        record = AuditRecord(request_id, rail, side, action, reason, category, latency_ms, time.time())
        with self._lock:
            if self._closed:
                raise RuntimeError("the audit log is closed")
            self._queue.put(record)

    def record_many(self, records: list[AuditRecord]) -> None:
        """Several records in one queue operation (a request's decisions)."""
        if self._error is not None:
            raise RuntimeError(f"the audit writer failed: {self._error}")
        with self._lock:
            if self._closed:
                raise RuntimeError("the audit log is closed")
            self._queue.put(records)

    def _write_loop(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        db.execute("PRAGMA synchronous=NORMAL")
        stop = False
        while not stop:
            items = [self._queue.get()]
            while len(items) < self.batch_size:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [
                r for item in items for r in (item if isinstance(item, list) else [item]) if isinstance(r, AuditRecord)
            ]
            stop = any(r is _STOP for r in items)
            try:
                if records:
                    with db:
                        db.executemany(
                            "INSERT INTO decisions (time, request_id, rail, side, action, category, reason, latency_ms)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [
                                (r.time, r.request_id, r.rail, r.side, r.action, r.category, r.reason, r.latency_ms)
                                for r in records
                            ],
                        )
            except sqlite3.Error as e:
                self._error = e
            finally:
                for _ in items:
                    self._queue.task_done()
        db.close()

    def flush(self) -> None:
        """Block until every record queued so far is written."""
        self._queue.join()
        if self._error is not None:
            raise RuntimeError(f"the audit writer failed: {self._error}")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._writer.join()

    def rows(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Written records (call `flush` first to include everything queued), oldest first."""
        with sqlite3.connect(self.path) as db:
            db.row_factory = sqlite3.Row
            sql = "SELECT * FROM decisions" + (" WHERE request_id = ?" if request_id else "") + " ORDER BY id"
            return [dict(r) for r in db.execute(sql, (request_id,) if request_id else ())]

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
