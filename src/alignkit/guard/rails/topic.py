"""Hazard-topic screening: key phrases, and embedding similarity to exemplar requests per hazard category.

The embedding rail scores a request against each category as

    margin_c(x) = mean top-k cos(x, harmful exemplars of c) - benign_weight * mean top-k cos(x, benign exemplars)

with all-MiniLM-L6-v2 (mean-pooled, L2-normalised), and blocks when margin_c(x) > threshold_c for some c.
Subtracting the similarity to benign look-alikes ("kill a process", "bath bomb") is what lets them pass.
Thresholds are calibrated on the train split of the built-in suite: greedily lowered, category by
category, to catch the most harmful prompts while at most `max_benign_share` of the benign ones are
flagged; the result is cached under $ALIGNKIT_HOME/guard by the hash of everything it depends on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alignkit.guard.base import Decision, RailContext, Side, allow

if TYPE_CHECKING:
    import torch

READABLE_VIEWS = ("folded", "despaced", "deleet")


def readable_texts(context: RailContext, limit: int = 8) -> list[str]:
    """The distinct readable views (not the squashed one), decoded payloads included, at most `limit`."""
    out: list[str] = []
    for v in context.views:
        if v.kind.split(":")[-1] in READABLE_VIEWS and v.text.strip() and v.text not in out:
            out.append(v.text)
    return out[:limit]


class SentenceEncoder:
    """all-MiniLM-L6-v2 (or any BERT-like folder): mean pooling over real tokens, L2-normalised.

    Thread-safe: every forward pass runs on one thread of its own, whoever calls. Torch's OpenMP pool
    belongs to the calling thread, so forward passes from a changing set of threads keep several pools
    spinning against each other; on two cores that made each call 20x slower. Recent texts are cached."""

    def __init__(self, path: str | Path | None = None, *, max_length: int = 128, cache_size: int = 4096) -> None:
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            from alignkit.embeddings import packaged_encoder

            path = packaged_encoder()
        self.path = str(path)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(self.path)
        self.model: Any = AutoModel.from_pretrained(self.path).eval()
        self.max_length = max_length
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-encoder")
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    @property
    def fingerprint(self) -> str:
        return Path(self.path).name + f"@{self.max_length}"

    def _encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        import torch

        out = []
        with torch.inference_mode():
            for lo in range(0, len(texts), batch_size):
                enc = self.tokenizer(
                    texts[lo : lo + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state  # (B, T, D)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, D)
                out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros((0, int(self.model.config.hidden_size)))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit vectors, one per text."""
        return self._worker.submit(self._encode_cached, list(texts)).result()

    def _encode_cached(self, texts: list[str]) -> torch.Tensor:
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for t, v in zip(missing, self._encode(missing), strict=True):
                self._cache[t] = v
        rows = []
        for t in texts:
            self._cache.move_to_end(t)
            rows.append(self._cache[t])
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return torch.stack(rows) if rows else torch.zeros((0, int(self.model.config.hidden_size)))


