"""The guard as an OpenAI-compatible proxy in front of any Backend.

`POST /v1/chat/completions` (plain, or `stream=true` as server-sent events), `GET /v1/models` and
`GET /healthz` (503 once the audit writer has failed). Every /v1 call needs `Authorization: Bearer <key>`.
Fails closed: when a rail or the upstream fails the client gets an error, never text that was not checked;
an upstream's error body is logged (credentials in URLs redacted), not forwarded.

Every rail runs off the event loop. Upstream calls are bounded: at most the upstream's `concurrency`
run at once and `max_queue` more wait; beyond that a request gets 429. A request past `deadline_s` gets
504, and one whose client has gone away is dropped from the queue (499 in the access log).

A stream ends with one event after the last chunk and before `data: [DONE]`, carrying the guard's action
for the whole reply (what `x-guard-action` says on a reply that is not streamed):

    data: {"id": "chatcmpl-...", "object": "chat.completion.chunk", "created": 1733390000,
           "model": "guard(...)", "choices": [],
           "guard": {"action": "allow" | "redact" | "block", "rail": "secrets" | null, "reason": "..." | null}}

`choices` is empty, as in the usage chunk OpenAI sends with `stream_options.include_usage`, so clients
that read chunks skip it; `rail` and `reason` name the blocking decision (they never quote the text).
"""

from __future__ import annotations

import asyncio
import json
import logging
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

from alignkit.backends.base import Backend
from alignkit.errors import AlignkitError
from alignkit.guard.audit import AuditLog
from alignkit.guard.config import GuardConfig
from alignkit.guard.engine import Guard, Screened
from alignkit.serve import (
    KEYS_ENV,
    BodyTooLarge,
    _error,
    authorized,
    conversation_of,
    load_api_keys,
    parse_chat,
    read_body,
    unauthorized,
    well_formed,
)
from alignkit.types import Completion, GenerationParams

__all__ = ["KEYS_ENV", "chunks", "create_guard_app", "load_api_keys", "redact_url", "serve_guard"]

T = TypeVar("T")
log = logging.getLogger("alignkit.guard")
_USERINFO = re.compile(r"//[^/@\s]*@")


def redact_url(text: str) -> str:
    """`text` with the `user:password@` of every URL in it removed: host, port and path stay."""
    return _USERINFO.sub("//", text)


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


class _ClientGone(Exception):
    pass


