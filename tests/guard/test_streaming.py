"""Streaming: output rails over the new text only (linear in the reply), blocks audited as when not
streamed, and the guard's action as a final SSE event."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alignkit.backends import MockBackend
from alignkit.guard import Guard, GuardConfig
from alignkit.guard.audit import AuditLog
from alignkit.guard.config import default_config
from alignkit.guard.engine import Screened
from alignkit.guard.proxy import chunks, create_guard_app
from alignkit.types import Conversation, user

KEY = "k-stream"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1b2c3d4e5f6g7h8i9j0\n-----END RSA PRIVATE KEY-----"
PROSE = "The quick brown fox jumps over the lazy dog near the river bank today. "


def fast_config() -> GuardConfig:
    cfg = default_config()
    cfg.topic.enabled = False
    cfg.classifier.enabled = False
    return cfg


def stream_all(guard: Guard, text: str, size: int = 24) -> tuple[str, Any]:
    stream = guard.stream(Screened("s", [user("hi")], []))
    out: list[str] = []
    for piece in chunks(text, size):
        got = stream.feed(piece)
        if got is None:
            return "".join(out), stream
        out.append(got)
    rest = stream.finish()
    return "".join(out) + (rest or ""), stream


def test_streaming_time_is_linear_in_the_reply() -> None:
    # Was quadratic: 10k/20k/40k characters took 0.32/1.15/4.28 s streamed against 0.01 s in one piece.
    guard = Guard(fast_config())
    times = []
    for n in (10_000, 20_000, 40_000):
        text = PROSE * (n // len(PROSE))
        start = time.perf_counter()
        out, _ = stream_all(guard, text)
        times.append(time.perf_counter() - start)
        assert out == text
    assert times[2] < 2.0, times
    assert times[2] <= 6 * times[0] + 0.05, times


def test_streamed_text_is_what_the_whole_reply_gives() -> None:
    guard = Guard(fast_config())
    screened = Screened("s", [user("hi")], [])
    for text in [
        PROSE * 3 + "Write to jane.doe@example.org or call (303) 555-0185 today. " + PROSE * 2,
        "\ufb01ne caf\u00e9 \uff21\uff22\uff23 " * 20 + "card 4111 1111 1111 1111 end",
        "短い文" * 200,
        PROSE * 2 + "mail: " + "x" * 30 + "@example.org " + PROSE,
    ]:
        whole = guard.screen_output(text, screened)
        for size in (1, 7, 24, 500):
            streamed, stream = stream_all(guard, text, size)
            assert stream.blocked is None
            assert streamed == whole.text, (size, text[:40])


def test_a_secret_is_cut_mid_stream() -> None:
    guard = Guard(fast_config())
    out, stream = stream_all(guard, PROSE * 4 + "Use this key: " + PEM + " and restart. " + PROSE)
    assert stream.blocked is not None and stream.blocked.rail == "secrets"
    assert "BEGIN" not in out and "MIIE" not in out


def reply_for(conversation: Conversation) -> str:
    last = conversation[-1]["content"]
    if "leak" in last:
        return PROSE * 4 + "Use this key: " + PEM + " and then restart."
    if "contact" in last:
        return PROSE + "Write to the owner at dana.scully@example.org today."
    return "Echo: " + last


def post(c: TestClient, text: str, stream: bool) -> Any:
    body = {"stream": stream, "messages": [{"role": "user", "content": text}]}
    return c.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})


def events(raw: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]


@pytest.mark.parametrize(("text", "action"), [("hello", "allow"), ("contact?", "redact"), ("leak it", "block")])
def test_a_stream_is_audited_as_the_same_reply_unstreamed(tmp_path: Path, text: str, action: str) -> None:
    audit_path = tmp_path / "audit.sqlite"
    app = create_guard_app(MockBackend(reply_for), fast_config(), {KEY}, audit_path)
    with TestClient(app) as c:
        plain = post(c, text, stream=False)
        streamed = post(c, text, stream=True)
        assert plain.headers["x-guard-action"] == action
        evs = events(streamed.text)
        trailer = evs[-1]
        assert trailer["object"] == "chat.completion.chunk" and trailer["choices"] == []
        assert trailer["guard"]["action"] == action
        assert streamed.text.rstrip().endswith("data: [DONE]")
        content = "".join(e["choices"][0]["delta"].get("content") or "" for e in evs if e["choices"])
        if action != "block":
            assert content == plain.json()["choices"][0]["message"]["content"]
        app.state.audit.flush()
    audit = AuditLog(audit_path)
    try:
        rows = audit.rows()
    finally:
        audit.close()
    by_request: dict[str, set[tuple[str, str, str]]] = {}
    for r in rows:
        if r["side"] == "output":
            by_request.setdefault(r["request_id"], set()).add((r["rail"], r["side"], r["action"]))
    assert plain.json()["id"] in by_request and evs[0]["id"] in by_request
    assert by_request[plain.json()["id"]] == by_request[evs[0]["id"]]
    if action == "block":
        assert ("secrets", "output", "block") in by_request[evs[0]["id"]]