@dataclass
class TopicIndex:
    """Exemplar embeddings per category and of benign look-alikes, and how margins are computed."""

    categories: list[str]
    harmful: torch.Tensor
    """(E, D) harmful exemplars."""
    harmful_category: torch.Tensor
    """(E, C) bool: exemplar e counts for category c (a principle may govern several)."""
    benign: torch.Tensor
    """(B, D) benign exemplars."""
    top_k: int = 3
    benign_weight: float = 1.0

    def margins(self, x: torch.Tensor, exclude_harmful: torch.Tensor | None = None,
                exclude_benign: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """(N, C) margins for (N, D) queries; `exclude_*` (N, E) / (N, B) masks leave out pairs (a
        query's own copy among the exemplars, for leave-one-out calibration)."""
        import torch

        sims = x @ self.harmful.T  # (N, E)
        if exclude_harmful is not None:
            sims = sims.masked_fill(exclude_harmful, -1.0)
        cols = []
        for c in range(len(self.categories)):
            own = sims[:, self.harmful_category[:, c]]  # (N, E_c)
            k = min(self.top_k, own.shape[1])
            cols.append(own.topk(k, dim=1).values.mean(1) if k else torch.full((len(x),), -1.0))
        harmful = torch.stack(cols, 1)  # (N, C)
        if len(self.benign) == 0 or self.benign_weight == 0:
            return harmful
        bsims = x @ self.benign.T  # (N, B)
        if exclude_benign is not None:
            bsims = bsims.masked_fill(exclude_benign, -1.0)
        k = min(self.top_k, bsims.shape[1])
        benign = bsims.topk(k, dim=1).values.mean(1, keepdim=True)  # (N, 1)
        return harmful - self.benign_weight * benign


def build_index(
    encoder: SentenceEncoder,
    exemplars: Mapping[str, Sequence[str]],
    benign: Sequence[str],
    *,
    top_k: int = 3,
    benign_weight: float = 0.5,
    cache_dir: Path | None = None,
) -> tuple[TopicIndex, list[str], list[str]]:
    """The index, and the harmful and benign exemplar texts in the order of its rows. With `cache_dir`,
    the exemplar embeddings are kept there by the hash of the encoder and the texts."""
    import torch

    categories = sorted(exemplars)
    texts = list(dict.fromkeys(t for c in categories for t in exemplars[c]))
    member = torch.tensor([[t in exemplars[c] for c in categories] for t in texts], dtype=torch.bool)
    member = member.reshape(len(texts), len(categories))
    benign_texts = list(dict.fromkeys(benign))
    path = (
        None
        if cache_dir is None
        else cache_dir / f"topic-index-{fingerprint(encoder.fingerprint, texts, benign_texts)}.pt"
    )
    if path is not None and path.exists():
        blob = torch.load(path, weights_only=True)
        harmful, benign_vectors = blob["harmful"], blob["benign"]
    else:
        harmful, benign_vectors = encoder.encode(texts), encoder.encode(benign_texts)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({"harmful": harmful, "benign": benign_vectors}, tmp)
            tmp.replace(path)
    index = TopicIndex(categories, harmful, member, benign_vectors, top_k=top_k, benign_weight=benign_weight)
    return index, texts, benign_texts


def calibrate(
    index: TopicIndex,
    harmful: torch.Tensor,
    benign: torch.Tensor,
    max_benign_share: float,
    exclude: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None] = (
        None,
        None,
        None,
        None,
    ),
) -> dict[str, float]:
    """Per-category thresholds: greedily lowered where each step catches the most harmful prompts per
    benign prompt it newly flags, while the benign prompts flagged by any category stay within
    `max_benign_share`. `harmful` (H, D) and `benign` (B, D) are the labelled train prompts."""
    import torch

    hm = index.margins(harmful, exclude[0], exclude[1])  # (H, C)
    bm = index.margins(benign, exclude[2], exclude[3])  # (B, C)
    n_cat = len(index.categories)
    budget = int(max_benign_share * len(benign))
    thresholds = torch.full((n_cat,), float("inf"))
    caught = torch.zeros(len(harmful), dtype=torch.bool)
    flagged = torch.zeros(len(benign), dtype=torch.bool)
    while True:
        best: tuple[float, int, float] | None = None
        for c in range(n_cat):
            below = hm[:, c] < thresholds[c]
            candidates = hm[:, c][below & ~caught]
            if len(candidates) == 0:
                continue
            new_t = float(candidates.max()) - 1e-6
            newly_caught = int(((hm[:, c] > new_t) & ~caught).sum())
            newly_flagged = int(((bm[:, c] > new_t) & ~flagged).sum())
            if int(flagged.sum()) + newly_flagged > budget:
                continue
            value = newly_caught / (newly_flagged + 0.5)
            if best is None or value > best[0]:
                best = (value, c, new_t)
        if best is None:
            break
        _, c, new_t = best
        thresholds[c] = new_t
        caught |= hm[:, c] > new_t
        flagged |= bm[:, c] > new_t
    # Between the last harmful prompt caught and the first benign one that would be flagged: the midpoint.
    out = {}
    for c, name in enumerate(index.categories):
        t = float(thresholds[c])
        if t == float("inf"):
            t = float(bm[:, c].max()) + 0.05 if len(bm) else 1.0
        else:
            passed = bm[:, c][bm[:, c] <= t]
            lo = float(passed.max()) if len(passed) else t - 0.05
            t = (max(lo, t - 0.05) + t) / 2
        out[name] = round(t, 4)
    return out


