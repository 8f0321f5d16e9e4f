"""How well the model-free rails see through obfuscation, on the labelled evasion set.

Each case is one message: personal data or a credential (`pii`), a prompt injection (`injection`), or a
benign text that looks like one (`benign`), written plainly or disguised (look-alike letters, invisible
characters, spacing, base64, leetspeak, a mix). The PII and secrets rails are scored on `pii` cases, the
injection rail on `injection` cases; both families' false positives are counted on the benign texts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from alignkit.errors import DataError
from alignkit.guard.base import Rail, RailContext
from alignkit.guard.normalize import clean
from alignkit.guard.rails.injection import InjectionRail
from alignkit.guard.rails.pii import PIIRail
from alignkit.guard.rails.secrets import SecretsRail


def evasion_path() -> Path:
    return Path(str(resources.files("alignkit") / "resources" / "guard" / "evasion.jsonl"))


@dataclass
class EvasionCase:
    id: str
    text: str
    kind: str
    obfuscation: str
    expect: str


def load_evasion(path: str | Path | None = None) -> list[EvasionCase]:
    p = Path(path) if path is not None else evasion_path()
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out.append(EvasionCase(rec["id"], rec["text"], rec["kind"], rec["obfuscation"], rec["expect"]))
        except (json.JSONDecodeError, KeyError) as e:
            raise DataError(p, n, f"not an evasion case ({e})") from None
    return out


@dataclass
class Rate:
    hits: int = 0
    total: int = 0

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def add(self, hit: bool) -> None:
        self.hits += hit
        self.total += 1


@dataclass
class EvasionResult:
    caught: dict[str, Rate] = field(default_factory=lambda: defaultdict(Rate))
    """Per kind (pii, injection): share of `expect: flag` cases flagged (blocked or redacted)."""
    caught_obfuscated: dict[str, Rate] = field(default_factory=lambda: defaultdict(Rate))
    """The same, over the obfuscated cases only (obfuscation other than none)."""
    by_obfuscation: dict[str, Rate] = field(default_factory=lambda: defaultdict(Rate))
    """Per `kind/obfuscation`."""
    false_positive: dict[str, Rate] = field(default_factory=lambda: defaultdict(Rate))
    """Per rail family: share of benign texts flagged."""
    missed: list[str] = field(default_factory=list)
    """Ids of cases the rails got wrong."""

    def as_dict(self) -> dict[str, Any]:
        def rates(d: dict[str, Rate]) -> dict[str, dict[str, float | int]]:
            return {k: {"rate": round(v.rate, 4), "hits": v.hits, "total": v.total} for k, v in sorted(d.items())}

        return {
            "caught": rates(self.caught),
            "caught_obfuscated": rates(self.caught_obfuscated),
            "by_obfuscation": rates(self.by_obfuscation),
            "false_positive": rates(self.false_positive),
            "missed": self.missed,
        }


def _flags(rails: list[Rail], text: str) -> bool:
    c = clean(text)
    ctx = RailContext.of(c, raw=text)
    return any(not r.check(c, ctx).allowed for r in rails)


def measure_evasion(cases: list[EvasionCase] | None = None) -> EvasionResult:
    cases = cases if cases is not None else load_evasion()
    families: dict[str, list[Rail]] = {"pii": [PIIRail(), SecretsRail()], "injection": [InjectionRail()]}
    result = EvasionResult()
    for case in cases:
        if case.kind == "benign":
            for family, rails in families.items():
                flagged = _flags(rails, case.text)
                result.false_positive[family].add(flagged)
                if flagged and case.expect == "allow":
                    result.missed.append(f"{case.id} ({family} false positive)")
            continue
        if case.kind not in families or case.expect != "flag":
            continue
        flagged = _flags(families[case.kind], case.text)
        result.caught[case.kind].add(flagged)
        result.by_obfuscation[f"{case.kind}/{case.obfuscation}"].add(flagged)
        if case.obfuscation != "none":
            result.caught_obfuscated[case.kind].add(flagged)
        if not flagged:
            result.missed.append(case.id)
    return result
