"""VLLMBackend against a scripted stand-in for the `vllm` module: vLLM itself needs a GPU, so these
check what alignkit sends to its offline API (LLM.chat, LLM.generate with SamplingParams, prompt
log-probabilities, collective_rpc) and how it reads the answers."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from alignkit.backends import make_backend
from alignkit.errors import BackendError
from alignkit.types import GenerationParams, user


@dataclass
class Logprob:
    logprob: float


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None


@dataclass
class FakeLLM:
    model: str
    kwargs: dict[str, Any]
    tokenizer: Any = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    weights: list[tuple[str, torch.Tensor]] = field(default_factory=list)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def chat(self, messages: list[Any], sp: SamplingParams, use_tqdm: bool = True) -> list[Any]:
        self.calls.append(("chat", sp))
        outs = []
        for k, _ in enumerate(messages):
            ids = [10 + k, 11 + k, 12]
            steps = [{t: Logprob(-0.5 * (j + 1))} for j, t in enumerate(ids)] if sp.logprobs is not None else None
            reason = "length" if k % 2 else "stop"
            o = types.SimpleNamespace(text=f"reply {k}", token_ids=ids, logprobs=steps, finish_reason=reason)
            outs.append(types.SimpleNamespace(outputs=[o], prompt_token_ids=list(range(5 + k))))
        return outs

    def generate(self, prompts: list[dict[str, list[int]]], sp: SamplingParams, use_tqdm: bool = True) -> list[Any]:
        self.calls.append(("generate", sp))
        # the log-prob of prompt token t is -t/100; position 0 has none, as in vLLM
        return [
            types.SimpleNamespace(
                prompt_logprobs=[None] + [{p["prompt_token_ids"][t]: Logprob(-t / 100)} for t in range(1, n)]
            )
            for p in prompts
            for n in [len(p["prompt_token_ids"])]
        ]

    def collective_rpc(self, fn: Any) -> None:
        model = types.SimpleNamespace(load_weights=lambda items: self.weights.extend(items))
        fn(types.SimpleNamespace(model_runner=types.SimpleNamespace(model=model)))
        self.calls.append(("collective_rpc", None))

    def reset_prefix_cache(self) -> None:
        self.calls.append(("reset_prefix_cache", None))


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch, tiny_model_path: Path) -> types.ModuleType:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    module = types.ModuleType("vllm")
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    module.LLM = lambda model, **kw: FakeLLM(model, kw, tok)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_without_vllm_the_module_imports_and_use_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    import alignkit.backends.vllm as mod

    assert mod.INSTALL_HINT == "pip install 'alignkit[vllm]'"
    with pytest.raises(BackendError, match=r"pip install 'alignkit\[vllm\]'"):
        make_backend("vllm", "smollm2-135m-instruct")


def test_generate_sends_sampling_params_and_reads_replies(fake_vllm: Any, tiny_model_path: Path) -> None:
    b = make_backend("vllm", str(tiny_model_path), gpu_memory_utilization=0.5, name="m")
    llm: FakeLLM = b.llm  # type: ignore[attr-defined]
    assert llm.kwargs["gpu_memory_utilization"] == 0.5 and b.name == "m"
    seen: dict[int, str] = {}
    params = GenerationParams(max_new_tokens=7, temperature=0.7, top_p=0.9, seed=3, stop=["\n"], logprobs=True)
    out = b.generate([[user("a")], [user("b")]], params, on_result=lambda i, c: seen.__setitem__(i, c.text))
    sp = llm.calls[0][1]
    assert (sp.max_tokens, sp.temperature, sp.top_p, sp.seed, sp.stop, sp.logprobs) == (7, 0.7, 0.9, 3, ["\n"], 0)
    assert [c.text for c in out] == ["reply 0", "reply 1"] and seen == {0: "reply 0", 1: "reply 1"}
    assert [c.finish_reason for c in out] == ["stop", "length"]
    assert [c.prompt_tokens for c in out] == [5, 6] and out[0].completion_tokens == 3
    assert out[0].token_logprobs == [-0.5, -1.0, -1.5]
    greedy = b.generate([[user("a")]], GenerationParams(max_new_tokens=2))
    assert llm.calls[-1][1].temperature == 0.0 and llm.calls[-1][1].logprobs is None
    assert greedy[0].token_logprobs is None


def test_score_reads_prompt_logprobs_over_the_reply_tokens(fake_vllm: Any, tiny_model_path: Path) -> None:
    b = make_backend("vllm", str(tiny_model_path))
    tok = b.tokenizer  # type: ignore[attr-defined]
    conv = [user("Hi")]
    head = tok(tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True), add_special_tokens=False)
    reply = tok("Hello there", add_special_tokens=False)["input_ids"]
    start, n = len(head["input_ids"]), len(reply)
    (s,) = b.score([conv], ["Hello there"])  # type: ignore[attr-defined]
    assert s.token_logprobs == pytest.approx([-t / 100 for t in range(start, start + n)])
    assert b.llm.calls[-1][1].prompt_logprobs == 0  # type: ignore[attr-defined]
    (e,) = b.score([conv], ["Hello there"], include_eos=True)  # type: ignore[attr-defined]
    assert e.num_tokens == n + 1


def test_load_weights_reaches_the_worker_on_the_cpu_and_drops_the_prefix_cache(
    fake_vllm: Any, tiny_model_path: Path
) -> None:
    b = make_backend("vllm", str(tiny_model_path))
    w = torch.ones(2, 2, requires_grad=True)
    b.load_weights([("model.embed_tokens.weight", w)])  # type: ignore[attr-defined]
    llm: FakeLLM = b.llm  # type: ignore[attr-defined]
    ((name, t),) = llm.weights
    assert name == "model.embed_tokens.weight" and t.device.type == "cpu" and not t.requires_grad
    assert [c[0] for c in llm.calls] == ["collective_rpc", "reset_prefix_cache"]