@dataclass
class CalibrationData:
    """Labelled requests to calibrate on: (text, category) for harmful ones, texts for benign ones."""

    harmful: list[tuple[str, str]]
    benign: list[str]

    @classmethod
    def builtin(cls, split: str = "train") -> CalibrationData:
        from alignkit.suites import load_suite, select_split

        prompts = [p for p in select_split(load_suite("default"), split) if p.text is not None]  # type: ignore[arg-type]
        return cls(
            harmful=[(str(p.text), str(p.category)) for p in prompts if p.label == "harmful"],
            benign=[str(p.text) for p in prompts if p.label == "benign"],
        )


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class TopicRail:
    """Blocks requests whose embedding is closer to a hazard category's exemplar requests than its
    calibrated threshold allows (after subtracting the similarity to benign look-alikes); requests near a
    threshold are allowed but noted as suspected, for the output rails. Reads every readable view, so
    decoded and de-spaced text is screened too."""

    name = "topic"
    uses_model = True

    def __init__(
        self,
        encoder: SentenceEncoder,
        exemplars: Mapping[str, Sequence[str]],
        benign: Sequence[str],
        thresholds: Mapping[str, float] | None = None,
        *,
        side: Side = "input",
        top_k: int = 3,
        benign_weight: float = 0.5,
        max_benign_share: float = 0.02,
        suite_exemplars: bool = True,
        action: Literal["block", "flag"] = "block",
        suspect_margin: float = 0.05,
        cache_dir: Path | None = None,
    ) -> None:
        self.side: Side = side
        self.encoder = encoder
        self.suspect_margin = suspect_margin
        self.action = action
        data = CalibrationData.builtin("train") if (thresholds is None or suite_exemplars) else None
        pool = {c: list(v) for c, v in exemplars.items()}
        benign_pool = list(benign)
        if suite_exemplars and data is not None:
            for text, category in data.harmful:
                if category in pool:
                    pool[category].append(text)
            benign_pool += data.benign
        import torch

        from alignkit.models import home

        cache_dir = cache_dir or home() / "guard"
        self.index, harmful_texts, benign_texts = build_index(
            encoder, pool, benign_pool, top_k=top_k, benign_weight=benign_weight, cache_dir=cache_dir
        )
        if thresholds is None:
            assert data is not None
            thresholds = self._calibrated(data, harmful_texts, benign_texts, max_benign_share, cache_dir)
        missing = [c for c in self.index.categories if c not in thresholds]
        if missing:
            raise ValueError(f"no topic threshold for categories {missing}")
        self.thresholds = torch.tensor([float(thresholds[c]) for c in self.index.categories])

    def _calibrated(
        self,
        data: CalibrationData,
        harmful_texts: list[str],
        benign_texts: list[str],
        max_benign_share: float,
        cache_dir: Path,
    ) -> dict[str, float]:
        import torch

        key = fingerprint(
            self.encoder.fingerprint,
            harmful_texts,
            self.index.harmful_category.tolist(),
            benign_texts,
            data.harmful,
            data.benign,
            self.index.top_k,
            self.index.benign_weight,
            max_benign_share,
            "v1",
        )
        path = cache_dir / f"topic-thresholds-{key}.json"
        if path.exists():
            cached: dict[str, float] = json.loads(path.read_text())
            return cached
        h = self.encoder.encode([t for t, _ in data.harmful])
        b = self.encoder.encode(data.benign)
        # Leave one out: a train prompt that is also an exemplar must not find itself.
        ex = (
            torch.tensor([[t == e for e in harmful_texts] for t, _ in data.harmful]).reshape(len(h), -1),
            torch.tensor([[t == e for e in benign_texts] for t, _ in data.harmful]).reshape(len(h), -1),
            torch.tensor([[t == e for e in harmful_texts] for t in data.benign]).reshape(len(b), -1),
            torch.tensor([[t == e for e in benign_texts] for t in data.benign]).reshape(len(b), -1),
        )
        thresholds = calibrate(self.index, h, b, max_benign_share, ex)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(thresholds, indent=1) + "\n")
        tmp.replace(path)
        return thresholds

    def over(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, C) margin minus threshold: positive means blocked for that category."""
        return self.index.margins(self.encoder.encode(texts)) - self.thresholds

    def check(self, text: str, context: RailContext) -> Decision:
        texts = readable_texts(context)
        if not texts:
            return allow(self.name)
        over = self.over(texts).max(dim=0).values  # (C,)
        c = int(over.argmax())
        category = self.index.categories[c]
        if float(over[c]) > 0:
            if self.action == "flag":
                return allow(self.name, f"close to {category} exemplars (flagged)", category=category)
            return Decision("block", self.name, f"close to {category} exemplars", category=category)
        if float(over[c]) > -self.suspect_margin:
            return allow(self.name, f"near {category} exemplars", category=category)
        return allow(self.name)


class PhraseRail:
    """Blocks requests containing a hazard category's key phrases (the constitution's `guard.phrases`),
    matched on every view with flexible spacing, so "k i l l  m y s e l f" and "k1ll mys3lf" match."""

    name = "phrases"
    uses_model = False

    def __init__(self, phrases: Mapping[str, Sequence[str]], side: Side = "input") -> None:
        self.side: Side = side
        self.categories: list[str] = []
        alternatives: list[str] = []
        self.joined: list[tuple[str, str]] = []
        for category, items in phrases.items():
            for phrase in items:
                words = re.findall(r"[a-z0-9]+", phrase.lower())
                if not words:
                    continue
                alternatives.append(f"(?P<p{len(self.categories)}>" + r"[\W_]+".join(map(re.escape, words)) + ")")
                self.categories.append(category)
                self.joined.append((category, "".join(words)))
        self.pattern = re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE) if alternatives else None
        self.gate = re.compile("|".join(re.escape(j) for _, j in self.joined)) if self.joined else None

    def check(self, text: str, context: RailContext) -> Decision:
        squashed = [v.text for v in context.views if v.kind.split(":")[-1] == "squashed"]
        # Every spaced match shows in a squashed view, so a text none of whose squashed views holds a
        # phrase needs no further look.
        if self.gate is None or not any(self.gate.search(sq) for sq in squashed):
            return allow(self.name)
        present = [(c, j) for c, j in self.joined if any(j in sq for sq in squashed)]
        for view in context.views:
            category = None
            if view.kind.split(":")[-1] == "squashed":
                # Run together, short phrases would match inside other words: only long ones count here.
                category = next((c for c, j in present if len(j) >= 12 and j in view.text), None)
            elif self.pattern is not None and (m := self.pattern.search(view.text)) and m.lastgroup:
                category = self.categories[int(m.lastgroup[1:])]
            if category is not None:
                return Decision("block", self.name, f"{category} key phrase", category=category)
        return allow(self.name)
