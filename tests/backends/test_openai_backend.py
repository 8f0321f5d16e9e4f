from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from alignkit.backends.hf import HFBackend
from alignkit.backends.openai import OpenAIBackend
from alignkit.errors import BackendError
from alignkit.serve import create_app
from alignkit.types import GenerationParams, user

from ..servers import free_port, running

PROMPTS = ["Hi", "List three fruits.", "Write one line about the sea.", "What is 2+2?", "Say yes."]


@pytest.fixture(scope="module")
def tiny_server(tiny_backend: HFBackend) -> Iterator[str]:
    with running(create_app(tiny_backend)) as url:
        yield url


def test_endpoint_serving_the_tiny_model_gives_what_the_model_gives(tiny_backend: HFBackend, tiny_server: str) -> None:
    params = GenerationParams(max_new_tokens=8, logprobs=True)
    convs = [[user(p)] for p in PROMPTS]
    local = tiny_backend.generate(convs, params)
    remote = OpenAIBackend("tiny", tiny_server, concurrency=3).generate(convs, params)
    assert [c.text for c in remote] == [c.text for c in local]
    assert [c.finish_reason for c in remote] == [c.finish_reason for c in local]
    assert [c.completion_tokens for c in remote] == [c.completion_tokens for c in local]
    assert [c.prompt_tokens for c in remote] == [c.prompt_tokens for c in local]
    for r, loc in zip(remote, local, strict=True):
        assert r.token_logprobs == pytest.approx(loc.token_logprobs, abs=1e-5)


def test_official_openai_client_talks_to_it(tiny_backend: HFBackend, tiny_server: str) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    assert [m.id for m in client.models.list().data] == [tiny_backend.name]
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=6,
        temperature=0,
    )
    expected = tiny_backend.generate(
        [[{"role": "system", "content": "Be brief."}, user("Hi")]], GenerationParams(max_new_tokens=6)
    )[0]
    assert r.choices[0].message.content == expected.text
    assert r.usage is not None and r.usage.completion_tokens == expected.completion_tokens
    with pytest.raises(openai.BadRequestError, match="stream"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="tiny", messages=[])


def flaky_app(failures: int, status: int) -> tuple[FastAPI, list[float]]:
    """Answers `status` to the first `failures` requests, then a fixed reply; records arrival times."""
    app = FastAPI()
    calls: list[float] = []

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> dict | JSONResponse:
        calls.append(time.monotonic())
        body = await request.json()
        if len(calls) <= failures:
            return JSONResponse(
                status_code=status, content={"error": {"message": "busy"}}, headers={"retry-after": "0"}
            )
        return {
            "choices": [
                {
                    "message": {"role": "assistant", "content": "ok:" + body["messages"][-1]["content"]},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }

    return app, calls


@pytest.mark.parametrize("status", [429, 503])
def test_retries_on_429_and_5xx_then_succeeds(status: int) -> None:
    app, calls = flaky_app(failures=2, status=status)
    with running(app) as url:
        out = OpenAIBackend("m", url, max_retries=3, backoff=0.01).generate([[user("a")]], GenerationParams())
    assert out[0].text == "ok:a" and out[0].ok
    assert len(calls) == 3


def test_gives_up_after_the_retries_with_an_error_per_reply() -> None:
    app, calls = flaky_app(failures=100, status=500)
    with running(app) as url:
        out = OpenAIBackend("m", url, max_retries=2, backoff=0.01).generate([[user("a")]], GenerationParams())
    assert not out[0].ok and "HTTP 500" in (out[0].error or "")
    assert len(calls) == 3


def test_client_errors_are_not_retried() -> None:
    app, calls = flaky_app(failures=100, status=400)
    with running(app) as url:
        out = OpenAIBackend("m", url, max_retries=3, backoff=0.01).generate([[user("a")]], GenerationParams())
    assert out[0].error is not None and out[0].error.startswith("HTTP 400")
    assert len(calls) == 1


def test_concurrency_is_bounded() -> None:
    import asyncio

    app = FastAPI()
    state = {"now": 0, "peak": 0}

    @app.post("/v1/chat/completions")
    async def chat() -> dict:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.05)
        state["now"] -= 1
        return {"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}

    with running(app) as url:
        out = OpenAIBackend("m", url, concurrency=3).generate([[user(str(i))] for i in range(12)], GenerationParams())
    assert len(out) == 12 and all(c.text == "x" for c in out)
    assert state["peak"] == 3


def test_api_key_comes_from_the_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    app = FastAPI()
    seen: list[str | None] = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        seen.append(request.headers.get("authorization"))
        return {"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}

    monkeypatch.setenv("MY_KEY", "sk-test-123")
    with running(app) as url:
        OpenAIBackend("m", url, api_key_env="MY_KEY").generate([[user("a")]], GenerationParams())
    assert seen == ["Bearer sk-test-123"]


def test_unreachable_endpoint_raises_one_line_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendError) as e:
        OpenAIBackend("m", url, max_retries=2, backoff=0.01, timeout=2).generate([[user("a")]], GenerationParams())
    assert "unreachable after 2 retries" in str(e.value) and "\n" not in str(e.value)


def test_timeout_counts_as_a_transport_failure() -> None:
    import asyncio

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def slow() -> dict:
        await asyncio.sleep(2)
        return {}

    with running(app) as url, pytest.raises(BackendError, match="ReadTimeout"):
        OpenAIBackend("m", url, max_retries=1, backoff=0.01, timeout=0.2).generate([[user("a")]], GenerationParams())


def test_callable_inside_a_running_event_loop(tiny_server: str) -> None:
    import asyncio

    async def inside() -> str:
        return OpenAIBackend("m", tiny_server).generate([[user("Hi")]], GenerationParams(max_new_tokens=3))[0].text

    assert isinstance(asyncio.run(inside()), str)
    assert httpx.get(tiny_server + "/models").status_code == 200
