from __future__ import annotations

import math

import pytest
import torch

from alignkit.backends.base import ScoringBackend
from alignkit.backends.hf import CPU_BATCH_SIZE, GPU_BATCH_SIZE, HFBackend, render_chat
from alignkit.errors import AlignkitError
from alignkit.types import GenerationParams, user, with_system

PROMPTS = [
    "Hi",
    "Write a thank-you note to my neighbour for watering the plants while I was away.",
    "What is 2+2?",
    "List three fruits.",
    "Explain how a bicycle gear works in simple words, for a child of eight.",
    "Say yes.",
]


def convs() -> list:
    return [[user(p)] for p in PROMPTS]


def test_is_a_scoring_backend(tiny_backend: HFBackend) -> None:
    assert isinstance(tiny_backend, ScoringBackend)


def test_batched_greedy_equals_one_at_a_time(tiny_backend: HFBackend) -> None:
    params = GenerationParams(max_new_tokens=12)
    batched = tiny_backend.generate(convs(), params)
    single = [tiny_backend.generate([c], params)[0] for c in convs()]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert all(c.prompt_tokens == len(tiny_backend.encode(conv)) for c, conv in zip(batched, convs(), strict=True))


def test_results_come_back_in_input_order_and_through_the_callback(tiny_backend: HFBackend) -> None:
    seen: dict[int, str] = {}
    params = GenerationParams(max_new_tokens=5)
    out = tiny_backend.generate(convs(), params, on_result=lambda i, c: seen.__setitem__(i, c.text))
    assert sorted(seen) == list(range(len(PROMPTS)))
    assert [seen[i] for i in range(len(PROMPTS))] == [c.text for c in out]
    assert out[0].text == tiny_backend.generate([convs()[0]], params)[0].text


def test_max_new_tokens_and_finish_reason(tiny_backend: HFBackend) -> None:
    out = tiny_backend.generate(convs(), GenerationParams(max_new_tokens=3))
    for c in out:
        assert c.completion_tokens <= 3
        assert c.finish_reason == ("length" if c.completion_tokens == 3 else "stop")


def test_generation_logprobs_match_a_plain_forward_pass(tiny_backend: HFBackend) -> None:
    """Independent check: re-run the model once on prompt + generated ids, no padding, no cache."""
    conv = convs()[1]
    c = tiny_backend.generate([conv, convs()[0]], GenerationParams(max_new_tokens=6, logprobs=True))[0]
    assert c.token_logprobs is not None and len(c.token_logprobs) == c.completion_tokens
    prompt_ids = tiny_backend.encode(conv)
    gen = tiny_backend.model.generate(
        input_ids=torch.tensor([prompt_ids], device=tiny_backend.device),
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=tiny_backend.pad_id,
    )[0, len(prompt_ids) :].tolist()[: c.completion_tokens]
    logits = tiny_backend.model(input_ids=torch.tensor([prompt_ids + gen], device=tiny_backend.device)).logits[0]
    logps = torch.log_softmax(logits.float(), -1)
    expected = [logps[len(prompt_ids) - 1 + k, t].item() for k, t in enumerate(gen)]
    assert c.token_logprobs == pytest.approx(expected, abs=1e-4)


