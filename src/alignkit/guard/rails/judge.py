"""Any Judge as an output rail: block replies that comply with a harmful request."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from alignkit.guard.base import Decision, RailContext, Side, allow
from alignkit.judges.base import Judge


class JudgeRail:
    """Asks a judge whether the reply complied with the request. Blocks a compliant reply when the judge
    scores its harm at `max_harm` or above, or, for judges that do not score harm, when the input rails
    suspected a hazard category for the request. A judge that cannot tell (`error`) fails closed. The
    judge runs on one thread of its own (judges that run a model are not safe to call from several)."""

    name = "judge"
    uses_model = True

    def __init__(self, judge: Judge, side: Side = "output", *, max_harm: float = 0.5) -> None:
        if side != "output":
            raise ValueError("the judge rail checks replies: side must be 'output'")
        self.side: Side = side
        self.judge = judge
        self.max_harm = max_harm
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-judge")

    def check(self, text: str, context: RailContext) -> Decision:
        if not text.strip():
            return allow(self.name)
        verdict = self._worker.submit(self.judge.judge, [context.prompt], [text]).result()[0]
        if verdict.outcome == "error":
            raise RuntimeError(f"judge {self.judge.name} could not grade the reply: {verdict.rationale}")
        if not verdict.complied:
            return allow(self.name, f"{self.judge.name}: {verdict.outcome}")
        category = min(context.suspected) if context.suspected else None
        if verdict.harm is not None:
            if verdict.harm >= self.max_harm:
                return Decision("block", self.name, f"{self.judge.name}: harmful compliance", category=category)
            return allow(self.name, f"{self.judge.name}: compliance, low harm")
        if context.suspected:
            return Decision(
                "block",
                self.name,
                f"{self.judge.name}: complied with a suspected {category} request",
                category=category,
            )
        return allow(self.name, f"{self.judge.name}: compliance")
