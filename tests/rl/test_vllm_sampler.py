"""The vLLM rollout sampler against a stand-in engine that holds a real model: vLLM needs a GPU, so the
stand-in loads the weights it is sent into a transformers model and decodes greedily with it. What is
checked is what alignkit relies on: the weights reach the engine under a plain causal LM's names, LoRA
merged, the trained model is left as it was, the prompt ids go through as they are, the sampling is
pinned to the plain tempered softmax, and end-of-turn tokens are kept."""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from alignkit.rl import RLConfig, rl_train
from alignkit.types import Prompt


class SamplingParams:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class Engine:
    """vllm.LLM's offline API over a transformers model: `generate` decodes greedily and, as vLLM does, stops
    at a stop token without returning it (reporting it as `stop_reason`)."""

    def __init__(self, model: str, **kw: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(model).eval()
        self.tok = AutoTokenizer.from_pretrained(model)
        self.kwargs = kw
        self.params: list[SamplingParams] = []
        self.loads = 0

    def get_tokenizer(self) -> Any:
        return self.tok

    def collective_rpc(self, fn: Any) -> None:
        def load(items: list[tuple[str, torch.Tensor]]) -> None:
            self.model.load_state_dict(dict(items), strict=True)  # every name a plain causal LM has, no other
            self.loads += 1

        fn(types.SimpleNamespace(model_runner=types.SimpleNamespace(model=types.SimpleNamespace(load_weights=load))))

    def reset_prefix_cache(self) -> None:
        pass

    @torch.no_grad()
    def generate(self, prompts: list[dict[str, list[int]]], sp: SamplingParams, use_tqdm: bool = True) -> list[Any]:
        self.params.append(sp)
        outs = []
        for p in prompts:
            ids, new, reason, stop = list(p["prompt_token_ids"]), [], "length", None
            for _ in range(sp.max_tokens):
                token = int(self.model(torch.tensor([ids + new])).logits[0, -1].argmax())
                if token in sp.stop_token_ids:
                    reason, stop = "stop", token
                    break
                new.append(token)
            done = types.SimpleNamespace(token_ids=new, finish_reason=reason, stop_reason=stop)
            outs.append(types.SimpleNamespace(outputs=[done]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> list[Engine]:
    made: list[Engine] = []

    def llm(model: str, **kw: Any) -> Engine:
        made.append(Engine(model, **kw))
        return made[-1]

    module = types.ModuleType("vllm")
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    module.LLM = llm  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return made


def lora_policy(path: Path) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]),
    )
    with torch.no_grad():  # adapters start at zero; make them change the model
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def test_the_engine_samples_the_merged_policy_and_the_policy_is_left_as_it_was(
    fake_vllm: list[Engine], tiny_model_path: Path
) -> None:
    from alignkit.rl.rollout import VLLMSampler

    policy = lora_policy(tiny_model_path)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    merged = copy.deepcopy(policy).merge_and_unload()  # the reference: peft's own merge
    eos = int(merged.generation_config.eos_token_id or 0)
    sampler = VLLMSampler(str(tiny_model_path), [eos], gpu_memory_utilization=0.25)
    (engine,) = fake_vllm
    assert engine.kwargs["gpu_memory_utilization"] == 0.25
    prompts = [[1, 20, 30, 40], [1, 50]]
    replies = sampler.sample(policy, prompts, max_new_tokens=6, temperature=0.7)

    assert engine.loads == 1 and sampler.syncs == 1
    for name, t in merged.state_dict().items():
        torch.testing.assert_close(engine.model.state_dict()[name], t, msg=name)
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())
    sp = engine.params[-1]
    assert (sp.temperature, sp.top_p, sp.top_k, sp.min_p, sp.repetition_penalty) == (0.7, 1.0, -1, 0.0, 1.0)
    assert (sp.max_tokens, sp.stop_token_ids, sp.n) == (6, [eos], 1)
    for p, reply in zip(prompts, replies, strict=True):  # the merged model's own greedy reply, eos kept
        want = merged.generate(torch.tensor([p]), max_new_tokens=6, do_sample=False, eos_token_id=eos)[0, len(p) :]
        assert reply == want.tolist()[: len(reply)] and (len(reply) == 6 or reply[-1] == eos)


def test_an_rl_run_with_the_vllm_sampler_syncs_the_weights_every_step(
    fake_vllm: list[Engine], tiny_model_path: Path, tmp_path: Path
) -> None:
    prompts = [Prompt(id=f"p{i}", text=f"Tell me about topic number {i}.", label="benign") for i in range(4)]
    cfg = RLConfig(method="grpo", max_steps=2, prompts_per_step=2, group_size=2, max_new_tokens=4,
                   learning_rate=1e-3, micro_batch_size=4, threads=1, sampler="vllm", merge=False)  # fmt: skip
    result = rl_train(str(tiny_model_path), prompts, tmp_path / "rl", cfg, "rule:length")
    (engine,) = fake_vllm
    assert result.steps == 2 and engine.loads == 2 and len(engine.params) == 2
