"""An OpenAI-compatible chat server in front of any Backend (the guard proxy builds on it)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from alignkit.backends.base import Backend
from alignkit.types import Conversation, GenerationParams


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The subset of the OpenAI chat-completions request that a local model can honour."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    logprobs: bool = False
    n: int = 1
    stream: bool = False


def _text(content: str | list[dict[str, Any]] | None) -> str:
    """OpenAI content parts (`[{"type": "text", "text": ...}]`) flattened to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": None}})


def create_app(backend: Backend, *, default_max_tokens: int = 512) -> FastAPI:
    """A FastAPI app serving `/v1/models` and `/v1/chat/completions` from `backend`."""
    app = FastAPI(title="alignkit", docs_url=None, redoc_url=None)
    # A local model is not safe to drive from two threads at once; requests queue here.
    lock = threading.Lock()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return _error(400, f"{where}: {first.get('msg', 'invalid')}")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": backend.name, "object": "model", "owned_by": "alignkit"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest) -> dict[str, Any] | JSONResponse:
        if req.stream:
            return _error(400, "stream=true is not supported by this server")
        if req.n != 1:
            return _error(400, "only n=1 is supported")
        conversation: Conversation = [
            {"role": "system" if m.role == "developer" else m.role, "content": _text(m.content)}  # type: ignore[typeddict-item]
            for m in req.messages
        ]
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        params = GenerationParams(
            max_new_tokens=req.max_completion_tokens or req.max_tokens or default_max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            stop=stop,
            logprobs=req.logprobs,
        )

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
                    "message": {"role": "assistant", "content": c.text},
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


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(backend), host=host, port=port, log_level="info")
