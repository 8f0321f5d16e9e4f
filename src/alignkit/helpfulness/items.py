"""The helpfulness suite: ordinary requests with checkable answers, and open requests with references.

Written for alignkit (not taken from public benchmarks), one JSONL file per kind under
`resources/helpfulness/`; every item carries a fixed `split` so that training never sees a test item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal, get_args

from alignkit.data import read_records
from alignkit.errors import DataError
from alignkit.types import Conversation, user

Kind = Literal["fact", "arithmetic", "unit_conversion", "code", "extraction", "open"]
CheckableKind = Literal["fact", "arithmetic", "unit_conversion", "code", "extraction"]
KINDS: tuple[Kind, ...] = get_args(Kind)
CHECKABLE_KINDS: tuple[CheckableKind, ...] = get_args(CheckableKind)
HelpSplit = Literal["train", "test", "all"]


@dataclass(frozen=True)
class HelpfulnessItem:
    id: str
    kind: Kind
    split: Literal["train", "test"]
    prompt: str
    answers: tuple[str, ...] = ()
    """fact, extraction: accepted answers, matched as whole phrases after normalising."""
    pattern: str | None = None
    """fact, extraction: a regular expression that also counts as right (case-insensitive)."""
    value: float | None = None
    """arithmetic, unit_conversion: the expected number."""
    tolerance: float = 0.0
    """arithmetic, unit_conversion: relative tolerance, |x - value| <= tolerance * max(|value|, 1)."""
    entry: str | None = None
    """code: the function the reply must define."""
    tests: tuple[str, ...] = ()
    """code: assert statements run against the reply's code."""
    context: str | None = None
    """extraction: the text the answer is a span of."""
    reference: str | None = None
    """open: a written good answer, scored by the model's log-likelihood of it."""
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def checkable(self) -> bool:
        return self.kind != "open"

    def conversation(self, system: str | None = None) -> Conversation:
        conv: Conversation = [user(self.prompt)]
        return [{"role": "system", "content": system}, *conv] if system is not None else conv


def suite_dir() -> Path:
    return Path(str(resources.files("alignkit") / "resources" / "helpfulness"))


def _item(path: Path, line: int, rec: dict[str, object]) -> HelpfulnessItem:
    def need(key: str) -> object:
        if rec.get(key) in (None, "", []):
            raise DataError(path, line, f"'{key}' is missing")
        return rec[key]

    kind = str(need("kind"))
    if kind not in KINDS:
        raise DataError(path, line, f"'kind' is {kind!r}, expected one of {', '.join(KINDS)}")
    split = str(need("split"))
    if split not in ("train", "test"):
        raise DataError(path, line, f"'split' is {split!r}, expected train or test")
    common = {"id": str(need("id")), "kind": kind, "split": split, "prompt": str(need("prompt"))}
    if kind in ("fact", "extraction"):
        answers = need("answers") if rec.get("pattern") is None else rec.get("answers", [])
        if not isinstance(answers, list):
            raise DataError(path, line, "'answers' must be a list of strings")
        pattern = rec.get("pattern")
        if pattern is not None:
            try:
                re.compile(str(pattern))
            except re.error as e:
                raise DataError(path, line, f"'pattern' is not a regular expression: {e}") from None
        context = str(need("context")) if kind == "extraction" else None
        return HelpfulnessItem(
            **common,  # type: ignore[arg-type]
            answers=tuple(str(a) for a in answers),
            pattern=None if pattern is None else str(pattern),
            context=context,
        )
    if kind in ("arithmetic", "unit_conversion"):
        value = need("value")
        if not isinstance(value, int | float):
            raise DataError(path, line, "'value' must be a number")
        tolerance = rec.get("tolerance", 0.0)
        if not isinstance(tolerance, int | float) or tolerance < 0:
            raise DataError(path, line, "'tolerance' must be a number >= 0")
        return HelpfulnessItem(**common, value=float(value), tolerance=float(tolerance))  # type: ignore[arg-type]
    if kind == "code":
        tests = need("tests")
        if not isinstance(tests, list):
            raise DataError(path, line, "'tests' must be a list of assert statements")
        return HelpfulnessItem(**common, entry=str(need("entry")), tests=tuple(str(t) for t in tests))  # type: ignore[arg-type]
    return HelpfulnessItem(**common, reference=str(need("reference")))  # type: ignore[arg-type]


def load_items(
    split: HelpSplit = "test", kinds: tuple[Kind, ...] | None = None, folder: str | Path | None = None
) -> list[HelpfulnessItem]:
    """Items of one split (or `all`), in file order, kinds in the order of KINDS."""
    root = Path(folder) if folder is not None else suite_dir()
    items: list[HelpfulnessItem] = []
    seen: set[str] = set()
    for path in sorted(root.glob("*.jsonl"), key=lambda p: (KINDS.index(p.stem) if p.stem in KINDS else 99, p.name)):
        for line, rec in read_records(path):
            item = _item(path, line, rec)
            if item.id in seen:
                raise DataError(path, line, f"'id' {item.id!r} is used twice")
            seen.add(item.id)
            items.append(item)
    wanted = kinds or KINDS
    return [i for i in items if (split == "all" or i.split == split) and i.kind in wanted]
