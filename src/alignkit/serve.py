"""An OpenAI-compatible chat server in front of any Backend (the guard proxy builds on it).

Both servers read the body themselves: its size is checked before anything parses it, and every malformed
body (bad JSON, deep nesting, a number too long to convert, out-of-bound fields) is a 400, never a 500.
API keys are optional here (`api_keys`, or $ALIGNKIT_API_KEYS when set) and required by the guard proxy.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alignkit.backends.base import Backend
from alignkit.errors import AlignkitError
from alignkit.types import Conversation, GenerationParams

KEYS_ENV = "ALIGNKIT_API_KEYS"
MAX_STOP = 4
"""Stop sequences per request (OpenAI's own limit)."""
MAX_STOP_CHARS = 256


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    """The subset of the OpenAI chat-completions request that a local model can honour."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1 << 20)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1 << 20)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-(1 << 63), le=(1 << 63) - 1)
    stop: str | list[str] | None = None
    logprobs: bool = False
    n: int = Field(default=1, ge=1, le=128)
    stream: bool = False

    @field_validator("stop")
    @classmethod
    def _bounded_stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"a stop sequence is at most {MAX_STOP_CHARS} characters")
        return v


_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """`text` with lone surrogates (which JSON escapes allow and UTF-8 cannot encode) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _text(content: str | list[ContentPart] | list[dict[str, Any]] | None) -> str:
    """OpenAI content parts (`[{"type": "text", "text": ...}]`) flattened to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return well_formed(content)
    parts = [p if isinstance(p, ContentPart) else ContentPart.model_validate(p) for p in content]
    return well_formed("".join(p.text or "" for p in parts if p.type == "text"))


def conversation_of(req: ChatRequest) -> Conversation:
    """The request's turns, developer turns as system turns."""
    return [
        {"role": "system" if m.role == "developer" else m.role, "content": _text(m.content)}  # type: ignore[typeddict-item]
        for m in req.messages
    ]


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(status_code=status, content=body)


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (BodyTooLarge) as soon as it is known to exceed `limit` bytes: from the declared
    length before reading anything, else while reading."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def parse_chat(raw: bytes) -> ChatRequest | JSONResponse:
    """The request, or the 400 that says what is wrong with it."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, and integers too long to convert
        return _error(400, f"the body is not valid JSON: {str(e)[:200]}")
    except RecursionError:
        return _error(400, "the body is nested too deeply")
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "body"
        return _error(400, f"{where}: {first.get('msg', 'invalid')}", code="invalid_request")
    except (RecursionError, ValueError) as e:
        return _error(400, f"the body could not be read ({type(e).__name__})")


def load_api_keys(keys_file: str | Path | None = None, env: str = KEYS_ENV) -> set[str]:
    """Keys from the environment variable (comma-separated) and a keys file (one per line; a line that
    starts with # is a comment, as is the rest of a line after whitespace and #; a # inside a key is kept)."""
    keys = {k.strip() for k in os.environ.get(env, "").split(",") if k.strip()}
    if keys_file is not None:
        path = Path(keys_file)
        if not path.exists():
            raise AlignkitError(f"keys file {path} does not exist")
        for line in path.read_text(encoding="utf-8").splitlines():
            line = re.split(r"\s#", line, maxsplit=1)[0].strip()
            if line and not line.startswith("#"):
                keys.add(line)
    return keys


def authorized(request: Request, keys: list[bytes]) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    given = token.strip().encode()
    return any(hmac.compare_digest(given, k) for k in keys)


def unauthorized() -> JSONResponse:
    return _error(
        401, "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'.", code="invalid_api_key"
    )


def create_app(
    backend: Backend,
    *,
    default_max_tokens: int = 512,
    api_keys: set[str] | None = None,
    max_body_bytes: int = 1_000_000,
) -> FastAPI:
    """A FastAPI app serving `/v1/models` and `/v1/chat/completions` from `backend`; with `api_keys`, every
    call needs `Authorization: Bearer <key>`."""
    app = FastAPI(title="alignkit", docs_url=None, redoc_url=None)
    keys = [k.encode() for k in (api_keys or set()) if k]
    # A local model is not safe to drive from two threads at once; requests queue here.
    lock = threading.Lock()

    @app.get("/v1/models", response_model=None)
    async def models(request: Request) -> dict[str, Any] | JSONResponse:
        if keys and not authorized(request, keys):
            return unauthorized()
        return {"object": "list", "data": [{"id": backend.name, "object": "model", "owned_by": "alignkit"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> dict[str, Any] | JSONResponse:
        if keys and not authorized(request, keys):
            return unauthorized()
        try:
            raw = await read_body(request, max_body_bytes)
        except BodyTooLarge:
            return _error(413, f"request body over {max_body_bytes} bytes")
        req = parse_chat(raw)
        if isinstance(req, JSONResponse):
            return req
        if req.stream:
            return _error(400, "stream=true is not supported by this server")
        if req.n != 1:
            return _error(400, "only n=1 is supported")
        conversation = conversation_of(req)
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        try:
            params = GenerationParams(
                max_new_tokens=req.max_completion_tokens or req.max_tokens or default_max_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                seed=req.seed,
                stop=stop,
                logprobs=req.logprobs,
            )
        except ValueError as e:
            return _error(400, str(e))

        def run() -> Any:
            with lock:
                return backend.generate([conversation], params)[0]

        c = await run_in_threadpool(run)
        if c.error is not None:
            return _error(502, f"backend error: {c.error}", "server_error")
        logprobs = None
        if req.logprobs and c.token_logprobs is not None:
            logprobs = {
                "content": [{"token": "", "logprob": lp, "bytes": None, "top_logprobs": []} for lp in c.token_logprobs]
            }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": backend.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": well_formed(c.text)},
                    "finish_reason": c.finish_reason,
                    "logprobs": logprobs,
                }
            ],
            "usage": {
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "total_tokens": c.prompt_tokens + c.completion_tokens,
            },
        }

    return app


def serve(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_keys: set[str] | None = None,
    max_body_bytes: int = 1_000_000,
) -> None:
    """Serve `backend`; `api_keys` None reads $ALIGNKIT_API_KEYS (no key there: no authentication)."""
    import uvicorn

    keys = api_keys if api_keys is not None else load_api_keys()
    uvicorn.run(create_app(backend, api_keys=keys, max_body_bytes=max_body_bytes), host=host, port=port,
                log_level="info")  # fmt: skip
