"""Local transformers backend: batched, left-padded, length-sorted generation and scoring."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from alignkit.backends.base import OnResult, Scored
from alignkit.device import dtype_name, pick_device, pick_dtype
from alignkit.errors import AlignkitError
from alignkit.models import load_model_and_tokenizer
from alignkit.types import Completion, Conversation, FinishReason, GenerationParams

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def render_chat(
    tokenizer: PreTrainedTokenizerBase, conversation: Conversation, add_generation_prompt: bool = True
) -> str:
    """The prompt text the model sees: its chat template, or a plain transcript for base models."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": m["role"], "content": m["content"]} for m in conversation]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return str(text)
    lines = [f"{m['role']}: {m['content']}" for m in conversation]
    return "\n".join(lines) + ("\nassistant:" if add_generation_prompt else "")


GenerationMode = Literal["auto", "plain", "static", "compiled"]
"""plain: transformers' dynamic KV cache; static: a preallocated KV cache; compiled: static cache with the
decoding step compiled by `torch.compile` (CUDA graphs on a GPU); auto: compiled on CUDA, plain elsewhere."""

GPU_BATCH_SIZE = 256
CPU_BATCH_SIZE = 32
WIDTH_BUCKET = 64
"""Static-cache prompts are left-padded to a multiple of this, so that a compiled decoding step sees few
distinct cache shapes and compiles (and captures CUDA graphs) a few times rather than once a batch."""


