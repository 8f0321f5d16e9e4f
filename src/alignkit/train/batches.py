"""Training data as token ids: chat-template rendering, loss masks, truncation, length-grouped batches."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignkit.data import load_preferences, load_sft, load_unpaired
from alignkit.errors import AlignkitError
from alignkit.train.config import PAIRED, TrainConfig
from alignkit.types import Conversation

CPU = torch.device("cpu")
"""Batches are built here whatever torch's default device is; the trainer moves them to its device."""


@dataclass
class Sequence_:
    """One tokenised sequence: `ids` and the positions whose tokens carry loss (`loss_mask`, 1 = trained)."""

    ids: list[int]
    loss_mask: list[int]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Example:
    """What one training example becomes: one sequence (sft, kto) or a chosen and a rejected (paired)."""

    index: int
    seqs: list[Sequence_]
    weight: float | None = None
    """Paired: soft label p(chosen preferred); None = 1."""
    desirable: bool | None = None
    """KTO label."""
    packed: int | None = None
    """Length of the shared-prompt row of a pair (`pack_pairs`), set by the trainer when it packs pairs."""

    @property
    def length(self) -> int:
        """What a batch of it costs: its row length (packed) or its longest sequence."""
        return self.packed if self.packed is not None else max(len(s) for s in self.seqs)


class ChatTokenizer:
    """Renders conversations with the model's chat template and marks the assistant tokens."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tok = tokenizer
        self.max_length = max_length

    def render(self, conversation: Conversation, *, generation_prompt: bool) -> str:
        return str(self.tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt))

    def ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def conversation(self, messages: Conversation, train_from: int = 0) -> Sequence_:
        """Every assistant turn from message `train_from` on is trained: each one's span is what rendering
        it adds after the conversation before it."""
        ids: list[int] = []
        mask: list[int] = []
        done = ""
        for k, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self.render(messages[:k], generation_prompt=True)
            upto = self.render(messages[: k + 1], generation_prompt=False)
            if not before.startswith(done) or not upto.startswith(before):
                raise AlignkitError("the chat template does not render conversations as prefixes of each other")
            for text, trained in ((before[len(done) :], 0), (upto[len(before) :], int(k >= train_from))):
                piece = self.ids(text)
                ids += piece
                mask += [trained] * len(piece)
            done = upto
        return self._truncate(Sequence_(ids, mask))

    def pair(self, prompt: Conversation, reply: Conversation) -> Sequence_:
        """Only the reply is trained, as in TRL: assistant turns inside the prompt are context."""
        return self.conversation([*prompt, *reply], train_from=len(prompt))

    def _truncate(self, s: Sequence_) -> Sequence_:
        """Too long: drop prompt tokens from the left (keeping half the budget for them at most), then
        reply tokens from the right."""
        over = len(s) - self.max_length
        if over <= 0:
            return s
        first = s.loss_mask.index(1) if 1 in s.loss_mask else len(s)
        cut = min(over, max(0, first - self.max_length // 2))
        ids, mask = s.ids[cut:], s.loss_mask[cut:]
        return Sequence_(ids[: self.max_length], mask[: self.max_length])


def _held_out(key: str, fraction: float) -> bool:
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def load_examples(path: str | Path, cfg: TrainConfig, tok: ChatTokenizer) -> tuple[list[Example], list[Example]]:
    """The data file as (train, eval) examples, per the method's format."""
    examples: list[Example] = []
    keys: list[str] = []
    if cfg.method == "sft":
        for i, ex in enumerate(load_sft(path)):
            examples.append(Example(i, [tok.conversation(ex.messages)]))
            keys.append(json.dumps(ex.messages))
    elif cfg.method == "kto":
        for i, u in enumerate(load_unpaired(path)):
            examples.append(Example(i, [tok.pair(u.prompt, u.completion)], desirable=u.label))
            keys.append(json.dumps([u.prompt, u.completion]))
    else:
        for i, p in enumerate(load_preferences(path)):
            weight = p.chosen_weight if cfg.use_soft_labels else None
            examples.append(Example(i, [tok.pair(p.prompt, p.chosen), tok.pair(p.prompt, p.rejected)], weight))
            keys.append(json.dumps(p.prompt))
    if not examples:
        raise AlignkitError(f"{path}: no examples")
    empty = [e.index for e in examples if any(sum(s.loss_mask) == 0 for s in e.seqs)]
    if empty:
        raise AlignkitError(f"{path}: example {empty[0] + 1} has no reply tokens left after truncation to max_length")
    # pairs split by prompt, so one prompt's pairs never sit on both sides
    train = [e for e, k in zip(examples, keys, strict=True) if not _held_out(k, cfg.eval_fraction)]
    held = [e for e, k in zip(examples, keys, strict=True) if _held_out(k, cfg.eval_fraction)]
    if not train:
        train, held = held, []
    return train, held


