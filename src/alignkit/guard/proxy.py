"""The guard as an OpenAI-compatible proxy in front of any Backend.

`POST /v1/chat/completions` (plain, or `stream=true` as server-sent events), `GET /v1/models` and
`GET /healthz`. Every /v1 call needs `Authorization: Bearer <key>`. Fails closed: when a rail or the
upstream fails the client gets an error, never text that was not checked.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from alignkit.backends.base import Backend
from alignkit.errors import AlignkitError
from alignkit.guard.audit import AuditLog
from alignkit.guard.base import Side
from alignkit.guard.config import GuardConfig
from alignkit.guard.engine import Guard, Screened
from alignkit.serve import ChatRequest, _text
from alignkit.types import Completion, Conversation, GenerationParams

KEYS_ENV = "ALIGNKIT_API_KEYS"
T = TypeVar("T")


def load_api_keys(keys_file: str | Path | None = None, env: str = KEYS_ENV) -> set[str]:
    """Keys from the environment variable (comma-separated) and a keys file (one per line, # comments)."""
    keys = {k.strip() for k in os.environ.get(env, "").split(",") if k.strip()}
    if keys_file is not None:
        path = Path(keys_file)
        if not path.exists():
            raise AlignkitError(f"keys file {path} does not exist")
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.add(line)
    return keys


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(status_code=status, content=body)


def _sse(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def chunks(text: str, size: int) -> Iterator[str]:
    """`text` in pieces of about `size` characters, split after whitespace."""
    piece = ""
    for word in re.findall(r"\S+\s*|\s+", text):
        piece += word
        if len(piece) >= size:
            yield piece
            piece = ""
    if piece:
        yield piece


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _BodyTooLarge
    return bytes(body)


def create_guard_app(
    upstream: Backend,
    config: GuardConfig,
    api_keys: set[str],
    audit_path: str | Path | None,
    *,
    guard: Guard | None = None,
    max_body_bytes: int = 1_000_000,
    default_max_tokens: int = 512,
    stream_chunk_chars: int = 24,
) -> FastAPI:
    """The proxy app. `guard` defaults to one built from `config` (loading any encoder or judge it needs);
    `audit_path` None keeps no audit log. Upstream calls run on a pool of the upstream's `concurrency`
    threads (one for a local model, which is not thread-safe); rails and audit are not held by it."""
    keys = [k.encode() for k in api_keys if k]
    if not keys:
        raise AlignkitError(f"the guard proxy needs API keys: set ${KEYS_ENV} (comma-separated) or pass a keys file")
    audit = AuditLog(audit_path) if audit_path is not None else None
    guard = guard if guard is not None else Guard(config, audit=audit)
    if audit is not None:
        guard.audit = audit
    model_rails = [r for r in guard.output_rails if r.uses_model]
    fast_output_rails = [r for r in guard.output_rails if not r.uses_model]
    # At most the upstream's `concurrency` calls at once (one for a local model, which is not
    # thread-safe), always on the same threads: a local model's OpenMP pool belongs to its thread.
    upstream_pool = ThreadPoolExecutor(
        max_workers=max(1, int(getattr(upstream, "concurrency", 1))), thread_name_prefix="guard-upstream"
    )
    served_name = f"guard({upstream.name})"

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if audit is not None:
            audit.close()
        guard.close()
        upstream_pool.shutdown(wait=False)

    app = FastAPI(title="alignkit guard", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.guard = guard
    app.state.audit = audit

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode()
        return any(hmac.compare_digest(given, k) for k in keys)

    def unauthorized() -> JSONResponse:
        return _error(
            401,
            "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        )

    async def checked(fn: Callable[..., T], *args: Any, side: Side, **kwargs: Any) -> T:
        """A side whose rails are all model-free runs inline (a fraction of a millisecond, less than a
        thread hop); a side with a rail that runs a model goes to a thread, off the event loop."""
        if any(r.uses_model for r in (guard.input_rails if side == "input" else guard.output_rails)):
            return await run_in_threadpool(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", response_model=None)
    async def models(request: Request) -> dict[str, Any] | JSONResponse:
        if not authorized(request):
            return unauthorized()
        return {"object": "list", "data": [{"id": served_name, "object": "model", "owned_by": "alignkit"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> dict[str, Any] | JSONResponse | StreamingResponse:
        if not authorized(request):
            return unauthorized()
        try:
            raw = await _read_body(request, max_body_bytes)
        except _BodyTooLarge:
            return _error(413, f"request body over {max_body_bytes} bytes")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return _error(400, f"the body is not valid JSON: {e}")
        try:
            req = ChatRequest.model_validate(body)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ())) or "body"
            return _error(400, f"{where}: {first.get('msg', 'invalid')}", code="invalid_request")
        if req.n != 1:
            return _error(400, "only n=1 is supported")
        refused_roles = set(guard.config.reject_roles)
        for i, m in enumerate(req.messages):
            if ("system" if m.role == "developer" else m.role) in refused_roles:
                return _error(400, f"messages.{i}.role: {m.role} turns are not accepted here", code="invalid_role")
        conversation: Conversation = [
            {"role": "system" if m.role == "developer" else m.role, "content": _text(m.content)}  # type: ignore[typeddict-item]
            for m in req.messages
        ]
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        try:
            params = GenerationParams(
                max_new_tokens=req.max_completion_tokens or req.max_tokens or default_max_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                seed=req.seed,
                stop=stop,
                logprobs=False,
            )
        except ValueError as e:
            return _error(400, str(e))
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        try:
            screened = await checked(guard.screen_input, conversation, rid, side="input")
        except Exception as e:
            return _error(500, f"guard failure ({type(e).__name__}); the request was not forwarded", "server_error")
        if screened.blocked is not None:
            refusal = screened.refusal or guard.config.default_refusal
            if req.stream:
                return _stream_text(rid, refusal, "content_filter", "block")
            return _completion(rid, refusal, "content_filter", 0, 0, "block")

        def call() -> Completion:
            return upstream.generate([screened.conversation], params)[0]

        try:
            c = await asyncio.get_running_loop().run_in_executor(upstream_pool, call)
        except Exception as e:
            return _error(502, f"upstream failure ({type(e).__name__})", "server_error")
        if c.error is not None:
            return _error(502, f"upstream error: {c.error}", "server_error")
        if req.stream:
            return await _stream_reply(rid, c, screened)
        try:
            reply = await checked(guard.screen_output, c.text, screened, side="output")
        except Exception as e:
            return _error(500, f"guard failure ({type(e).__name__}); the reply was withheld", "server_error")
        action = "block" if reply.blocked is not None else ("redact" if reply.changed else "allow")
        finish = "content_filter" if reply.blocked is not None else c.finish_reason
        return _completion(rid, reply.text, finish, c.prompt_tokens, c.completion_tokens, action)

    def _completion(
        rid: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int, action: str
    ) -> JSONResponse:
        return JSONResponse(
            {
                "id": rid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": served_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
            headers={"x-guard-action": action},
        )

    def _chunk(rid: str, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": served_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    def _stream_text(rid: str, text: str, finish: str, action: str) -> StreamingResponse:
        def events() -> Iterator[str]:
            yield _sse(_chunk(rid, {"role": "assistant", "content": ""}, None))
            yield _sse(_chunk(rid, {"content": text}, None))
            yield _sse(_chunk(rid, {}, finish))
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers={"x-guard-action": action})

    async def _stream_reply(rid: str, c: Completion, screened: Screened) -> StreamingResponse | JSONResponse:
        # The upstream answered in one piece, so model-backed rails judge the whole reply before any of it
        # is sent; the model-free ones then run over the sliding window as it streams.
        if model_rails:
            try:
                pre = await run_in_threadpool(guard.screen_output, c.text, screened, rails=model_rails)
            except Exception as e:
                return _error(500, f"guard failure ({type(e).__name__}); the reply was withheld", "server_error")
            if pre.blocked is not None:
                return _stream_text(rid, pre.text, "content_filter", "block")
        stream = guard.stream(screened, final_rails=fast_output_rails)

        def events() -> Iterator[str]:
            yield _sse(_chunk(rid, {"role": "assistant", "content": ""}, None))
            try:
                for piece in chunks(c.text, stream_chunk_chars):
                    out = stream.feed(piece)
                    if out is None:
                        break
                    if out:
                        yield _sse(_chunk(rid, {"content": out}, None))
                else:
                    out = stream.finish()
                    if out:
                        yield _sse(_chunk(rid, {"content": out}, None))
            except Exception as e:
                yield _sse({"error": {"message": f"guard failure ({type(e).__name__})", "type": "server_error"}})
                return
            if stream.blocked is not None:
                refusal = stream.refusal or guard.config.default_refusal
                yield _sse(_chunk(rid, {"content": ("\n\n" if stream.released else "") + refusal}, None))
                yield _sse(_chunk(rid, {}, "content_filter"))
            else:
                yield _sse(_chunk(rid, {}, c.finish_reason))
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def serve_guard(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    # A longer keep-alive than uvicorn's 5 s: under load a client may reuse a pooled connection just as a
    # short timer closes it, and the request fails with a reset.
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=30)