class HFBackend:
    """Generation and scoring with a transformers causal LM.

    Prompts are sorted by length and cut into batches of at most `batch_size`, so that little compute goes
    on padding; padding is on the left so that every row's new tokens start at the same position.

    Where it runs follows `alignkit.device`: `device` and `dtype` when given, else `$ALIGNKIT_DEVICE` /
    `$ALIGNKIT_DTYPE`, else CUDA in bf16 when available, else the CPU in fp32. A model object passed in
    stays where it is unless `device` is given. `device_name`, `dtype_name` and `generation_mode` say
    where and how it generates, for the posture card and `alignkit models info`.
    """

    def __init__(
        self,
        model: str | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        generation: GenerationMode = "auto",
        compile_backend: str = "inductor",
        name: str | None = None,
    ) -> None:
        if isinstance(model, str):
            target = pick_device(device)
            self.model, self.tokenizer = load_model_and_tokenizer(
                model, dtype=pick_dtype(target, dtype), device=str(target)
            )
            self.name = name or model
        else:
            if tokenizer is None:
                raise ValueError("a model object needs its tokenizer")
            self.model, self.tokenizer = model, tokenizer
            if device is not None or dtype is not None:
                target = pick_device(device) if device is not None else self.device
                moved: Any = self.model
                self.model = moved.to(device=target, dtype=pick_dtype(target, dtype) if dtype is not None else None)
            self.name = name or str(getattr(model.config, "name_or_path", "model"))
        on_gpu = self.device.type == "cuda"
        self.batch_size = batch_size or (GPU_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE)
        if generation not in ("auto", "plain", "static", "compiled"):
            raise AlignkitError(f"generation: unknown mode '{generation}' (use auto, plain, static or compiled)")
        self.generation_mode: str = ("compiled" if on_gpu else "plain") if generation == "auto" else generation
        self.compile_backend = compile_backend
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids: list[int] = list(eos) if isinstance(eos, list) else [int(eos)]
        pad = self.tokenizer.pad_token_id
        self.pad_id: int = int(pad) if pad is not None else self.eos_ids[0]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def device_name(self) -> str:
        """Where the weights are: "cpu", "cuda:0", ..."""
        return str(self.device)

    @property
    def dtype_name(self) -> str:
        """The weights' dtype: "float32", "bfloat16", ..."""
        return dtype_name(next(self.model.parameters()).dtype)

    def encode(self, conversation: Conversation) -> list[int]:
        text = render_chat(self.tokenizer, conversation)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices sorted by length, longest first, cut into the fewest batches of at most `batch_size`,
        their sizes at most one apart: a small last batch would take as many decoding steps as a full one
        for a fraction of the replies (165 prompts at 64 go 55 + 55 + 55, not 64 + 64 + 37)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        if not order:
            return []
        count = -(-len(order) // self.batch_size)
        size, extra = divmod(len(order), count)
        bounds = [b * size + min(b, extra) for b in range(count + 1)]  # the first `extra` batches hold one more
        return [order[bounds[b] : bounds[b + 1]] for b in range(count)]

    @torch.inference_mode()
    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams,
        on_result: OnResult | None = None,
    ) -> list[Completion]:
        encoded = [self.encode(c) for c in conversations]
        config = self._generation_config(params)
        static = self.generation_mode != "plain"
        results: list[Completion | None] = [None] * len(conversations)
        for b, idx in enumerate(self._batches([len(e) for e in encoded])):
            if params.seed is not None:
                torch.manual_seed(params.seed + b)
            width = max(len(encoded[i]) for i in idx)
            if static:
                width = -(-width // WIDTH_BUCKET) * WIDTH_BUCKET
            # (B, T) left-padded ids and mask
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            model: Any = self.model
            out = model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                generation_config=config,
                tokenizer=self.tokenizer if params.stop else None,
            )
            new = out.sequences[:, width:].cpu()  # (B, N)
            logps = None
            if params.logprobs:
                logits = torch.stack(out.logits, dim=1).float()  # (B, N, V)
                logps = torch.log_softmax(logits, dim=-1).gather(-1, new.to(logits.device).unsqueeze(-1))
                logps = logps.squeeze(-1).cpu()
            for row, i in enumerate(idx):
                completion = self._finish(new[row].tolist(), params, None if logps is None else logps[row])
                completion.prompt_tokens = len(encoded[i])
                results[i] = completion
                if on_result is not None:
                    on_result(i, completion)
        return [r for r in results if r is not None]

    def _generation_config(self, params: GenerationParams) -> Any:
        from transformers import CompileConfig, GenerationConfig

        static: dict[str, Any] = {}
        if self.generation_mode == "static":
            static = {"cache_implementation": "static", "disable_compile": True}
        elif self.generation_mode == "compiled":
            compile_config = CompileConfig(backend=self.compile_backend)  # type: ignore[no-untyped-call]
            if self.device.type == "cpu":
                # transformers compiles on accelerators only unless told to; on the CPU it is for tests
                compile_config._compile_all_devices = True  # type: ignore[assignment]
            static = {"cache_implementation": "static", "compile_config": compile_config}
        return GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            temperature=params.temperature if not params.greedy else None,
            top_p=params.top_p if not params.greedy else None,
            top_k=0,  # 0 disables top-k; None would mean transformers' default of 50
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids,
            stop_strings=params.stop or None,
            return_dict_in_generate=True,
            output_logits=params.logprobs,
            **static,
        )

    def _finish(self, tokens: list[int], params: GenerationParams, logps: torch.Tensor | None) -> Completion:
        """Cut a row at its first end-of-turn token or stop string and say why it ended."""
        reason: FinishReason = "length"
        n = len(tokens)
        for k, t in enumerate(tokens):
            if t in self.eos_ids:
                n, reason = k, "stop"
                break
        text = str(self.tokenizer.decode(tokens[:n], skip_special_tokens=True))
        for s in params.stop:
            cut = text.find(s)
            if cut >= 0:
                text, reason = text[:cut], "stop"
        token_logprobs = None if logps is None else [float(x) for x in logps[:n]]
        return Completion(text=text, completion_tokens=n, finish_reason=reason, token_logprobs=token_logprobs)

    @torch.inference_mode()
    def score(
        self, conversations: Sequence[Conversation], completions: Sequence[str], *, include_eos: bool = False
    ) -> list[Scored]:
        if len(conversations) != len(completions):
            raise ValueError("score needs one completion per conversation")
        pairs: list[tuple[list[int], list[int]]] = []
        for conv, text in zip(conversations, completions, strict=True):
            reply = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if include_eos:
                reply.append(self.eos_ids[0])
            pairs.append((self.encode(conv), reply))
        results: list[Scored | None] = [None] * len(pairs)
        for idx in self._batches([len(p) + len(r) for p, r in pairs]):
            width = max(len(pairs[i][0]) + len(pairs[i][1]) for i in idx)
            # (B, T) right-padded: positions are then the plain 0..T-1 of each row
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = pairs[i][0] + pairs[i][1]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V): predicts token t+1
            token_logps = logps.gather(-1, ids[:, 1:].to(self.device).unsqueeze(-1)).squeeze(-1).cpu()
            for row, i in enumerate(idx):
                start, n = len(pairs[i][0]), len(pairs[i][1])
                values = [float(x) for x in token_logps[row, start - 1 : start - 1 + n]]
                results[i] = Scored(logprob=sum(values), token_logprobs=values)
        return [r for r in results if r is not None]
