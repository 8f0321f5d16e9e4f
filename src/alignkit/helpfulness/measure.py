"""`measure_helpfulness`: what alignment must not cost, measured on the helpfulness suite.

Greedy replies to every item of a split; checkable items scored by rule or by running the code,
open items by the mean log-likelihood per token of their written reference (a model that still
finds good answers likely is still able to give them); every reply checked for degeneration and
evasion. With `out_dir`, replies go into that run folder's SQLite store as they are made, so a killed
measurement resumes without generating twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignkit.backends.base import Backend, ScoringBackend
from alignkit.helpfulness.code import score_code
from alignkit.helpfulness.degeneration import DEFAULT_THRESHOLDS, DegenerationThresholds, ReplyCheck, check_reply
from alignkit.helpfulness.items import CHECKABLE_KINDS, HelpfulnessItem, HelpSplit, Kind, load_items
from alignkit.helpfulness.rules import score_rule
from alignkit.metrics import Rate
from alignkit.store import Store
from alignkit.types import Completion, Conversation, GenerationParams

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total)."""


def t_quantile(df: int, z: float = 1.959964) -> float:
    """Student's t quantile for the normal quantile z, by the Cornish-Fisher expansion (Abramowitz and
    Stegun 26.7.5); within 0.1% of the exact value for df >= 5."""
    v = float(df)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


@dataclass
class Mean:
    """A mean with its 95% t interval."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Mean:
        n = len(values)
        if n == 0:
            return cls(math.nan, math.nan, math.nan, 0)
        m = statistics.fmean(values)
        if n == 1:
            return cls(m, -math.inf, math.inf, 1)
        half = t_quantile(n - 1) * statistics.stdev(values) / math.sqrt(n)
        return cls(m, m - half, m + half, n)


@dataclass
class ItemScore:
    """One item's reply and what it earned."""

    id: str
    kind: Kind
    reply: str | None
    """None when the backend failed on it (`error` says why); such items count in no rate."""
    correct: bool | None = None
    """Checkable items: right by rule or by running the code."""
    why: str = ""
    reference_loglik: float | None = None
    """Open items: mean log-probability per token of the reference answer (nats)."""
    nll: float | None = None
    """Mean negative log-likelihood per token of the reply under the base model (nats)."""
    repeated_3gram_fraction: float | None = None
    degenerate: bool | None = None
    evasive: bool | None = None
    reasons: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class HelpfulnessResult:
    model: str
    split: str
    config: dict[str, Any]
    checkable_accuracy: Rate
    """Checkable items answered right (all kinds but open)."""
    by_kind: dict[str, Rate]
    """Accuracy per checkable kind."""
    reference_loglik: Mean | None
    """Mean over open items of the reference's mean log-probability per token (nats; higher = the
    model finds good answers likelier); None when no scoring model was available."""
    degenerate_rate: Rate
    """Replies that are empty, looping or (with a base model) garbled, over all items."""
    evasive_or_degenerate_rate: Rate
    """Replies that are degenerate or evasive (refusal or deflection), over all items."""
    errors: int
    """Items the backend failed on; left out of every rate."""
    seconds: float
    items: list[ItemScore] = field(default_factory=list)

    def as_dict(self, items: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "split": self.split,
            "config": self.config,
            "checkable_accuracy": asdict(self.checkable_accuracy),
            "by_kind": {k: asdict(r) for k, r in self.by_kind.items()},
            "reference_loglik": None if self.reference_loglik is None else asdict(self.reference_loglik),
            "degenerate_rate": asdict(self.degenerate_rate),
            "evasive_or_degenerate_rate": asdict(self.evasive_or_degenerate_rate),
            "errors": self.errors,
            "seconds": self.seconds,
        }
        if items:
            out["items"] = [asdict(i) for i in self.items]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HelpfulnessResult:
        ref = d.get("reference_loglik")
        return cls(
            model=d["model"],
            split=d["split"],
            config=d.get("config", {}),
            checkable_accuracy=Rate(**d["checkable_accuracy"]),
            by_kind={k: Rate(**r) for k, r in d["by_kind"].items()},
            reference_loglik=None if ref is None else Mean(**ref),
            degenerate_rate=Rate(**d["degenerate_rate"]),
            evasive_or_degenerate_rate=Rate(**d["evasive_or_degenerate_rate"]),
            errors=int(d.get("errors", 0)),
            seconds=float(d.get("seconds", 0.0)),
            items=[ItemScore(**i) for i in d.get("items", [])],
        )


