"""Prompt classifier: all-MiniLM-L6-v2 fine-tuned to tell harmful requests from benign ones.

The encoder's top `train_layers` layers are fine-tuned, with a linear head on the mean-pooled token
states, on labelled requests: harmful ones of the screened hazard categories against benign look-alikes
("kill a process"), everyday requests, the everyday anchors and written hard negatives (history, fiction,
safety, medicine, security defence: harmful vocabulary, benign asks). The loss weighs each class by the
inverse of its count, so the ~1:2 imbalance does not tilt the head toward "benign":

    loss = sum_i w(y_i) * BCE(harm_logit_i, y_i) / sum_i w(y_i) + CE(category_logits_i, c_i) over harmful i

The second term trains a category head (which refusal to give); it reads the same pooled vector.

The frozen lower layers' output is computed once per prompt and kept, so an epoch runs only the top
layers: on 2 busy CPU cores training took five minutes (bench/guard_classifier.py). A validation split is
carved from the train prompts by a hash of each text (never the suite's test split): the threshold on
P(harmful) is the lowest that blocks at most `max_val_false_positive` of the benign validation prompts,
then halfway up to the next harmful one. The trained classifier is cached under $ALIGNKIT_HOME/guard by
the hash of its data, settings and encoder; loading it takes about a second once transformers is imported.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alignkit.embeddings import length_batches
from alignkit.guard.base import Decision, RailContext, Side, allow
from alignkit.guard.rails.topic import RecentCache, over_threshold, readable_texts

if TYPE_CHECKING:
    import torch

Split = Literal["train", "val"]


@dataclass
class ClassifierSettings:
    """How the prompt classifier is trained; every field is part of the cache key."""

    train_layers: int = 2
    """Top encoder layers fine-tuned (of MiniLM's six); the ones below stay frozen."""
    max_tokens: int = 96
    """Tokens of a request read (the rest cut off)."""
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-4
    """Peak learning rate of the fine-tuned layers."""
    head_lr: float = 2e-3
    """Peak learning rate of the linear heads."""
    warmup_steps: int = 30
    """Linear warm-up, then linear decay to zero."""
    category_weight: float = 0.3
    """Weight of the category head's loss beside the harmful-vs-benign loss."""
    val_share: float = 0.15
    """Share of the labelled train prompts (by a hash of the text) held out to choose the threshold."""
    max_val_false_positive: float = 0.01
    """The threshold blocks at most this share of the benign validation prompts."""
    seed: int = 0


@dataclass(frozen=True)
class LabelledPrompt:
    text: str
    harmful: bool
    category: str
    """The hazard category (a harmful request's, or the one a look-alike imitates), or `ordinary`."""
    source: str
    """suite, ordinary, anchors, broad or hard_negatives."""
    split: Split = "train"


def _resource(*parts: str) -> Path:
    return Path(str(resources.files("alignkit").joinpath("resources", *parts)))


def hard_negatives_path() -> Path:
    return _resource("guard", "hard_negatives.jsonl")


def in_val(text: str, share: float) -> bool:
    """Whether `text` falls in the validation split: a hash of the text, so the split is by prompt and
    stable when other prompts are added."""
    h = int(hashlib.sha256(("val:" + " ".join(text.lower().split())).encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < share


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def held_out_texts() -> set[str]:
    """The test split's requests (the suite's and the packaged everyday requests'), normalised: never
    trained on, nor used to choose a threshold."""
    from alignkit.guard.rails.topic import ordinary_requests
    from alignkit.suites import load_suite, select_split

    suite = [str(p.text) for p in select_split(load_suite("default"), "test") if p.text]
    return {_key(t) for t in suite + ordinary_requests("test")}


def labelled_prompts(categories: Iterable[str] | None = None, val_share: float = 0.15) -> list[LabelledPrompt]:
    """Every labelled train request: the suite's train split, the train half of the packaged everyday
    requests, the everyday anchors, the broad train prompts and the written hard negatives (train only).
    Harmful requests of categories not in `categories` (None: all) are left out: neither targets nor benign.
    Duplicates and any text of the test split are dropped; the rest are split train/val by `in_val`."""
    from alignkit.guard.rails.topic import ordinary_requests
    from alignkit.suites import load_suite, select_split

    rows: list[tuple[str, bool, str, str]] = []
    for p in select_split(load_suite("default"), "train"):
        if p.text and p.extra.get("split") == "train":
            rows.append((str(p.text), p.label == "harmful", str(p.category), "suite"))
    rows += [(t, False, "ordinary", "ordinary") for t in ordinary_requests("train")]
    rows += [
        (str(p.text), False, "ordinary", "anchors") for p in load_suite(str(_resource("anchors", "everyday.jsonl")))
    ]
    for path in sorted(_resource("prompts", "train").glob("*.jsonl")):
        for p in load_suite(str(path)):
            if p.text and p.extra.get("split", "train") == "train":
                rows.append((str(p.text), p.label == "harmful", str(p.category), "broad"))
    for p in load_suite(str(hard_negatives_path())):
        rows.append((str(p.text), False, str(p.category), "hard_negatives"))

    only = set(categories) if categories is not None else None
    held_out = held_out_texts()
    seen: set[str] = set()
    out: list[LabelledPrompt] = []
    for text, harmful, category, source in rows:
        k = _key(text)
        if k in seen or k in held_out or (harmful and only is not None and category not in only):
            continue
        seen.add(k)
        split: Split = "val" if source != "hard_negatives" and in_val(text, val_share) else "train"
        out.append(LabelledPrompt(text, harmful, category, source, split))
    return out


def choose_threshold(harmful: Sequence[float], benign: Sequence[float], max_false_positive: float) -> float:
    """The threshold on P(harmful) (block above it) for validation scores: the lowest that blocks at most
    `max_false_positive` of the `benign` ones, then halfway up to the next `harmful` score, so neither
    side sits on the edge. With no harmful score above, the benign edge itself."""
    allowed = int(max_false_positive * len(benign))
    ranked = sorted(benign, reverse=True)
    floor = ranked[allowed] if allowed < len(ranked) else 0.0
    above = [h for h in harmful if h > floor]
    return (floor + min(above)) / 2 if above else floor


def data_hash(prompts: Sequence[LabelledPrompt]) -> str:
    rows = [[p.text, p.harmful, p.category, p.split] for p in prompts]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


class PromptClassifier:
    """The encoder (MiniLM) with two linear heads on its mean-pooled states: one harm logit, and one logit
    per hazard category. `lower` runs the frozen layers, `upper` the fine-tuned ones and the heads."""

    def __init__(self, encoder: Any, categories: Sequence[str], train_layers: int) -> None:
        import torch

        self.encoder = encoder
        self.categories = list(categories)
        n = int(encoder.config.num_hidden_layers)
        self.split_at = n - max(0, min(train_layers, n))
        """Index of the first fine-tuned layer."""
        width = int(encoder.config.hidden_size)
        self.harm_head = torch.nn.Linear(width, 1)
        self.category_head = torch.nn.Linear(width, max(1, len(self.categories)))

    def modules(self) -> list[torch.nn.Module]:
        return [self.encoder, self.harm_head, self.category_head]

    def trained_layers(self) -> list[torch.nn.Parameter]:
        return [p for layer in self.encoder.encoder.layer[self.split_at :] for p in layer.parameters()]

    def heads(self) -> list[torch.nn.Parameter]:
        return [*self.harm_head.parameters(), *self.category_head.parameters()]

    def to(self, device: torch.device) -> PromptClassifier:
        for m in self.modules():
            m.to(device)
        return self

    def train(self, mode: bool = True) -> None:
        for m in self.modules():
            m.train(mode)

    def _layers(self, hidden: torch.Tensor, mask: torch.Tensor, layers: Iterable[Any]) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        attention = create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden, attention_mask=mask)
        for layer in layers:
            out = layer(hidden, attention_mask=attention)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def _heads(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, D)
        return self.harm_head(pooled).squeeze(-1), self.category_head(pooled)

    def lower(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, D) input of the first fine-tuned layer (only the frozen layers run)."""
        hidden = self.encoder.embeddings(input_ids=ids)
        return self._layers(hidden, mask, self.encoder.encoder.layer[: self.split_at])

    def upper(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) states from `lower` -> harm logits (B,) and category logits (B, C)."""
        return self._heads(self._layers(hidden, mask, self.encoder.encoder.layer[self.split_at :]), mask)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids -> harm logits (B,) and category logits (B, C): the whole encoder in one call."""
        hidden: torch.Tensor = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, D)
        return self._heads(hidden, mask)


@dataclass
class TrainReport:
    """What training measured, saved beside the classifier."""

    threshold: float
    """P(harmful) above which a request is blocked, chosen on the validation split."""
    val_harmful_blocked: int = 0
    val_harmful: int = 0
    val_benign_blocked: int = 0
    val_benign: int = 0
    train_prompts: int = 0
    train_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    """Mean training loss per epoch."""


def _pad(rows: Sequence[torch.Tensor], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, ...) rows, right-padded with zeros to `width`, and the (B, width) mask."""
    import torch

    out = torch.zeros((len(rows), width, *rows[0].shape[1:]), dtype=rows[0].dtype)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return out, mask


class ClassifierModel:
    """A trained prompt classifier: the model, its tokenizer, threshold and categories. Scores on one
    worker thread of its own, whoever calls (torch's thread pool belongs to the calling thread: forward
    passes from changing threads keep several pools spinning against each other)."""

    def __init__(
        self,
        model: PromptClassifier,
        tokenizer: Any,
        settings: ClassifierSettings,
        report: TrainReport,
        data_sha256: str = "",
        cache_size: int = 4096,
    ) -> None:
        from alignkit.device import pick_device

        self.device = pick_device()
        """Where it reads (`alignkit.device.pick_device`: a GPU when there is one), in fp32."""
        self.model = model.to(self.device)
        self.model.train(False)
        self.tokenizer = tokenizer
        self.settings = settings
        self.report = report
        self.data_sha256 = data_sha256
        self.folder: Path | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-classifier")
        self._recent: RecentCache[tuple[float, int]] = RecentCache(cache_size)

    @property
    def threshold(self) -> float:
        return self.report.threshold

    @property
    def categories(self) -> list[str]:
        return self.model.categories

    @classmethod
    def train(
        cls,
        prompts: Sequence[LabelledPrompt],
        settings: ClassifierSettings | None = None,
        encoder: str | Path | None = None,
        log: Callable[[str], None] | None = None,
    ) -> ClassifierModel:
        """Fine-tune on the `train` prompts, choose the threshold on the `val` ones."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        cfg = settings or ClassifierSettings()
        start = time.perf_counter()
        torch.manual_seed(cfg.seed)
        rng = random.Random(cfg.seed)
        if encoder is None:
            from alignkit.embeddings import packaged_encoder

            encoder = packaged_encoder()
        tokenizer = AutoTokenizer.from_pretrained(str(encoder))
        base = AutoModel.from_pretrained(str(encoder), add_pooling_layer=False)
        categories = sorted({p.category for p in prompts if p.harmful})
        model = PromptClassifier(base, categories, cfg.train_layers)
        for p in base.parameters():
            p.requires_grad_(False)
        for p in model.trained_layers():
            p.requires_grad_(True)

        train = [p for p in prompts if p.split == "train"]
        val = [p for p in prompts if p.split == "val"]
        ids = [
            torch.tensor(x)
            for x in tokenizer([p.text for p in train], truncation=True, max_length=cfg.max_tokens)["input_ids"]
        ]
        frozen = cls._lower(model, ids)
        if log is not None:
            took = time.perf_counter() - start
            log(f"prompt classifier: {len(train)} requests through the frozen layers in {took:.0f}s")
        labels = torch.tensor([float(p.harmful) for p in train])
        category = torch.tensor([categories.index(p.category) if p.harmful else -100 for p in train])
        n_harmful = float(labels.sum())
        # Class-balanced: each class carries half the weight, whatever its count.
        weights = torch.where(labels > 0, 0.5 / max(n_harmful, 1.0), 0.5 / max(len(train) - n_harmful, 1.0))

        opt = torch.optim.AdamW(
            [{"params": model.trained_layers(), "lr": cfg.lr}, {"params": model.heads(), "lr": cfg.head_lr}],
            weight_decay=0.01,
        )
        per_epoch = (len(train) + cfg.batch_size - 1) // cfg.batch_size
        total = max(1, cfg.epochs * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)) * max(0.0, 1.0 - s / total)
        )
        lengths = [len(x) for x in ids]
        losses = []
        model.train()
        for epoch in range(cfg.epochs):
            running = 0.0
            for idx in length_batches(lengths, cfg.batch_size, rng):
                hidden, mask = _pad([frozen[i] for i in idx], max(lengths[i] for i in idx))
                harm, by_category = model.upper(hidden, mask)
                w = weights[idx]
                bce = torch.nn.functional.binary_cross_entropy_with_logits(harm, labels[idx], reduction="none")
                loss = (w * bce).sum() / w.sum()
                if (category[idx] >= 0).any():
                    loss = loss + cfg.category_weight * torch.nn.functional.cross_entropy(
                        by_category, category[idx], ignore_index=-100
                    )
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                sched.step()
                running += loss.item() * len(idx)
            losses.append(round(running / max(1, len(train)), 5))
            if log is not None:
                log(f"prompt classifier epoch {epoch + 1}/{cfg.epochs}: loss {losses[-1]:.4f}")
        model.train(False)

        report = TrainReport(threshold=0.5, train_prompts=len(train), losses=losses)
        out = cls(model, tokenizer, cfg, report, data_hash(prompts))
        if val:
            scores = out.harm([p.text for p in val])
            h = [s for s, p in zip(scores, val, strict=True) if p.harmful]
            b = [s for s, p in zip(scores, val, strict=True) if not p.harmful]
            report.threshold = choose_threshold(h, b, cfg.max_val_false_positive)
            report.val_harmful, report.val_benign = len(h), len(b)
            report.val_harmful_blocked = sum(s > report.threshold for s in h)
            report.val_benign_blocked = sum(s > report.threshold for s in b)
        report.train_seconds = round(time.perf_counter() - start, 1)
        return out

    @staticmethod
    def _lower(model: PromptClassifier, ids: Sequence[torch.Tensor], batch_size: int = 64) -> list[torch.Tensor]:
        """Each prompt's (T_i, D) states below the fine-tuned layers, computed once."""
        import torch

        out: list[torch.Tensor] = [torch.zeros(0)] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        model.encoder.eval()
        with torch.inference_mode():
            for lo in range(0, len(order), batch_size):
                idx = order[lo : lo + batch_size]
                batch, mask = _pad([ids[i] for i in idx], max(len(ids[i]) for i in idx))
                hidden = model.lower(batch, mask)
                for row, i in enumerate(idx):
                    out[i] = hidden[row, : len(ids[i])].clone()
        return out

    def _score(self, texts: list[str], batch_size: int = 64) -> list[tuple[float, int]]:
        import torch

        out: list[tuple[float, int]] = []
        with torch.inference_mode():
            for lo in range(0, len(texts), batch_size):
                enc = self.tokenizer(
                    texts[lo : lo + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.settings.max_tokens,
                    return_tensors="pt",
                ).to(self.device)
                harm, by_category = self.model.forward(enc["input_ids"], enc["attention_mask"])
                probs = torch.sigmoid(harm.float()).cpu().tolist()
                cats = by_category.argmax(-1).cpu().tolist()
                out += list(zip(probs, cats, strict=True))
        return out

    def scores(self, texts: Sequence[str]) -> list[tuple[float, str]]:
        """(P(harmful), most likely hazard category) per text."""
        rows = self._worker.submit(self._recent.get, list(texts), self._score).result()
        return [(p, self.categories[c] if self.categories else "") for p, c in rows]

    def harm(self, texts: Sequence[str]) -> list[float]:
        """P(harmful) per text: 1.0 = harmful."""
        return [p for p, _ in self.scores(texts)]

    def save(self, folder: str | Path) -> Path:
        import torch

        from alignkit.device import on_cpu
        from alignkit.models import atomic_folder

        dest = Path(folder)
        with atomic_folder(dest) as tmp:
            self.model.encoder.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            heads = {f"harm.{k}": v for k, v in self.model.harm_head.state_dict().items()}
            heads.update({f"category.{k}": v for k, v in self.model.category_head.state_dict().items()})
            torch.save(on_cpu(heads), tmp / "heads.pt")
            meta = {
                "settings": asdict(self.settings),
                "categories": self.categories,
                "report": asdict(self.report),
                "data_sha256": self.data_sha256,
            }
            (tmp / "classifier.json").write_text(json.dumps(meta, indent=1) + "\n")
        self.folder = dest
        return dest

    @classmethod
    def load(cls, folder: str | Path) -> ClassifierModel:
        import torch
        from transformers import AutoModel, AutoTokenizer

        meta = json.loads((Path(folder) / "classifier.json").read_text())
        settings = ClassifierSettings(**meta["settings"])
        model = PromptClassifier(
            AutoModel.from_pretrained(str(folder), add_pooling_layer=False), meta["categories"], settings.train_layers
        )
        heads = torch.load(Path(folder) / "heads.pt", map_location="cpu", weights_only=True)
        model.harm_head.load_state_dict({k[5:]: v for k, v in heads.items() if k.startswith("harm.")})
        model.category_head.load_state_dict({k[9:]: v for k, v in heads.items() if k.startswith("category.")})
        out = cls(model, AutoTokenizer.from_pretrained(str(folder)), settings, TrainReport(**meta["report"]),
                  str(meta["data_sha256"]))  # fmt: skip
        out.folder = Path(folder)
        return out


def cache_folder(prompts: Sequence[LabelledPrompt], settings: ClassifierSettings, encoder: str) -> Path:
    """$ALIGNKIT_HOME/guard/classifier-<hash of data, settings and encoder>."""
    from alignkit.models import home

    key = json.dumps([asdict(settings), encoder, data_hash(prompts), "classifier-v1"], sort_keys=True)
    return home() / "guard" / f"classifier-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def trained_classifier(
    categories: Iterable[str] | None = None,
    settings: ClassifierSettings | None = None,
    encoder: str | None = None,
    log: Callable[[str], None] | None = None,
) -> ClassifierModel:
    """The classifier for `categories` (None: every hazard category in the data), trained once on the
    built-in labelled train prompts: later calls with the same data and settings load it from the cache."""
    cfg = settings or ClassifierSettings()
    prompts = labelled_prompts(categories, cfg.val_share)
    if encoder is None:
        from alignkit.embeddings import packaged_encoder

        encoder = str(packaged_encoder())
    folder = cache_folder(prompts, cfg, Path(encoder).name)
    if (folder / "classifier.json").exists():
        return ClassifierModel.load(folder)
    if log is not None:
        log(f"training the prompt classifier on {len(prompts)} labelled requests (once; cached in {folder})")
    model = ClassifierModel.train(prompts, cfg, encoder, log=log)
    model.save(folder)
    return model


class ClassifierRail:
    """Blocks requests a fine-tuned MiniLM classifier scores as harmful (P(harmful) over a threshold
    chosen on a validation split of the labelled train prompts); requests just under the threshold pass
    but are marked suspected for the output rails. Reads every readable view, so decoded and de-spaced
    text is screened too."""

    name = "classifier"
    uses_model = True

    def __init__(
        self,
        model: ClassifierModel,
        *,
        side: Side = "input",
        threshold: float | None = None,
        categories: Sequence[str] | None = None,
        action: Literal["block", "flag"] = "block",
        suspect_margin: float = 0.1,
    ) -> None:
        self.side: Side = side
        self.model = model
        self.threshold = model.threshold if threshold is None else float(threshold)
        self.only = set(categories) if categories is not None else None
        self.action = action
        self.suspect_margin = suspect_margin

    def check(self, text: str, context: RailContext) -> Decision:
        texts = readable_texts(context)
        if not texts:
            return allow(self.name)
        harm, category = max(self.model.scores(texts), key=lambda s: s[0])
        why = f"classified {category}"
        return over_threshold(self, harm - self.threshold, category, why, f"{why}, harm {harm:.2f}", f"near {category}")
