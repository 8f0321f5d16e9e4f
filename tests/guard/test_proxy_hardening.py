"""The proxy under hostile or careless clients: sizes, bounds, malformed bodies, queueing, credentials."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from alignkit.backends import MockBackend
from alignkit.guard import Decision, Guard, RailContext
from alignkit.guard.base import Side, allow
from alignkit.guard.config import GuardConfig, default_config
from alignkit.guard.proxy import create_guard_app, load_api_keys, redact_url
from alignkit.types import Completion, Conversation, GenerationParams

KEY = "k-hardening"
AUTH = {"authorization": f"Bearer {KEY}"}


def fast_config() -> GuardConfig:
    cfg = default_config()
    cfg.topic.enabled = False
    cfg.classifier.enabled = False
    return cfg


def app_client(upstream: Any = None, cfg: GuardConfig | None = None, **kw: Any) -> TestClient:
    upstream = upstream if upstream is not None else MockBackend(lambda conv: "Echo: " + conv[-1]["content"])
    return TestClient(create_guard_app(upstream, cfg or fast_config(), {KEY}, kw.pop("audit", None), **kw))


def chat(c: TestClient, body: dict[str, Any] | bytes) -> Any:
    if isinstance(body, bytes):
        return c.post("/v1/chat/completions", content=body, headers={**AUTH, "content-type": "application/json"})
    return c.post("/v1/chat/completions", json=body, headers=AUTH)


def user_body(text: str, **kw: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **kw}


def test_every_rail_runs_off_the_event_loop() -> None:
    seen: dict[str, str] = {}

    class Probe:
        name = "probe"
        uses_model = False

        def __init__(self, side: Side) -> None:
            self.side: Side = side

        def check(self, text: str, context: RailContext) -> Decision:
            try:
                asyncio.get_running_loop()
                seen[self.side] = "loop"
            except RuntimeError:
                seen[self.side] = "thread"
            return allow(self.name)

    guard = Guard(fast_config(), input_rails=[Probe("input")], output_rails=[Probe("output")])
    with app_client(guard=guard) as c:
        assert chat(c, user_body("hi")).status_code == 200
    assert seen == {"input": "thread", "output": "thread"}


def test_a_one_megabyte_body_is_answered_fast() -> None:
    with app_client() as c:
        one_mb = json.dumps(user_body("x" * 1_048_576)).encode()
        start = time.perf_counter()
        r = chat(c, one_mb)
        too_large = time.perf_counter() - start
        assert r.status_code == 413
        # Just under the limit: one huge turn, then many turns each under the per-message limit.
        single = user_body("word " * 199_000)
        many = {"messages": [{"role": "user", "content": "word " * 6_000}] * 32}
        times = []
        for body in (single, many):
            start = time.perf_counter()
            r = chat(c, body)
            times.append(time.perf_counter() - start)
            assert r.status_code == 200 and r.headers["x-guard-action"] == "block", r.text[:200]
    # The target is 100 ms of server time; the test client's own JSON encoding is counted here too.
    assert too_large < 0.5 and max(times) < 0.5, (too_large, times)


@pytest.mark.parametrize(
    "body",
    [
        user_body("hi", max_tokens=10**18),
        user_body("hi", max_completion_tokens=10**9),
        user_body("hi", stop=["a", "b", "c", "d", "e"]),
        user_body("hi", stop="x" * 10_000),
        user_body("hi", seed=10**30),
        user_body("hi", n=10**30),
    ],
)
def test_out_of_bound_parameters_are_a_400(body: dict[str, Any]) -> None:
    upstream = MockBackend(lambda conv: "fine")
    with app_client(upstream) as c:
        r = chat(c, body)
        assert r.status_code == 400, r.text
    assert upstream.calls == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"messages": [{"role": "user", "content": "hi"}], "seed": ' + b"9" * 5_000 + b"}",
        b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1' + b"0" * 5_000 + b"}",
        b'{"messages": [{"role": "user", "content": ['
        + b'{"type": "text", "text": {"a": ' * 2_000
        + b"1"
        + b"}}" * 2_000
        + b"]}]}",
        b"\xff\xfe{}",
        b"[]",
        b"null",
        b'{"messages": [{"role": "user", "content": [1, 2, "x"]}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}',
        b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    ],
)
def test_malformed_bodies_are_a_400_never_a_500(raw: bytes) -> None:
    with app_client() as c:
        r = chat(c, raw)
        assert r.status_code in (200, 400), (r.status_code, r.text[:200])
        assert r.status_code == 400 or r.json()["choices"]


def test_lone_surrogates_are_answered() -> None:
    with app_client() as c:
        r = chat(c, b'{"messages": [{"role": "user", "content": "hi \\ud800 there \\udfff"}]}')
        assert r.status_code == 200, r.text
        r = chat(c, b'{"stream": true, "messages": [{"role": "user", "content": "hi \\ud800"}]}')
        assert r.status_code == 200 and r.text.rstrip().endswith("[DONE]")


class Gate:
    """An upstream that holds every call until released, counting how many started."""

    name = "gate"
    concurrency = 1

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def generate(self, conversations: list[Conversation], params: GenerationParams, on_result: Any = None) -> Any:
        self.started += 1
        self.release.wait(10)
        return [Completion(text="done") for _ in conversations]


def test_a_full_upstream_queue_answers_429() -> None:
    gate = Gate()
    app = create_guard_app(gate, fast_config(), {KEY}, None, max_queue=2)  # type: ignore[arg-type]

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            pending = [
                asyncio.ensure_future(c.post("/v1/chat/completions", json=user_body(f"hi {i}"), headers=AUTH))
                for i in range(5)
            ]
            await asyncio.sleep(0.5)
            gate.release.set()
            return [r.status_code for r in await asyncio.gather(*pending)]

    codes = asyncio.run(run())
    assert sorted(codes) == [200, 200, 200, 429, 429], codes


def test_an_upstream_past_the_deadline_is_a_504() -> None:
    gate = Gate()
    with app_client(gate, deadline_s=0.2) as c:
        start = time.perf_counter()
        r = chat(c, user_body("hi"))
        assert r.status_code == 504 and time.perf_counter() - start < 3
    gate.release.set()


def test_a_disconnected_client_is_not_forwarded() -> None:
    gate = Gate()
    app = create_guard_app(gate, fast_config(), {KEY}, None, max_queue=8)  # type: ignore[arg-type]
    body = json.dumps(user_body("hi")).encode()

    async def call(disconnect_after: float | None) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            if disconnect_after is None:
                await asyncio.sleep(30)
            else:
                await asyncio.sleep(disconnect_after)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
            "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")],
            "client": ("t", 1), "server": ("t", 80),
        }  # fmt: skip
        await app(scope, receive, send)  # type: ignore[arg-type]
        return sent

    async def run() -> None:
        first = asyncio.ensure_future(call(None))  # holds the one upstream thread
        for _ in range(200):
            if gate.started:
                break
            await asyncio.sleep(0.02)
        start = time.perf_counter()
        second = await call(0.1)  # queued behind it, then gone
        assert time.perf_counter() - start < 3
        assert second[0]["status"] == 499
        gate.release.set()
        await first

    asyncio.run(run())
    assert gate.started == 1


def test_upstream_credentials_never_show() -> None:
    assert redact_url("http://user:s3cret@host:8000/v1") == "http://host:8000/v1"
    assert redact_url("model@https://tok@api.example.com/v1") == "model@https://api.example.com/v1"

    class Leaky:
        name = "llama@http://user:s3cret@host:8000/v1"
        concurrency = 1

        def generate(self, conversations: Any, params: Any, on_result: Any = None) -> Any:
            return [Completion(text="", finish_reason="error", error="401 from http://user:s3cret@host:8000/v1")]

    with app_client(Leaky()) as c:
        models = c.get("/v1/models", headers=AUTH)
        r = chat(c, user_body("hi"))
        assert "s3cret" not in models.text and "host:8000" in models.text
        assert r.status_code == 502 and "s3cret" not in r.text


def test_upstream_error_bodies_are_not_forwarded() -> None:
    class Chatty:
        name = "chatty"
        concurrency = 1

        def generate(self, conversations: Any, params: Any, on_result: Any = None) -> Any:
            return [Completion(text="", finish_reason="error", error="500: card 4111 1111 1111 1111 rejected")]

    with app_client(Chatty()) as c:
        r = chat(c, user_body("hi"))
        assert r.status_code == 502 and "4111" not in r.text


def test_the_users_own_text_goes_upstream_and_back_unless_redacted() -> None:
    upstream = MockBackend(lambda conv: "Echo: " + conv[-1]["content"])
    text = "\ufb01ne \u2460 caf\u00e9 \uff21\uff22\uff23"  # NFKC would change every word
    with app_client(upstream) as c:
        r = chat(c, user_body(text))
        assert upstream.calls[-1][-1]["content"] == text
        assert r.json()["choices"][0]["message"]["content"] == "Echo: " + text
        assert r.headers["x-guard-action"] == "allow"
        r = chat(c, user_body(text + " 4111 1111 1111 1111"))
        assert r.headers["x-guard-action"] == "redact"


def test_keys_file_keeps_a_hash_inside_a_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# a comment\nab#cd\nef  # trailing comment\n  \n")
    assert load_api_keys(keys, env="ALIGNKIT_TEST_NO_SUCH_ENV") == {"ab#cd", "ef"}


def test_healthz_reports_a_failed_audit_writer(tmp_path: Path) -> None:
    with app_client(audit=tmp_path / "audit.sqlite") as c:
        assert c.get("/healthz").status_code == 200
        audit = c.app.state.audit  # type: ignore[attr-defined]
        audit._error = RuntimeError("disk full")
        r = c.get("/healthz")
        assert r.status_code == 503 and r.json()["status"] != "ok"
        audit._error = None