def epoch_order(examples: Sequence[Example], global_batch: int, seed: int, epoch: int) -> list[list[Example]]:
    """Global batches for one epoch, a pure function of (seed, epoch) so a resumed run sees the same
    order. Length-grouped: shuffled, then sorted by length inside windows of 64 batches, so a batch pads
    little while the order stays random; the batches are then shuffled again."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(examples)
    rng.shuffle(order)
    window = global_batch * 64
    grouped: list[Example] = []
    for start in range(0, len(order), window):
        grouped += sorted(order[start : start + window], key=lambda e: e.length, reverse=True)
    batches = [grouped[i : i + global_batch] for i in range(0, len(grouped), global_batch)]
    if len(batches) > 1 and len(batches[-1]) < global_batch:
        batches.pop()
    rng.shuffle(batches)
    return batches


def _pad(pad_id: int | None) -> int:
    """The id that fills padding. Its value never reaches a result (padding is masked out of attention
    and loss), so a tokenizer without a pad token pads with 0: transformers before 5.2x loads SmolLM2's
    GGUF tokenizer with `pad_token_id` None, and `torch.full` with a None fill raised a TypeError."""
    return 0 if pad_id is None else int(pad_id)


def collate(seqs: Sequence[Sequence_], pad_id: int | None) -> dict[str, torch.Tensor]:
    """Right-padded (N, T) ids, attention mask and loss mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), _pad(pad_id), dtype=torch.long, device=CPU)
    attn = torch.zeros((len(seqs), width), dtype=torch.long, device=CPU)
    loss = torch.zeros((len(seqs), width), dtype=torch.long, device=CPU)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s.ids, device=CPU)
        attn[row, : len(s)] = 1
        loss[row, : len(s)] = torch.tensor(s.loss_mask, device=CPU)
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss}


def shared_prefix(a: Sequence_, b: Sequence_) -> int:
    """How many leading tokens two replies to one prompt share, stopping before either's first trained
    token (a trained token is predicted from the position before it, so that position must be shared)."""
    limit = min(
        a.loss_mask.index(1) if 1 in a.loss_mask else len(a), b.loss_mask.index(1) if 1 in b.loss_mask else len(b)
    )
    n = 0
    while n < limit and a.ids[n] == b.ids[n]:
        n += 1
    return n


def packed_length(chosen: Sequence_, rejected: Sequence_) -> int:
    return len(chosen) + len(rejected) - shared_prefix(chosen, rejected)


def pack_pairs(pairs: Sequence[tuple[Sequence_, Sequence_]], pad_id: int | None) -> dict[str, torch.Tensor]:
    """One row per pair: [shared prompt][rest of chosen][rest of rejected], right-padded.

    The rejected part takes the position ids it has on its own (restarting after the prompt) and a 4D
    attention mask hides the chosen part from it, so every token sees exactly what it would see in its
    own row: log-probs equal those of separate rows while the prompt runs once and the two replies share
    one row's padding. Returns the batch for `SequenceLogps`: `input_ids`, `position_ids`,
    `attention_mask` (N, 1, T, T) bool, and for each trained token its predicting position `source`
    (flat index into N x T), its id `target` and its sequence `owner` (chosen of pair i: i, rejected:
    N + i), with per-sequence `counts` (2N,)."""
    n = len(pairs)
    width = max(packed_length(c, r) for c, r in pairs)
    ids = torch.full((n, width), _pad(pad_id), dtype=torch.long, device=CPU)
    pos = torch.zeros((n, width), dtype=torch.long, device=CPU)
    segment = torch.full((n, width), 3, dtype=torch.long, device=CPU)  # 0 prompt, 1 chosen, 2 rejected, 3 padding
    source: list[int] = []
    target: list[int] = []
    owner: list[int] = []
    counts = torch.zeros(2 * n, dtype=torch.long, device=CPU)
    for row, (c, r) in enumerate(pairs):
        s = shared_prefix(c, r)
        lc, lr = len(c), len(r) - s
        ids[row, :lc] = torch.tensor(c.ids, device=CPU)
        ids[row, lc : lc + lr] = torch.tensor(r.ids[s:], device=CPU)
        pos[row, :lc] = torch.arange(lc, device=CPU)
        pos[row, lc : lc + lr] = torch.arange(s, len(r), device=CPU)
        segment[row, :s], segment[row, s:lc], segment[row, lc : lc + lr] = 0, 1, 2
        base = row * width
        for j in range(1, lc):
            if c.loss_mask[j]:
                source.append(base + j - 1)
                target.append(c.ids[j])
                owner.append(row)
        for j in range(1, len(r)):
            if r.loss_mask[j]:
                # the token before it: in the shared prompt, or in the rejected part (after the chosen)
                source.append(base + (j - 1 if j - 1 < s else lc + j - 1 - s))
                target.append(r.ids[j])
                owner.append(n + row)
        counts[row] = sum(c.loss_mask[1:])
        counts[n + row] = sum(r.loss_mask[1:])
    causal = torch.ones(width, width, dtype=torch.bool, device=CPU).tril()
    q, k = segment[:, :, None], segment[:, None, :]
    mask = causal & ~((q == 2) & (k == 1)) & (k != 3)
    # a padding query attends to itself only: a row with nothing to attend to would turn into NaN
    mask |= torch.eye(width, dtype=torch.bool, device=CPU) & (q == 3)
    return {
        "input_ids": ids,
        "position_ids": pos,
        "attention_mask": mask[:, None],
        "source": torch.tensor(source, dtype=torch.long, device=CPU),
        "target": torch.tensor(target, dtype=torch.long, device=CPU),
        "owner": torch.tensor(owner, dtype=torch.long, device=CPU),
        "counts": counts,
    }