def create_guard_app(
    upstream: Backend,
    config: GuardConfig,
    api_keys: set[str],
    audit_path: str | Path | None,
    *,
    guard: Guard | None = None,
    max_body_bytes: int = 1_000_000,
    default_max_tokens: int = 512,
    max_new_tokens: int = 32_768,
    max_queue: int = 64,
    deadline_s: float = 120.0,
    stream_chunk_chars: int = 24,
) -> FastAPI:
    """The proxy app. `guard` defaults to one built from `config` (loading any encoder or judge it needs);
    `audit_path` None keeps no audit log. Upstream calls run on a pool of the upstream's `concurrency`
    threads (one for a local model, which is not thread-safe), with at most `max_queue` more waiting;
    `max_new_tokens` bounds what a client may ask for; `deadline_s` bounds a request's wait upstream."""
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
    workers = max(1, int(getattr(upstream, "concurrency", 1)))
    upstream_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="guard-upstream")
    capacity = workers + max_queue
    inflight = 0
    served_name = f"guard({redact_url(upstream.name)})"

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

    async def checked(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Rails run in a thread: even the model-free ones take milliseconds on a long text, which the
        event loop must not wait for."""
        return await run_in_threadpool(fn, *args, **kwargs)

    @app.get("/healthz", response_model=None)
    async def healthz() -> dict[str, str] | JSONResponse:
        if audit is not None and audit.error is not None:
            return JSONResponse({"status": "audit writer failed"}, status_code=503)
        return {"status": "ok"}

    @app.get("/v1/models", response_model=None)
    async def models(request: Request) -> dict[str, Any] | JSONResponse:
        if not authorized(request, keys):
            return unauthorized()
        return {"object": "list", "data": [{"id": served_name, "object": "model", "owned_by": "alignkit"}]}

    async def call_upstream(request: Request, screened: Screened, params: GenerationParams, deadline: float) -> Any:
        """The upstream's completion; _ClientGone when the client leaves first, TimeoutError at the deadline."""
        nonlocal inflight

        def call() -> Completion:
            return upstream.generate([screened.conversation], params)[0]

        inflight += 1
        submitted = upstream_pool.submit(call)
        future: asyncio.Future[Any] = asyncio.wrap_future(submitted)

        def release(_: object) -> None:
            nonlocal inflight
            inflight -= 1

        future.add_done_callback(release)

        async def gone() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watcher: asyncio.Future[Any] = asyncio.ensure_future(gone())
        try:
            done, _ = await asyncio.wait({future, watcher}, timeout=max(0.0, deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if future in done:
                return future.result()
            submitted.cancel()  # drops it from the queue now, when it has not started
            future.cancel()
            if watcher in done:
                raise _ClientGone
            raise TimeoutError
        finally:
            watcher.cancel()

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> dict[str, Any] | JSONResponse | StreamingResponse:
        deadline = time.monotonic() + deadline_s
        if not authorized(request, keys):
            return unauthorized()
        try:
            raw = await read_body(request, max_body_bytes)
        except BodyTooLarge:
            return _error(413, f"request body over {max_body_bytes} bytes")
        req = parse_chat(raw)
        if isinstance(req, JSONResponse):
            return req
        if req.n != 1:
            return _error(400, "only n=1 is supported")
        refused_roles = set(guard.config.reject_roles)
        for i, m in enumerate(req.messages):
            if ("system" if m.role == "developer" else m.role) in refused_roles:
                return _error(400, f"messages.{i}.role: {m.role} turns are not accepted here", code="invalid_role")
        max_tokens = req.max_completion_tokens or req.max_tokens or default_max_tokens
        if max_tokens > max_new_tokens:
            return _error(400, f"max_tokens: at most {max_new_tokens}", code="invalid_request")
        try:
            conversation = conversation_of(req)
            stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
            params = GenerationParams(max_new_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p,
                                      seed=req.seed, stop=stop, logprobs=False)  # fmt: skip
        except (ValueError, RecursionError) as e:
            return _error(400, f"the request could not be read ({type(e).__name__})")
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        try:
            screened = await checked(guard.screen_input, conversation, rid)
        except Exception as e:
            return _error(500, f"guard failure ({type(e).__name__}); the request was not forwarded", "server_error")
        if screened.blocked is not None:
            refusal = screened.refusal or guard.config.default_refusal
            trailer = _trailer("block", screened.blocked.rail, screened.blocked.reason)
            if req.stream:
                return _stream_text(rid, refusal, "content_filter", "block", trailer)
            return _completion(rid, refusal, "content_filter", 0, 0, "block")
        if inflight >= capacity:
            return _error(429, "the upstream queue is full; retry shortly", "rate_limit_error", "queue_full")
        try:
            c = await call_upstream(request, screened, params, deadline)
        except _ClientGone:
            return JSONResponse({"error": {"message": "client closed the request"}}, status_code=499)
        except TimeoutError:
            return _error(504, f"upstream gave no reply within {deadline_s:g} s", "server_error", "timeout")
        except Exception as e:
            log.warning("upstream failure: %s", redact_url(f"{type(e).__name__}: {e}"))
            return _error(502, f"upstream failure ({type(e).__name__})", "server_error")
        if c.error is not None:
            # The upstream's error text may hold anything (a URL with credentials, the prompt echoed back):
            # it is logged, redacted, and the client gets a plain status.
            log.warning("upstream error: %s", redact_url(str(c.error)))
            return _error(502, "upstream error; the reply was withheld", "server_error")
        if req.stream:
            return await _stream_reply(rid, c, screened)
        try:
            reply = await checked(guard.screen_output, c.text, screened)
        except Exception as e:
            return _error(500, f"guard failure ({type(e).__name__}); the reply was withheld", "server_error")
        action = "block" if reply.blocked is not None else ("redact" if reply.changed or screened.redacted else "allow")
        finish = "content_filter" if reply.blocked is not None else c.finish_reason
        return _completion(rid, reply.text, finish, c.prompt_tokens, c.completion_tokens, action)

    def _trailer(action: str, rail: str | None = None, reason: str | None = None) -> dict[str, Any]:
        return {"action": action, "rail": rail, "reason": reason}

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
                        "message": {"role": "assistant", "content": well_formed(text)},
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
        if "content" in delta:
            delta = {**delta, "content": well_formed(delta["content"])}
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": served_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    def _final(rid: str, guard_action: dict[str, Any]) -> dict[str, Any]:
        return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": served_name,
                "choices": [], "guard": guard_action}  # fmt: skip

    def _stream_text(rid: str, text: str, finish: str, action: str, trailer: dict[str, Any]) -> StreamingResponse:
        def events() -> Iterator[str]:
            yield _sse(_chunk(rid, {"role": "assistant", "content": ""}, None))
            yield _sse(_chunk(rid, {"content": text}, None))
            yield _sse(_chunk(rid, {}, finish))
            yield _sse(_final(rid, trailer))
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers={"x-guard-action": action})

    async def _stream_reply(rid: str, c: Completion, screened: Screened) -> StreamingResponse | JSONResponse:
        # The upstream answered in one piece, so model-backed rails judge the whole reply before any of it
        # is sent; the model-free ones then screen it window by window as it streams.
        if model_rails:
            try:
                pre = await checked(guard.screen_output, c.text, screened, rails=model_rails)
            except Exception as e:
                return _error(500, f"guard failure ({type(e).__name__}); the reply was withheld", "server_error")
            if pre.blocked is not None:
                trailer = _trailer("block", pre.blocked.rail, pre.blocked.reason)
                return _stream_text(rid, pre.text, "content_filter", "block", trailer)
        stream = guard.stream(screened, final_rails=fast_output_rails)

        # A sync generator: Starlette iterates it in a thread, so the rails stay off the event loop.
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
                yield _sse(_final(rid, _trailer("block", stream.blocked.rail, stream.blocked.reason)))
            else:
                changed = screened.redacted or (stream.reply is not None and stream.reply.changed)
                yield _sse(_chunk(rid, {}, c.finish_reason))
                yield _sse(_final(rid, _trailer("redact" if changed else "allow")))
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def share_cores(workers: int) -> None:
    """Give each of `workers` server processes its share of the cores for the model rails (torch's
    OpenMP pool), unless OMP_NUM_THREADS is set already. Each worker's pool otherwise takes every core:
    with the classifier rail and 2 workers on 2 cores, the pools spun against each other and the guard
    served 17 requests/s where one worker served about 70."""
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


def serve_guard(app: FastAPI | str, host: str = "127.0.0.1", port: int = 8000, *, workers: int = 1) -> None:
    """Serve `app`; with `workers` > 1, `app` is an import string of a factory (uvicorn starts each worker
    process from it)."""
    import uvicorn

    # A longer keep-alive than uvicorn's 5 s: under load a client may reuse a pooled connection just as a
    # short timer closes it, and the request fails with a reset.
    if workers > 1:
        share_cores(workers)
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=30, workers=workers,
                    factory=True)  # fmt: skip
    else:
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=30)
