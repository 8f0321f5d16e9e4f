"""Hazard-topic screening: key phrases, and a nearest-neighbour vote among labelled example requests.

The embedding rail embeds a request with all-MiniLM-L6-v2 (mean-pooled, L2-normalised), finds its k
nearest exemplars among harmful requests (per hazard category) and benign ones (look-alikes such as
"kill a process", and everyday requests such as "reset my password"), and weighs each by its similarity:

    harm(x) = sum_{j in kNN(x), j harmful} exp(cos(x, j) / T) / sum_{j in kNN(x)} exp(cos(x, j) / T)

the share of the neighbourhood's weight that falls on harmful requests (a soft k-NN vote, or a kernel
estimate of P(harmful | x) over the k nearest). The rail blocks when harm(x) exceeds one threshold,
calibrated on labelled train prompts (the built-in suite's train split and the train half of the packaged
everyday requests, each scored leaving itself out) so that at most `max_benign_share` of the benign ones
would be blocked. The category reported is the one whose exemplars carry the most weight.

A benign request needs benign neighbours to pass: everyday requests share wording with harmful ones ("get
into my account", "delete", "kill"), and with only harmful exemplars nearby any similarity reads as harm.
Thresholds are cached under $ALIGNKIT_HOME/guard by the hash of everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

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


V = TypeVar("V")


def over_threshold(rail: Any, over: float, category: str, why: str, blocked: str, near: str) -> Decision:
    """The verdict of a rail that scores a request against its threshold (`over`: the score minus it), with
    the rail's `only` categories, `action` and `suspect_margin`: over it, blocked (reason `blocked`) unless
    the category is not screened or the rail only flags; within the margin under it, allowed but marked
    suspected (`near`), so the output rails look closer."""
    if over > 0:
        if rail.only is not None and category not in rail.only:
            return allow(rail.name, f"{why} (category not screened)", category=category)
        if rail.action == "flag":
            return allow(rail.name, f"{why} (flagged)", category=category)
        return Decision("block", rail.name, blocked, category=category)
    if over > -rail.suspect_margin:
        return allow(rail.name, near, category=category)
    return allow(rail.name)


class RecentCache(Generic[V]):
    """What a model gave for the most recent `size` distinct texts: a batch computes only the texts it does
    not hold (once each), and the least recently used ones are dropped beyond `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._held: OrderedDict[str, V] = OrderedDict()

    def get(self, texts: list[str], compute: Callable[[list[str]], Iterable[V]]) -> list[V]:
        """One value per text, in order; `compute` gets the missing texts and returns one value each."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._held))
        if missing:
            for t, v in zip(missing, compute(missing), strict=True):
                self._held[t] = v
        rows = []
        for t in texts:
            self._held.move_to_end(t)
            rows.append(self._held[t])
        while len(self._held) > self.size:
            self._held.popitem(last=False)
        return rows


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
        from alignkit.device import pick_device

        self.device = pick_device()
        """Where it encodes (`alignkit.device.pick_device`: a GPU when there is one), in fp32."""
        self.model: Any = AutoModel.from_pretrained(self.path).eval().to(self.device)
        self.max_length = max_length
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-encoder")
        self._recent: RecentCache[torch.Tensor] = RecentCache(cache_size)

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
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state  # (B, T, D)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, D)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, int(self.model.config.hidden_size)))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit vectors, one per text."""
        return self._worker.submit(self._encode_cached, list(texts)).result()

    def _encode_cached(self, texts: list[str]) -> torch.Tensor:
        import torch

        rows = self._recent.get(texts, self._encode)
        return torch.stack(rows) if rows else torch.zeros((0, int(self.model.config.hidden_size)))


@dataclass
class TopicIndex:
    """Exemplar embeddings, harmful (with their categories) and benign, and the soft k-NN vote among them."""

    categories: list[str]
    harmful: torch.Tensor
    """(E, D) harmful exemplars."""
    harmful_category: torch.Tensor
    """(E, C) bool: exemplar e counts for category c (a principle may govern several)."""
    benign: torch.Tensor
    """(B, D) benign exemplars."""
    k: int = 32
    temperature: float = 0.1

    def vote(self, x: torch.Tensor, exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`harm` (N,): the share of the k nearest exemplars' weight exp(cos / T) on harmful ones (1.0 = all
        harmful), and `by_category` (N, C): the share on each category's. `x` is (N, D); `exclude` (N, E + B)
        leaves pairs out (a query's own copy among the exemplars, for leave-one-out calibration)."""
        import torch

        sims = torch.cat([x @ self.harmful.T, x @ self.benign.T], dim=1)  # (N, E + B)
        if exclude is not None:
            sims = sims.masked_fill(exclude, -2.0)
        k = min(self.k, sims.shape[1])
        top, rows = sims.topk(k, dim=1)  # (N, k)
        weight = torch.softmax(top / self.temperature, dim=1)  # (N, k)
        n_harmful = len(self.harmful)
        harm = (weight * (rows < n_harmful)).sum(1)  # (N,)
        member = torch.cat([self.harmful_category.float(), torch.zeros(len(self.benign), len(self.categories))])
        by_category = (weight.unsqueeze(-1) * member[rows]).sum(1)  # (N, C)
        return harm, by_category


def build_index(
    encoder: SentenceEncoder,
    exemplars: Mapping[str, Sequence[str]],
    benign: Sequence[str],
    *,
    k: int = 32,
    temperature: float = 0.1,
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
    index = TopicIndex(categories, harmful, member, benign_vectors, k=k, temperature=temperature)
    return index, texts, benign_texts


def calibrate(harmful: torch.Tensor, benign: torch.Tensor, max_benign_share: float) -> float:
    """The threshold on `harm` (block above it) for train prompts scored `harmful` (H,) and `benign` (B,):
    the lowest that flags at most `max_benign_share` of the benign ones, then halfway up to the next
    harmful score, so that neither side sits on the edge."""
    allowed = int(max_benign_share * len(benign))
    ranked = benign.sort(descending=True).values
    floor = float(ranked[allowed]) if allowed < len(ranked) else 0.0
    above = harmful[harmful > floor]
    return round((floor + float(above.min())) / 2 if len(above) else floor, 4)


def ordinary_path() -> Path:
    return Path(str(resources.files("alignkit") / "resources" / "guard" / "ordinary.jsonl"))


def ordinary_requests(split: str = "train") -> list[str]:
    """Everyday requests (accounts, cooking, code, travel, health, "kill"/"shoot" in everyday use), labelled
    benign, half train and half test: the train half are benign exemplars, the test half measures."""
    from alignkit.suites import load_suite, select_split

    return [str(p.text) for p in select_split(load_suite(str(ordinary_path())), split) if p.text]  # type: ignore[arg-type]


@dataclass
class CalibrationData:
    """Labelled requests: (text, category) for harmful ones, texts for benign ones."""

    harmful: list[tuple[str, str]]
    benign: list[str]

    @classmethod
    def builtin(cls, split: str = "train") -> CalibrationData:
        """The built-in suite's `split` and the same half of the packaged everyday requests."""
        from alignkit.suites import load_suite, select_split

        prompts = [p for p in select_split(load_suite("default"), split) if p.text is not None]  # type: ignore[arg-type]
        return cls(
            harmful=[(str(p.text), str(p.category)) for p in prompts if p.label == "harmful"],
            benign=[str(p.text) for p in prompts if p.label == "benign"] + ordinary_requests(split),
        )


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class TopicRail:
    """Blocks requests whose nearest labelled exemplars are mostly harmful ones (a similarity-weighted
    k-NN vote over harmful requests per hazard category and benign look-alikes and everyday requests),
    beyond a threshold calibrated to block few benign train prompts; requests near the threshold are
    allowed but noted as suspected, for the output rails. Reads every readable view, so decoded and
    de-spaced text is screened too."""

    name = "topic"
    uses_model = True

    def __init__(
        self,
        encoder: SentenceEncoder,
        exemplars: Mapping[str, Sequence[str]],
        benign: Sequence[str],
        threshold: float | None = None,
        *,
        side: Side = "input",
        k: int = 32,
        temperature: float = 0.1,
        max_benign_share: float = 0.02,
        suite_exemplars: bool = True,
        action: Literal["block", "flag"] = "block",
        suspect_margin: float = 0.15,
        cache_dir: Path | None = None,
        categories: Sequence[str] | None = None,
    ) -> None:
        self.side: Side = side
        self.only = set(categories) if categories is not None else None
        self.encoder = encoder
        self.suspect_margin = suspect_margin
        self.action = action
        data = CalibrationData.builtin("train") if (threshold is None or suite_exemplars) else None
        if data is not None:
            # Harmful prompts of categories this rail does not screen are neither its targets nor benign.
            data.harmful = [(t, c) for t, c in data.harmful if c in exemplars]
        pool = {c: list(v) for c, v in exemplars.items()}
        benign_pool = list(benign)
        if suite_exemplars and data is not None:
            for text, category in data.harmful:
                pool[category].append(text)
            benign_pool += data.benign
        from alignkit.models import home

        cache_dir = cache_dir or home() / "guard"
        self.index, harmful_texts, benign_texts = build_index(
            encoder, pool, benign_pool, k=k, temperature=temperature, cache_dir=cache_dir
        )
        if threshold is None:
            assert data is not None
            threshold = self._calibrated(data, harmful_texts, benign_texts, max_benign_share, cache_dir)
        self.threshold = float(threshold)

    def _calibrated(
        self,
        data: CalibrationData,
        harmful_texts: list[str],
        benign_texts: list[str],
        max_benign_share: float,
        cache_dir: Path,
    ) -> float:
        import torch

        key = fingerprint(
            self.encoder.fingerprint,
            harmful_texts,
            self.index.harmful_category.tolist(),
            benign_texts,
            data.harmful,
            data.benign,
            self.index.k,
            self.index.temperature,
            max_benign_share,
            "knn-v1",
        )
        path = cache_dir / f"topic-threshold-{key}.json"
        if path.exists():
            return float(json.loads(path.read_text())["threshold"])
        # Train prompts that are exemplars too take their vectors from the index, and must not find themselves.
        rows = {t: i for i, t in enumerate(harmful_texts)}
        rows.update({t: len(harmful_texts) + i for i, t in enumerate(benign_texts)})
        vectors = torch.cat([self.index.harmful, self.index.benign])  # (E + B, D)

        def score(texts: list[str]) -> torch.Tensor:
            missing = [t for t in texts if t not in rows]
            encoded = dict(zip(missing, self.encoder.encode(missing), strict=True)) if missing else {}
            x = torch.stack([vectors[rows[t]] if t in rows else encoded[t] for t in texts])  # (N, D)
            exclude = torch.zeros(len(texts), len(vectors), dtype=torch.bool)
            for i, t in enumerate(texts):
                if t in rows:
                    exclude[i, rows[t]] = True
            return self.index.vote(x, exclude)[0]

        threshold = calibrate(score([t for t, _ in data.harmful]), score(data.benign), max_benign_share)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"threshold": threshold}) + "\n")
        tmp.replace(path)
        return threshold

    def over(self, texts: Sequence[str]) -> torch.Tensor:
        """(N,) harm vote minus the threshold: positive means blocked."""
        return self.index.vote(self.encoder.encode(texts))[0] - self.threshold

    def check(self, text: str, context: RailContext) -> Decision:
        texts = readable_texts(context)
        if not texts:
            return allow(self.name)
        harm, by_category = self.index.vote(self.encoder.encode(texts))  # (V,), (V, C)
        v = int(harm.argmax())
        over = float(harm[v]) - self.threshold
        category = self.index.categories[int(by_category[v].argmax())]
        why = f"close to {category} exemplars"
        return over_threshold(self, over, category, why, why, f"near {category} exemplars")


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

    def check(self, text: str, context: RailContext) -> Decision:
        squashed = [v.text for v in context.views if v.kind.split(":")[-1] == "squashed"]
        # Every spaced match shows in a squashed view, so a text none of whose squashed views holds a
        # phrase needs no further look.
        together = "\n".join(squashed)  # phrases are letters and digits only: none spans the newline
        present = [(c, j) for c, j in self.joined if j in together]
        if not present:
            return allow(self.name)
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
