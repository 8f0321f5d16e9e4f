from __future__ import annotations

import pytest
import torch

from alignkit import device as dev
from alignkit.device import dtype_name, pick_device, pick_dtype
from alignkit.errors import AlignkitError


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(dev.ENV_VAR, raising=False)
    monkeypatch.delenv(dev.DTYPE_ENV_VAR, raising=False)
    return monkeypatch


def gpus(monkeypatch: pytest.MonkeyPatch, cuda: int, mps: bool = False, bf16: bool = True) -> None:
    """Pretend torch sees `cuda` GPUs (and MPS, and bf16 support) whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(dev, "_mps_available", lambda: mps)


def test_cuda_when_available_else_mps_else_cpu(no_env: pytest.MonkeyPatch) -> None:
    gpus(no_env, cuda=1, mps=True)
    assert pick_device() == torch.device("cuda")
    gpus(no_env, cuda=0, mps=True)
    assert pick_device() == torch.device("mps")
    gpus(no_env, cuda=0)
    assert pick_device() == torch.device("cpu")
    assert pick_device("auto") == torch.device("cpu")


def test_the_request_beats_the_variable_which_beats_the_default(no_env: pytest.MonkeyPatch) -> None:
    gpus(no_env, cuda=2)
    no_env.setenv(dev.ENV_VAR, "cpu")
    assert pick_device() == torch.device("cpu")
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    no_env.setenv(dev.ENV_VAR, "auto")
    assert pick_device() == torch.device("cuda")


def test_an_unavailable_or_unknown_device_is_a_one_line_error(no_env: pytest.MonkeyPatch) -> None:
    gpus(no_env, cuda=0)
    with pytest.raises(AlignkitError, match=r"cuda requested but torch\.cuda\.is_available\(\) is False"):
        pick_device("cuda")
    no_env.setenv(dev.ENV_VAR, "cuda")
    with pytest.raises(AlignkitError, match=f"^{dev.ENV_VAR}: cuda requested"):
        pick_device()
    with pytest.raises(AlignkitError, match="mps requested"):
        pick_device("mps")
    with pytest.raises(AlignkitError, match="unknown device 'gpu'"):
        pick_device("gpu")
    with pytest.raises(AlignkitError, match="unsupported device 'meta'"):
        pick_device("meta")
    gpus(no_env, cuda=1)
    with pytest.raises(AlignkitError, match="cuda:3 requested but torch sees 1 GPU"):
        pick_device("cuda:3")


def test_bf16_on_gpus_that_support_it_else_fp32(no_env: pytest.MonkeyPatch) -> None:
    gpus(no_env, cuda=1, bf16=True)
    assert pick_dtype(torch.device("cuda")) == torch.bfloat16
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("mps")) == torch.float32
    gpus(no_env, cuda=1, bf16=False)
    assert pick_dtype(torch.device("cuda")) == torch.float32


def test_a_requested_dtype_wins_and_names_print_plainly(no_env: pytest.MonkeyPatch) -> None:
    gpus(no_env, cuda=1)
    assert pick_dtype(torch.device("cuda"), "fp32") == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    assert pick_dtype(torch.device("cpu"), torch.float16) == torch.float16
    no_env.setenv(dev.DTYPE_ENV_VAR, "fp32")
    assert pick_dtype(torch.device("cuda")) == torch.float32
    assert pick_dtype(torch.device("cuda"), "bf16") == torch.bfloat16
    with pytest.raises(AlignkitError, match="unknown dtype 'int8'"):
        pick_dtype(torch.device("cpu"), "int8")
    assert dtype_name(torch.bfloat16) == "bfloat16"


def test_batches_pad_without_a_pad_token_and_stay_on_the_cpu() -> None:
    """The CUDA machine's TypeError at batches.py: its transformers (5.17) loads SmolLM2's GGUF tokenizer
    with `pad_token_id` None, and `collate(seqs, None)` called `torch.full` with a None fill. Padding
    is masked, so its id cannot change a result; batches are built on the CPU whatever the default
    device is, and the trainer moves them."""
    from alignkit.train.batches import Sequence_, collate, pack_pairs

    seqs = [Sequence_([5, 6, 7], [0, 1, 1]), Sequence_([5, 8], [0, 1])]
    with_pad, without = collate(seqs, 2), collate(seqs, None)
    assert without["input_ids"].tolist() == [[5, 6, 7], [5, 8, 0]]
    assert with_pad["input_ids"][0].tolist() == [5, 6, 7] and with_pad["input_ids"][1, 2] == 2
    assert torch.equal(with_pad["attention_mask"], without["attention_mask"])
    assert torch.equal(with_pad["loss_mask"], without["loss_mask"])
    torch.set_default_device("meta")
    try:
        packed = pack_pairs([(seqs[0], seqs[1])], None)
        collated = collate(seqs, None)
    finally:
        torch.set_default_device(None)
    assert {t.device.type for t in [*packed.values(), *collated.values()]} == {"cpu"}
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 1]]


def test_position_id_packing_gives_the_log_probs_of_separate_rows(tiny_model_path: object) -> None:
    """Sequences packed end to end with restarting position ids and no attention mask (the layout
    flash/SDPA kernels take) give each sequence the log-probs it has alone in a padded row, in value and
    gradient; the 4D-mask pair packing stays the default and is checked against the same rows."""
    from transformers import AutoModelForCausalLM

    from alignkit.train.batches import Sequence_, collate, pack_pairs, pack_sequences, supports_packed_positions
    from alignkit.train.logps import SequenceLogps

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert supports_packed_positions(model)
    g = torch.Generator().manual_seed(0)
    seqs = []
    for n in (9, 4, 13, 6, 1, 7):
        ids = torch.randint(10, 500, (n,), generator=g).tolist()
        seqs.append(Sequence_(ids, [0] * (n // 2) + [1] * (n - n // 2)))
    wrapper = SequenceLogps(model)
    want, want_n, _ = wrapper(**collate(seqs, 0))
    want.sum().backward()
    grad = model.get_input_embeddings().weight.grad.clone()
    model.zero_grad()
    packed = pack_sequences(seqs, None, width=16)
    assert packed["input_ids"].shape[0] < len(seqs)  # several sequences share a row
    assert packed["position_ids"][0].tolist()[:13] == list(range(13))
    got, got_n, _ = wrapper(**packed)
    got.sum().backward()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    assert got_n.tolist() == want_n.tolist()
    torch.testing.assert_close(model.get_input_embeddings().weight.grad, grad, atol=1e-4, rtol=1e-4)
    pairs = pack_pairs([(seqs[0], seqs[2]), (seqs[3], seqs[5])], None)
    got_pairs, _, _ = wrapper(**pairs)
    torch.testing.assert_close(got_pairs, want[[0, 3, 2, 5]], atol=1e-4, rtol=1e-5)


def test_every_encoder_follows_the_device_rule(no_env: pytest.MonkeyPatch) -> None:
    """The reply judges and the guard's sentence encoder load where `pick_device` says: the variable
    asking for a GPU this machine lacks is the same one-line error as for a generator; by default they
    run on the CPU here and give CPU tensors back."""
    from transformers import BertConfig, BertModel

    from alignkit.guard.rails.topic import SentenceEncoder
    from alignkit.judges.embedding import EmbeddingJudge, ReplyClassifier
    from alignkit.judges.pair import PairClassifier, PairConfig, PairHead, PairJudge

    tiny = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    makers = [
        lambda: EmbeddingJudge(ReplyClassifier(BertModel(tiny)), tokenizer=None),
        lambda: PairJudge(
            PairClassifier(BertModel(tiny, add_pooling_layer=False), [PairHead(16, 8, True)]), None, PairConfig()
        ),
        lambda: SentenceEncoder(),
    ]
    gpus(no_env, cuda=0)
    no_env.setenv(dev.ENV_VAR, "cuda")
    for make in makers:
        with pytest.raises(AlignkitError, match=r"ALIGNKIT_DEVICE: cuda requested but torch\.cuda\.is_available"):
            make()
    no_env.delenv(dev.ENV_VAR)
    for make in makers:
        made = make()
        assert made.device == torch.device("cpu")
        assert {p.device for p in made.model.parameters()} == {torch.device("cpu")}
    vectors = makers[2]().encode(["a chemistry question", "a cooking question"])
    assert vectors.device == torch.device("cpu") and vectors.shape[0] == 2