def test_score_matches_hand_computation_and_is_batch_invariant(tiny_backend: HFBackend) -> None:
    replies = [
        "Sure, here it is.",
        "No.",
        "A much longer reply that has many more tokens than the others do.",
    ]
    cs = convs()[:3]
    batched = tiny_backend.score(cs, replies)
    for conv, reply, s in zip(cs, replies, batched, strict=True):
        prompt_ids = tiny_backend.encode(conv)
        reply_ids = tiny_backend.tokenizer(reply, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = tiny_backend.model(input_ids=torch.tensor([prompt_ids + reply_ids], device=tiny_backend.device))
            logits = logits.logits[0]
        logps = torch.log_softmax(logits.float(), -1)
        expected = sum(logps[len(prompt_ids) - 1 + k, t].item() for k, t in enumerate(reply_ids))
        assert s.num_tokens == len(reply_ids)
        assert s.logprob == pytest.approx(expected, abs=1e-4)
        assert s.logprob == pytest.approx(tiny_backend.score([conv], [reply])[0].logprob, abs=1e-4)
    with_eos = tiny_backend.score(cs[:1], replies[:1], include_eos=True)[0]
    assert with_eos.num_tokens == batched[0].num_tokens + 1
    assert with_eos.logprob < batched[0].logprob
    assert all(math.isfinite(x) for x in with_eos.token_logprobs)


def test_seeded_sampling_repeats_and_differs_from_greedy(tiny_backend: HFBackend) -> None:
    sample = GenerationParams(max_new_tokens=10, temperature=1.0, seed=7)
    a = [c.text for c in tiny_backend.generate(convs(), sample)]
    b = [c.text for c in tiny_backend.generate(convs(), sample)]
    greedy = [c.text for c in tiny_backend.generate(convs(), GenerationParams(max_new_tokens=10))]
    assert a == b
    assert a != greedy


def test_stop_strings_cut_the_reply(tiny_backend: HFBackend) -> None:
    free = tiny_backend.generate(convs()[:1], GenerationParams(max_new_tokens=16))[0]
    assert len(free.text) > 4
    stop = free.text[2:4]
    cut = tiny_backend.generate(convs()[:1], GenerationParams(max_new_tokens=16, stop=[stop]))[0]
    assert stop not in cut.text
    assert free.text.startswith(cut.text)
    assert cut.finish_reason == "stop"


def test_system_prompt_reaches_the_template(tiny_backend: HFBackend) -> None:
    conv = with_system([user("Hello")], "You are terse.")
    text = render_chat(tiny_backend.tokenizer, conv)
    assert "You are terse." in text
    assert text.endswith("<|im_start|>assistant\n")
    # SmolLM2's template adds its own default system prompt only when none is given.
    assert "SmolLM" in render_chat(tiny_backend.tokenizer, [user("Hello")])
    assert "SmolLM" not in text


def test_model_object_needs_a_tokenizer(tiny_backend: HFBackend) -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        HFBackend(tiny_backend.model)


@pytest.mark.parametrize("mode", ["static", "compiled"])
def test_static_cache_and_compiled_paths_equal_the_plain_path(tiny_backend: HFBackend, mode: str) -> None:
    """Greedy replies and their log-probs are those of transformers' dynamic cache, with prompts padded
    to the static path's width bucket. The compiled path runs torch.compile with the "eager" backend,
    which traces and runs the same graph that inductor would compile, in a fraction of the time."""
    plain = HFBackend(tiny_backend.model, tiny_backend.tokenizer, batch_size=4, generation="plain")
    other = HFBackend(tiny_backend.model, tiny_backend.tokenizer, batch_size=4, generation=mode,  # type: ignore[arg-type]
                      compile_backend="eager")  # fmt: skip
    assert other.generation_mode == mode
    params = GenerationParams(max_new_tokens=10, logprobs=True)
    want, got = plain.generate(convs(), params), other.generate(convs(), params)
    assert [c.text for c in got] == [c.text for c in want]
    assert [c.finish_reason for c in got] == [c.finish_reason for c in want]
    for a, b in zip(got, want, strict=True):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-3)
    sample = GenerationParams(max_new_tokens=6, temperature=1.0, seed=3)
    assert [c.text for c in other.generate(convs(), sample)] == [c.text for c in other.generate(convs(), sample)]


def test_reports_where_it_runs_and_sizes_batches_for_it(tiny_backend: HFBackend) -> None:
    assert tiny_backend.device_name == str(tiny_backend.device)
    assert tiny_backend.dtype_name in ("float32", "bfloat16")
    on_gpu = tiny_backend.device.type == "cuda"
    fresh = HFBackend(tiny_backend.model, tiny_backend.tokenizer)
    assert fresh.batch_size == (GPU_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE)
    assert fresh.generation_mode == ("compiled" if on_gpu else "plain")
    with pytest.raises(AlignkitError, match="unknown mode 'fast'"):
        HFBackend(tiny_backend.model, tiny_backend.tokenizer, generation="fast")  # type: ignore[arg-type]


def test_a_path_loads_on_the_picked_device_in_the_picked_dtype(
    tiny_model_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")
    monkeypatch.setenv("ALIGNKIT_DTYPE", "bf16")
    b = HFBackend(str(tiny_model_path), batch_size=2)
    assert (b.device_name, b.dtype_name, b.generation_mode) == ("cpu", "bfloat16", "plain")
    assert b.generate(convs()[:1], GenerationParams(max_new_tokens=3))[0].completion_tokens > 0
    monkeypatch.setenv("ALIGNKIT_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AlignkitError, match="cuda requested"):
        HFBackend(str(tiny_model_path))


@pytest.mark.parametrize(
    ("n", "batch_size", "sizes"),
    [(165, 64, [55, 55, 55]), (65, 64, [33, 32]), (64, 64, [64]), (7, 3, [3, 2, 2]), (0, 8, [])],
)
def test_batches_are_the_fewest_with_sizes_at_most_one_apart(
    tiny_backend: HFBackend, n: int, batch_size: int, sizes: list[int]
) -> None:
    b = HFBackend(tiny_backend.model, tiny_backend.tokenizer, batch_size=batch_size)
    lengths = [(i * 37) % 101 for i in range(n)]
    batches = b._batches(lengths)
    assert [len(x) for x in batches] == sizes
    flat = [i for x in batches for i in x]
    assert sorted(flat) == list(range(n))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
