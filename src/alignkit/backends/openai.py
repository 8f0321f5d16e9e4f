"""Any OpenAI-compatible `/v1/chat/completions` endpoint: vLLM, llama.cpp server, Ollama, OpenAI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
from collections.abc import Sequence
from typing import Any

import httpx

from alignkit.backends.base import OnResult
from alignkit.errors import BackendError
from alignkit.types import Completion, Conversation, FinishReason, GenerationParams

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend:
    """Async client with bounded concurrency, timeouts, and retries with exponential backoff (and
    `Retry-After`) on 429 and 5xx. A request the server rejects (other 4xx) becomes a Completion with
    `error`; an endpoint that stays unreachable after the retries raises BackendError, since every
    other request would fail the same way."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = os.environ.get(api_key_env)
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.name = name or f"{model}@{self.base_url}"

    def _body(self, conversation: Conversation, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(conversation),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = params.stop
        if params.logprobs:
            body["logprobs"] = True
        return body

    async def _one(self, client: httpx.AsyncClient, conversation: Conversation, params: GenerationParams) -> Completion:
        url = f"{self.base_url}/chat/completions"
        last = ""
        last_response: httpx.Response | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, last_response))
            last_response = None
            try:
                r = await client.post(url, json=self._body(conversation, params))
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                continue
            if r.status_code in RETRY_STATUS:
                last_response, last = r, f"HTTP {r.status_code}"
                continue
            if r.status_code >= 400:
                return Completion(text="", finish_reason="error", error=f"HTTP {r.status_code}: {r.text[:200]}")
            return _parse(r.json())
        if last.startswith("HTTP"):
            return Completion(text="", finish_reason="error", error=f"{last} after {self.max_retries} retries")
        raise BackendError(f"{url} unreachable after {self.max_retries} retries ({last})")

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            header: str = response.headers.get("retry-after", "")
            with contextlib.suppress(ValueError):
                return min(float(header), 60.0)
        return float(self.backoff * 2.0 ** (attempt - 1) * (0.5 + random.random()))

    async def agenerate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams,
        on_result: OnResult | None = None,
    ) -> list[Completion]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limit = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=self.timeout) as client:

            async def run(i: int, conv: Conversation) -> Completion:
                async with limit:
                    c = await self._one(client, conv, params)
                if on_result is not None:
                    on_result(i, c)
                return c

            tasks = [asyncio.create_task(run(i, c)) for i, c in enumerate(conversations)]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                for t in tasks:
                    t.cancel()

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams,
        on_result: OnResult | None = None,
    ) -> list[Completion]:
        coro = self.agenerate(conversations, params, on_result)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from inside an event loop (a server, a notebook): run on a thread of our own.
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = asyncio.run(coro)
            except BaseException as e:
                box["error"] = e

        t = threading.Thread(target=target)
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        result: list[Completion] = box["result"]
        return result


def _parse(payload: dict[str, Any]) -> Completion:
    try:
        choice = payload["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError):
        return Completion(text="", finish_reason="error", error=f"malformed response: {str(payload)[:200]}")
    reason: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
    usage = payload.get("usage") or {}
    logprobs = None
    content = (choice.get("logprobs") or {}).get("content")
    if content:
        logprobs = [float(t["logprob"]) for t in content]
    return Completion(
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=reason,
        token_logprobs=logprobs,
    )