def _config_key(max_new_tokens: int, system: str | None) -> str:
    body = json.dumps({"suite": "helpfulness", "max_new_tokens": max_new_tokens, "system": system}, sort_keys=True)
    return "helpfulness-" + hashlib.sha1(body.encode()).hexdigest()[:12]


def _generate(
    backend: Backend,
    items: list[HelpfulnessItem],
    params: GenerationParams,
    system: str | None,
    store: Store | None,
    key: str,
    chunk: int,
    progress: Progress | None,
) -> dict[str, Completion]:
    replies: dict[str, Completion] = {}
    if store is not None:
        wanted = {i.id for i in items}
        rows = store.db.execute(
            "SELECT prompt_id, completion, finish_reason, completion_tokens FROM generations "
            "WHERE model=? AND config=? AND sample=0",
            (backend.name, key),
        )
        for pid, text, reason, tokens in rows:
            if pid in wanted:
                replies[pid] = Completion(text=text, finish_reason=reason or "stop", completion_tokens=tokens or 0)
    todo = [i for i in items if i.id not in replies]
    total = len(items)
    if progress is not None:
        progress("helpfulness:generate", total - len(todo), total)
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        outs = backend.generate([i.conversation(system) for i in part], params)
        for item, out in zip(part, outs, strict=True):
            replies[item.id] = out
        if store is not None:
            store.add_generations(
                backend.name,
                key,
                [
                    {
                        "prompt_id": item.id,
                        "sample": 0,
                        "label": "benign",
                        "category": item.kind,
                        "prompt": item.prompt,
                        "completion": out.text,
                        "finish_reason": out.finish_reason,
                        "completion_tokens": out.completion_tokens,
                    }
                    for item, out in zip(part, outs, strict=True)
                    if out.ok
                ],
            )
        if progress is not None:
            progress("helpfulness:generate", total - len(todo) + start + len(part), total)
    return replies


def mean_logprobs(
    scorer: ScoringBackend, conversations: Sequence[Conversation], texts: Sequence[str]
) -> list[float | None]:
    """Mean log-probability per token of each text as the assistant's reply to its conversation
    (nats); None for an empty text. Also what posture needs for the `garbled` check of any reply:
    nll = -mean_logprobs(base, [prompt conversation], [reply])[0]."""
    idx = [k for k, t in enumerate(texts) if t.strip()]
    out: list[float | None] = [None] * len(texts)
    if not idx:
        return out
    scored = scorer.score([conversations[k] for k in idx], [texts[k] for k in idx])
    for k, s in zip(idx, scored, strict=True):
        out[k] = s.logprob / s.num_tokens if s.num_tokens else None
    return out


def check_replies(
    conversations: Sequence[Conversation],
    replies: Sequence[str],
    base_model: str | ScoringBackend | None = None,
    thresholds: DegenerationThresholds = DEFAULT_THRESHOLDS,
) -> list[ReplyCheck]:
    """`check_reply` for many replies (any prompts: posture's benign ones, say), with each reply's
    perplexity under `base_model` when one is given."""
    base = _as_scorer(base_model)
    nlls: list[float | None] = [None] * len(replies)
    if base is not None:
        nlls = [None if lp is None else -lp for lp in mean_logprobs(base, conversations, replies)]
    return [check_reply(r, nll, thresholds) for r, nll in zip(replies, nlls, strict=True)]


def evasive_or_degenerate_rate(checks: Sequence[ReplyCheck]) -> Rate:
    """Share of replies that are evasive or degenerate, with its Wilson interval."""
    return Rate.of(sum(c.evasive_or_degenerate for c in checks), len(checks))


def _as_scorer(model: str | ScoringBackend | None) -> ScoringBackend | None:
    if model is None or not isinstance(model, str):
        return model
    from alignkit.backends.hf import HFBackend

    return HFBackend(model, batch_size=8)


