"""The end-to-end suite's report: each case's result, the success per kind and overall, and the report as text."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field


class CaseResult(BaseModel):
    """The outcome of one case: whether it passed, and each failed check's reason."""

    id: str
    kind: str
    request: str
    passed: bool
    failures: list[str] = Field(default_factory=list)
    answer: str = ""
    artifacts: list[str] = Field(default_factory=list, description="'path (media type)' of the files produced")
    transcript: str | None = None
    tasks: list[str] = Field(default_factory=list, description="'task: status (model)' of the last turn")
    llm_calls: dict[str, int] = Field(default_factory=dict, description="controller LLM calls per stage, all turns")
    generated_tokens: dict[str, int] = Field(
        default_factory=dict, description="tokens the controller LLM generated per stage, all turns"
    )
    seconds: float = 0.0
    error: str | None = None


class KindScore(BaseModel):
    kind: str
    passed: int
    total: int
    rate: float


class E2EReport(BaseModel):
    """Success per kind and overall, with every case's outcome."""

    passed: int
    total: int
    rate: float
    kinds: list[KindScore]
    cases: list[CaseResult]
    llm_calls: dict[str, int] = Field(default_factory=dict, description="controller LLM calls per stage, all cases")
    llm_calls_per_case: float = 0.0
    generated_tokens: dict[str, int] = Field(
        default_factory=dict, description="tokens the controller LLM generated per stage, all cases"
    )
    seconds_per_case: float = 0.0
    seconds: float = 0.0
    llm: str = ""
    selection: str = ""


def score(results: Sequence[CaseResult], *, seconds: float = 0.0, llm: str = "", selection: str = "") -> E2EReport:
    kinds = []
    for kind in dict.fromkeys(r.kind for r in results):
        group = [r for r in results if r.kind == kind]
        passed = sum(r.passed for r in group)
        kinds.append(KindScore(kind=kind, passed=passed, total=len(group), rate=round(passed / len(group), 4)))
    calls: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    for r in results:
        calls.update(r.llm_calls)
        tokens.update(r.generated_tokens)
    total = len(results)
    passed = sum(r.passed for r in results)
    return E2EReport(
        passed=passed,
        total=total,
        rate=round(passed / total, 4) if total else 0.0,
        kinds=kinds,
        cases=list(results),
        llm_calls=dict(calls),
        llm_calls_per_case=round(sum(calls.values()) / total, 2) if total else 0.0,
        generated_tokens=dict(tokens),
        seconds_per_case=round(sum(r.seconds for r in results) / total, 2) if total else 0.0,
        seconds=round(seconds, 1),
        llm=llm,
        selection=selection,
    )


def format_case(result: CaseResult) -> str:
    calls = ", ".join(f"{stage} {n}" for stage, n in result.llm_calls.items()) or "none"
    status = "pass" if result.passed else "FAIL"
    lines = [f"{status}  {result.id}  {result.seconds:.1f} s  LLM calls: {calls}"]
    return "\n".join(lines + [f"      {reason}" for reason in result.failures])


def format_report(report: E2EReport) -> str:
    """The report as plain text: success per kind and overall, the failures with reasons, calls and time."""
    width = max([len(k.kind) for k in report.kinds] + [7])
    lines = [f"{'kind':<{width}}  passed  rate"]
    for k in report.kinds:
        lines.append(f"{k.kind:<{width}}  {k.passed:>2}/{k.total:<3}  {k.rate:.0%}")
    lines.append(f"{'overall':<{width}}  {report.passed:>2}/{report.total:<3}  {report.rate:.0%}")
    failed = [r for r in report.cases if not r.passed]
    if failed:
        lines += ["", "failures:"]
        for r in failed:
            lines.append(f"- {r.id} ({r.kind}): {r.request}")
            lines += [f"    {reason}" for reason in r.failures]
            if r.answer:
                lines.append(f"    answer: {r.answer[:300]!r}")
    calls = ", ".join(f"{stage} {n}" for stage, n in report.llm_calls.items()) or "none"
    tokens = ", ".join(f"{stage} {n}" for stage, n in report.generated_tokens.items()) or "none"
    lines += [
        "",
        f"LLM calls: {calls} ({report.llm_calls_per_case:.1f} a request); generated tokens: {tokens}; "
        f"{report.seconds_per_case:.1f} s a request, {report.seconds:.0f} s in all; "
        f"LLM {report.llm}, selection {report.selection}",
    ]
    return "\n".join(lines)
