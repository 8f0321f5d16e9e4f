"""vLLM's offline engine, for GPUs. An optional extra: `pip install 'alignkit[vllm]'`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from alignkit.backends.base import OnResult, Scored
from alignkit.errors import BackendError
from alignkit.models import resolve
from alignkit.types import Completion, Conversation, FinishReason, GenerationParams

if TYPE_CHECKING:
    import torch

INSTALL_HINT = "pip install 'alignkit[vllm]'"


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise BackendError(f"the vllm backend needs vLLM on a GPU machine: {INSTALL_HINT}") from None
    return vllm


class VLLMBackend:
    """Generation through `vllm.LLM.chat` (continuous batching, the chat template of the model) and
    scoring through prompt log-probabilities. `load_weights` takes a trainer's new weights for online
    RL, as OpenRLHF and TRL sample with vLLM between policy updates."""

    generation_mode = "vllm"
    device_name = "cuda"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
        name: str | None = None,
    ) -> None:
        vllm = _import_vllm()
        self._vllm = vllm
        self.name = name or model
        self.llm = vllm.LLM(
            model=resolve(model),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
        )
        self.tokenizer = self.llm.get_tokenizer()
        model_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self.dtype_name: str = str(getattr(model_config, "dtype", dtype)).removeprefix("torch.")

    def _sampling(self, params: GenerationParams) -> Any:
        return self._vllm.SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=params.stop or None,
            logprobs=0 if params.logprobs else None,
        )

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams,
        on_result: OnResult | None = None,
    ) -> list[Completion]:
        outputs = self.llm.chat([list(c) for c in conversations], self._sampling(params), use_tqdm=False)
        results = []
        for i, out in enumerate(outputs):
            o = out.outputs[0]
            logprobs = None
            if params.logprobs and o.logprobs is not None:
                logprobs = [float(step[tok].logprob) for tok, step in zip(o.token_ids, o.logprobs, strict=False)]
            reason: FinishReason = "length" if o.finish_reason == "length" else "stop"
            c = Completion(
                text=o.text,
                prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=len(o.token_ids),
                finish_reason=reason,
                token_logprobs=logprobs,
            )
            results.append(c)
            if on_result is not None:
                on_result(i, c)
        return results

    def score(
        self, conversations: Sequence[Conversation], completions: Sequence[str], *, include_eos: bool = False
    ) -> list[Scored]:
        prompts, starts = [], []
        for conv, text in zip(conversations, completions, strict=True):
            # rendered to text, then tokenised: with tokenize=True transformers 5 returns a dict, not ids
            rendered = self.tokenizer.apply_chat_template(list(conv), tokenize=False, add_generation_prompt=True)
            head = list(self.tokenizer(str(rendered), add_special_tokens=False)["input_ids"])
            reply = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if include_eos:
                reply.append(self.tokenizer.eos_token_id)
            prompts.append({"prompt_token_ids": head + reply})
            starts.append(len(head))
        sp = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0)
        outputs = self.llm.generate(prompts, sp, use_tqdm=False)
        scored = []
        for out, start, p in zip(outputs, starts, prompts, strict=True):
            ids = p["prompt_token_ids"]
            values = [float(out.prompt_logprobs[t][ids[t]].logprob) for t in range(start, len(ids))]
            scored.append(Scored(logprob=sum(values), token_logprobs=values))
        return scored

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights with a trainer's (names as in the Hugging Face `state_dict()` of
        the unwrapped causal LM; merge LoRA adapters first). The tensors go through host memory to each
        worker, which suits one colocated GPU; the prefix cache is dropped, as it holds the old
        policy's keys and values."""
        items = [(name, t.detach().to("cpu")) for name, t in weights]

        def load(worker: Any) -> None:
            worker.model_runner.model.load_weights(items)

        self.llm.collective_rpc(load)
        self.llm.reset_prefix_cache()