def measure_helpfulness(
    backend: Backend,
    *,
    split: HelpSplit = "test",
    max_new_tokens: int = 96,
    base_model: str | ScoringBackend | None = None,
    scorer: ScoringBackend | None = None,
    kinds: tuple[Kind, ...] | None = None,
    limit: int | None = None,
    system: str | None = None,
    out_dir: str | Path | None = None,
    thresholds: DegenerationThresholds = DEFAULT_THRESHOLDS,
    code_timeout: float = 5.0,
    chunk: int = 32,
    progress: Progress | None = None,
) -> HelpfulnessResult:
    """Helpfulness of `backend` on one split of the suite, greedy.

    - `base_model`: a model path or registry name, or a loaded scoring backend, under which each reply's
      perplexity is taken (the `garbled` check); None skips it.
    - `scorer`: the model whose log-likelihood of the open items' references is reported; by default
      `backend` itself when it can score (HFBackend), else no `reference_loglik`.
    - `limit`: only the first N items of each kind (smoke runs).
    - `out_dir`: a run folder whose `alignkit.sqlite` keeps the replies, so a rerun resumes.
    """
    import time

    t0 = time.perf_counter()
    items = load_items(split, kinds)
    if limit is not None:
        counts: dict[str, int] = {}
        kept = []
        for item in items:
            counts[item.kind] = counts.get(item.kind, 0) + 1
            if counts[item.kind] <= limit:
                kept.append(item)
        items = kept
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)
    key = _config_key(max_new_tokens, system)
    store = Store(Path(out_dir) / "alignkit.sqlite") if out_dir is not None else None
    try:
        if store is not None:
            store.save_config(key, json.dumps({"max_new_tokens": max_new_tokens, "system": system}, sort_keys=True))
        replies = _generate(backend, items, params, system, store, key, chunk, progress)
    finally:
        if store is not None:
            store.close()

    scores: list[ItemScore] = []
    for n, item in enumerate(items):
        out = replies[item.id]
        score = ItemScore(item.id, item.kind, out.text if out.ok else None, error=out.error)
        if out.ok and item.kind == "code":
            run = score_code(item, out.text, timeout=code_timeout)
            score.correct, score.why = run.passed, run.reason
        elif out.ok and item.checkable:
            score.correct = score_rule(item, out.text)
        scores.append(score)
        if progress is not None:
            progress("helpfulness:score", n + 1, len(items))

    ok = [(item, s) for item, s in zip(items, scores, strict=True) if s.reply is not None]
    base = _as_scorer(base_model)
    if base is not None and ok:
        nlls = mean_logprobs(base, [i.conversation(system) for i, _ in ok], [s.reply or "" for _, s in ok])
        for (_, s), lp in zip(ok, nlls, strict=True):
            s.nll = None if lp is None else -lp
    for _, s in ok:
        check = check_reply(s.reply or "", s.nll, thresholds)
        s.repeated_3gram_fraction, s.degenerate, s.evasive = (
            check.repeated_3gram_fraction,
            check.degenerate,
            check.evasive,
        )
        s.reasons = check.reasons

    ref_scorer = scorer if scorer is not None else (backend if isinstance(backend, ScoringBackend) else None)
    open_items = [(item, s) for item, s in zip(items, scores, strict=True) if item.kind == "open"]
    reference: Mean | None = None
    if ref_scorer is not None and open_items:
        convs = [i.conversation(system) for i, _ in open_items]
        lps = mean_logprobs(ref_scorer, convs, [i.reference or "" for i, _ in open_items])
        for (_, s), lp in zip(open_items, lps, strict=True):
            s.reference_loglik = lp
        reference = Mean.of([lp for lp in lps if lp is not None])
        if progress is not None:
            progress("helpfulness:reference", len(open_items), len(open_items))

    checked = [s for s in scores if s.correct is not None]
    by_kind: dict[str, Rate] = {
        kind: Rate.of(sum(bool(s.correct) for s in checked if s.kind == kind), sum(s.kind == kind for s in checked))
        for kind in CHECKABLE_KINDS
        if any(s.kind == kind for s in checked)
    }
    replied = [s for s in scores if s.reply is not None]
    return HelpfulnessResult(
        model=backend.name,
        split=split,
        config={
            "max_new_tokens": max_new_tokens,
            "system": system,
            "limit": limit,
            "kinds": list(kinds) if kinds else None,
            "base_model": base_model if isinstance(base_model, str) or base_model is None else base_model.name,
            "scorer": None if ref_scorer is None else ref_scorer.name,
            "thresholds": asdict(thresholds),
        },
        checkable_accuracy=Rate.of(sum(bool(s.correct) for s in checked), len(checked)),
        by_kind=by_kind,
        reference_loglik=reference,
        degenerate_rate=Rate.of(sum(bool(s.degenerate) for s in replied), len(replied)),
        evasive_or_degenerate_rate=Rate.of(sum(bool(s.degenerate or s.evasive) for s in replied), len(replied)),
        errors=len(scores) - len(replied),
        seconds=time.perf_counter() - t0,
        items=scores,
    )
