"""End-to-end success: run user requests through the whole pipeline and check each answer as a person would.

This module runs the suite; the cases are `e2e_cases.py`, their inputs `e2e_inputs.py`, the checks of an answer
`e2e_checks.py`, the results and the report `e2e_report.py`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HuggingGPTError
from ..types import Answer
from .e2e_checks import (
    Case,
    Transcriber,
    check_artifacts,
    check_case,
    check_claims,
    check_files,
    check_forbidden,
    check_groups,
    check_selection_calls,
    check_unservable,
    contains,
    direct_answer,
    file_names,
    normalise,
    produced_files,
)
from .e2e_report import CaseResult, E2EReport, KindScore, format_case, format_report, score

if TYPE_CHECKING:
    from ..config import Settings
    from ..pipeline import HuggingGPT

__all__ = [  # with the checks' and the report's names, which callers import from here too
    "Case",
    "CaseResult",
    "E2EReport",
    "KindScore",
    "Transcriber",
    "check_artifacts",
    "check_case",
    "check_claims",
    "check_files",
    "check_forbidden",
    "check_groups",
    "check_selection_calls",
    "check_unservable",
    "contains",
    "default_cases",
    "direct_answer",
    "file_names",
    "format_case",
    "format_report",
    "load_results",
    "main",
    "normalise",
    "produced_files",
    "run_case",
    "run_from_settings",
    "run_suite",
    "score",
    "select_cases",
    "whisper_transcriber",
]


def default_cases() -> list[Case]:
    from .e2e_cases import CASES

    return list(CASES)


def select_cases(
    cases: Sequence[Case], *, only: str | None = None, matching: str | None = None, limit: int | None = None
) -> list[Case]:
    """The cases of one kind (`only`), whose id or request contains a substring, at most `limit` of them."""
    chosen = list(cases)
    if only is not None:
        kinds = sorted({c.kind for c in cases})
        if only.lower() not in {k.lower() for k in kinds}:
            raise HuggingGPTError(f"no case of kind {only!r}; kinds are: {', '.join(kinds)}")
        chosen = [c for c in chosen if c.kind.lower() == only.lower()]
    if matching is not None:
        needle = matching.lower()
        chosen = [c for c in chosen if needle in c.id.lower() or needle in c.request.lower()]
    return chosen[:limit] if limit is not None else chosen


def whisper_transcriber(gpt: HuggingGPT, scratch: Path) -> Transcriber | None:
    """Transcribe with the embedded Whisper expert of the pipeline's registry, or None when it has none."""
    from ..experts.protocol import ExpertContext
    from ..experts.speech import WhisperExpert
    from ..workspace import Workspace

    whisper = next((e for e in gpt.experts.experts() if isinstance(e, WhisperExpert) and e.card.available), None)
    if whisper is None:
        return None

    async def transcribe(path: Path) -> str:
        workspace = Workspace(scratch, [path.parent])
        outputs = await whisper.run({"audio": str(path)}, ExpertContext(workspace, 0, "automatic-speech-recognition"))
        text = outputs.get("text")
        return text if isinstance(text, str) else ""

    return transcribe


async def run_case(
    gpt: HuggingGPT,
    case: Case,
    inputs_dir: Path,
    output_dir: Path,
    *,
    transcribe: Transcriber | None = None,
) -> CaseResult:
    """Run a case's turns in one conversation and check the last answer. A run that raises fails the case."""
    from ..pipeline import Conversation

    conversation = Conversation()
    answers: list[Answer] = []
    start = time.perf_counter()
    try:
        for request in [*case.before, case.request]:
            answers.append(
                await gpt.run(request, inputs=[inputs_dir], output_dir=output_dir, conversation=conversation)
            )
    except Exception as exc:  # the pipeline must not raise on a user's request: that is a failure of the case
        return CaseResult(
            id=case.id,
            kind=case.kind,
            request=case.request,
            passed=False,
            failures=[f"the run raised {type(exc).__name__}: {exc}"],
            llm_calls=_stages(answers),
            generated_tokens=_tokens(answers),
            seconds=round(time.perf_counter() - start, 4),
        )
    seconds = time.perf_counter() - start
    inputs = sorted(p.name for p in inputs_dir.iterdir())
    failures, transcript = await check_case(case, answers, inputs, inputs_dir=inputs_dir, transcribe=transcribe)
    answer = answers[-1]
    return CaseResult(
        id=case.id,
        kind=case.kind,
        request=case.request,
        passed=not failures,
        failures=failures,
        answer=answer.text,
        artifacts=[f"{path} ({media})" for path, media, _ in produced_files(answer, inputs_dir)],
        transcript=transcript,
        tasks=[f"{r.task}: {r.status} ({r.model_id or 'no model'})" for r in answer.results],
        llm_calls=_stages(answers),
        generated_tokens=_tokens(answers),
        seconds=round(seconds, 4),  # 4 places: a scripted case can take under 5 ms
        error=answer.error,
    )