PACKED_POSITION_KERNELS = ("flash_attention_2", "flash_attention_3", "sdpa", "flex_attention")
"""Attention implementations that read sequence boundaries from restarting position ids when no
attention mask is given: transformers' flash kernels run them as variable-length sequences (no mask
at all); SDPA and flex build a block-diagonal causal mask from them on the model's device."""


def attention_kernel(model: Any) -> str | None:
    """The attention implementation a (possibly peft-wrapped) model runs: "sdpa", "eager", "flash_attention_2", ..."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    kernel = getattr(inner.config, "_attn_implementation", None)
    return None if kernel is None else str(kernel)


def supports_packed_positions(model: Any) -> bool:
    """Whether `pack_sequences` batches are correct for this model (its attention implementation reads
    sequence boundaries from position ids)."""
    return attention_kernel(model) in PACKED_POSITION_KERNELS


def choose_packing(requested: str, method: str, model: Any, device: torch.device) -> str:
    """The row layout a run trains with ("pairs", "positions" or "off"; see `TrainConfig.packing`) for
    this method, model and device. An explicit request the attention implementation cannot honour is a
    one-line error rather than silently wrong log-probs."""
    kernel = attention_kernel(model)
    paired = method in PAIRED
    if method == "reward" or requested == "off":
        return "off"
    if requested == "pairs":
        if kernel != "sdpa":
            raise AlignkitError(f"packing=pairs needs sdpa attention; this model runs {kernel} (use positions or off)")
        return "pairs" if paired else "off"
    if requested == "positions":
        if kernel not in PACKED_POSITION_KERNELS:
            kernels = ", ".join(PACKED_POSITION_KERNELS)
            raise AlignkitError(f"packing=positions needs one of {kernels}; this model runs {kernel}")
        return "positions"
    if kernel is not None and kernel.startswith("flash_attention"):
        return "positions"
    if paired and kernel == "sdpa" and device.type == "cpu":
        return "pairs"
    return "off"


def pack_sequences(seqs: Sequence[Sequence_], pad_id: int | None, width: int | None = None) -> dict[str, torch.Tensor]:
    """Whole sequences laid end to end in rows of at most `width` tokens (default: the longest
    sequence), first-fit by decreasing length, each one's position ids starting again at 0 and no
    attention mask: the attention kernel keeps the sequences apart (`supports_packed_positions`).
    Padding at a row's end is one more restarted sequence that nothing trained belongs to.

    Returns the batch for `SequenceLogps` without `attention_mask`: `input_ids` and `position_ids`
    (R, W), and for each trained token its predicting position `source` (flat index into R x W), its id
    `target` and its sequence `owner` (the index into `seqs`), with per-sequence `counts` (len(seqs),).
    Unlike `pack_pairs`, a pair's prompt is stored twice, once per reply: a block-diagonal mask cannot
    let two replies share a prompt without seeing each other."""
    width = max(width or 0, max(len(s) for s in seqs))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i])):
        fit = next((r for r, free in enumerate(room) if free >= len(seqs[i])), None)
        if fit is None:
            rows.append([])
            room.append(width)
            fit = len(rows) - 1
        rows[fit].append(i)
        room[fit] -= len(seqs[i])
    used = max(width - free for free in room)
    ids = torch.full((len(rows), used), _pad(pad_id), dtype=torch.long, device=CPU)
    pos = torch.zeros((len(rows), used), dtype=torch.long, device=CPU)
    source: list[int] = []
    target: list[int] = []
    owner: list[int] = []
    counts = torch.zeros(len(seqs), dtype=torch.long, device=CPU)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            s = seqs[i]
            ids[r, at : at + len(s)] = torch.tensor(s.ids, device=CPU)
            pos[r, at : at + len(s)] = torch.arange(len(s), device=CPU)
            for j in range(1, len(s)):
                if s.loss_mask[j]:
                    source.append(r * used + at + j - 1)
                    target.append(s.ids[j])
                    owner.append(i)
            counts[i] = sum(s.loss_mask[1:])
            at += len(s)
        pos[r, at:] = torch.arange(used - at, device=CPU)
    return {
        "input_ids": ids,
        "position_ids": pos,
        "source": torch.tensor(source, dtype=torch.long, device=CPU),
        "target": torch.tensor(target, dtype=torch.long, device=CPU),
        "owner": torch.tensor(owner, dtype=torch.long, device=CPU),
        "counts": counts,
    }