def _stages(answers: Sequence[Answer]) -> dict[str, int]:
    return dict(Counter(call.stage for a in answers for call in a.llm_usage))


def _tokens(answers: Sequence[Answer]) -> dict[str, int]:
    tokens: Counter[str] = Counter()
    for call in (call for a in answers for call in a.llm_usage):
        tokens[call.stage] += call.completion_tokens
    return dict(tokens)


async def run_suite(
    gpt: HuggingGPT,
    cases: Sequence[Case],
    inputs_dir: Path,
    output_dir: Path,
    *,
    transcribe: Transcriber | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
) -> E2EReport:
    """Run every case with one pipeline (models load once) and score them."""
    start = time.perf_counter()
    results = []
    for case in cases:
        result = await run_case(gpt, case, inputs_dir, output_dir / case.id, transcribe=transcribe)
        results.append(result)
        if on_case is not None:
            on_case(result)
    return score(
        results,
        seconds=time.perf_counter() - start,
        llm=getattr(gpt.llm, "name", type(gpt.llm).__name__),
        selection=str(gpt.settings.selection),
    )


def load_results(path: Path) -> dict[str, CaseResult]:
    """The case results a `--results` file holds (one JSON object a line), by case id; none when it is absent."""
    if not path.is_file():
        return {}
    results = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                result = CaseResult.model_validate_json(line)
            except ValueError as exc:
                raise HuggingGPTError(f"{path} line {number} is not a case result: {exc}") from None
            results[result.id] = result
    return results


def run_from_settings(
    settings: Settings,
    *,
    only: str | None = None,
    matching: str | None = None,
    limit: int | None = None,
    inputs_dir: Path | None = None,
    output_dir: Path | None = None,
    results: Path | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> E2EReport:
    """The whole evaluation: choose the cases, build the inputs (into `inputs_dir` or a temporary folder), run them
    with `HuggingGPT.from_settings(settings)`, and score. Outputs go to `output_dir` (default: a temporary folder).
    With `results`, each case's result is appended there as it ends, and cases already recorded there are not run
    again (a long run that was stopped goes on where it stopped); the report covers them all."""
    from ..pipeline import HuggingGPT
    from .e2e_inputs import build_inputs

    cases = select_cases(default_cases(), only=only, matching=matching, limit=limit)
    if not cases:
        raise HuggingGPTError("no case matches the selection")
    done = load_results(results) if results is not None else {}
    todo = [c for c in cases if c.id not in done]

    def record(result: CaseResult) -> None:
        if results is not None:
            with results.open("a", encoding="utf-8") as handle:
                handle.write(result.model_dump_json() + "\n")
        if on_case is not None:
            on_case(result)

    with tempfile.TemporaryDirectory(prefix="hugginggpt-e2e-") as scratch:
        work = Path(scratch)
        folder = build_inputs((inputs_dir or work / "inputs").resolve())
        outputs = (output_dir or work / "outputs").resolve()
        if progress:
            again = f" ({len(cases) - len(todo)} already in {results})" if len(todo) < len(cases) else ""
            progress(f"{len(todo)} cases to run{again}; inputs in {folder}; outputs in {outputs}")
        gpt = HuggingGPT.from_settings(settings)
        transcribe = whisper_transcriber(gpt, work / "transcripts")
        report = asyncio.run(run_suite(gpt, todo, folder, outputs, transcribe=transcribe, on_case=record))
    fresh = {r.id: r for r in report.cases}
    ordered = [fresh.get(c.id) or done[c.id] for c in cases]
    return score(ordered, seconds=report.seconds, llm=report.llm, selection=report.selection)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m hugginggpt.eval.e2e`: the same evaluation as `hugginggpt eval e2e`, for trees without that command."""
    from ..config import Settings

    parser = argparse.ArgumentParser(prog="python -m hugginggpt.eval.e2e", description=main.__doc__)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--only", help="only the cases of this kind")
    parser.add_argument("-k", dest="matching", help="only cases whose id or request contains this")
    parser.add_argument("--limit", type=int, help="at most N cases")
    parser.add_argument("--inputs-dir", type=Path, help="build the inputs here (default: a temporary folder)")
    parser.add_argument("--output-dir", type=Path, help="keep the outputs here (default: a temporary folder)")
    parser.add_argument("--results", type=Path, help="append each case's result here (JSONL); skip cases in it")
    args = parser.parse_args(argv)

    def show(result: CaseResult) -> None:
        print(format_case(result), file=sys.stderr, flush=True)

    try:
        report = run_from_settings(
            Settings(),
            only=args.only,
            matching=args.matching,
            limit=args.limit,
            inputs_dir=args.inputs_dir,
            output_dir=args.output_dir,
            results=args.results,
            on_case=show,
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except HuggingGPTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.model_dump_json() if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
