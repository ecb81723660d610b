"""End-to-end success: run user requests through the whole pipeline and check each answer as a person would."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from ..errors import HuggingGPTError
from ..types import Answer

if TYPE_CHECKING:
    from ..config import Settings
    from ..pipeline import HuggingGPT

Transcriber = Callable[[Path], Awaitable[str]]


class Case(BaseModel):
    """One request of the suite and what a person would check in its outcome."""

    id: str
    kind: str = Field(description="the kind of request, reported per kind")
    request: str
    before: list[str] = Field(default_factory=list, description="earlier turns of the same conversation, run first")
    must: list[list[str]] = Field(
        default_factory=list,
        description="groups of words or numbers: the answer contains one of each group (case-insensitive; number "
        "words and thousands separators normalised; a plain number matches by value; a word also matches its plural "
        "and, ending in '*', any word it starts)",
    )
    must_not: list[str] = Field(default_factory=list, description="regexes of claims the answer must not make")
    artifacts: list[str] = Field(
        default_factory=list, description="media-type prefixes (e.g. 'audio/'), each met by a file this run produced"
    )
    speech: list[list[str]] = Field(
        default_factory=list, description="groups (as `must`) the transcript of the produced speech contains"
    )
    unservable: list[str] = Field(
        default_factory=list,
        description="task types no offline model serves: the case passes when the answer says plainly that it could "
        "not be done (or when a real model of one of these types did run and produce a file)",
    )


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


# --- checks -------------------------------------------------------------------------------------------------------

_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
_UNITS += "seventeen eighteen nineteen"
_NUMBER_WORDS = {word: n for n, word in enumerate(_UNITS.split())}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_TENS_RE = re.compile(r"\b(" + "|".join(_TENS) + r")(?:[\s-]+(" + "|".join(list(_NUMBER_WORDS)[1:10]) + r"))?\b")
_UNITS_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def normalise(text: str) -> str:
    """Lower case, plain quotes, number words as digits ('twenty-five' -> 25), no thousands separators."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = _TENS_RE.sub(lambda m: str(_TENS[m.group(1)] + (_NUMBER_WORDS[m.group(2)] if m.group(2) else 0)), text)
    text = _UNITS_RE.sub(lambda m: str(_NUMBER_WORDS[m.group(1)]), text)
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)


def contains(text: str, term: str) -> bool:
    """Whether `text` says `term`: a plain number by value; a word or phrase whole (plural allowed), or, ending in
    '*', as the start of a word."""
    norm = normalise(text)
    term = normalise(term.strip())
    if _PLAIN_NUMBER.match(term):
        return any(float(n) == float(term) for n in _NUMBER.findall(norm))
    if term.endswith("*"):
        return re.search(r"(?<!\w)" + re.escape(term[:-1]), norm) is not None
    return re.search(r"(?<!\w)" + re.escape(term) + r"(?:s|es)?(?!\w)", norm) is not None


def check_groups(text: str, groups: Sequence[Sequence[str]], what: str = "the answer") -> list[str]:
    """A reason for each group none of whose terms `text` contains."""
    return [
        f"{what} does not say {' or '.join(repr(t) for t in group)}"
        for group in groups
        if not any(contains(text, term) for term in group)
    ]


def check_forbidden(text: str, patterns: Sequence[str]) -> list[str]:
    reasons = []
    for pattern in patterns:
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            reasons.append(f"the answer claims {match.group(0)!r} (matches {pattern!r})")
    return reasons


_EXTENSIONS = "png|jpe?g|gif|bmp|webp|tiff?|wav|mp3|flac|ogg|m4a|mp4|webm|avi|mov|mkv|txt|md|csv|json|pdf"
_FILE_NAME = re.compile(r"(?<![\w.-])([\w.~/\\-]*[\w-]\.(?:" + _EXTENSIONS + r"))(?![\w-])", re.IGNORECASE)


def file_names(text: str) -> list[str]:
    """The file paths and names an answer's text mentions."""
    return [m.group(1) for m in _FILE_NAME.finditer(text)]


def check_files(text: str, produced: Sequence[str], inputs: Sequence[str]) -> list[str]:
    """Every file the answer names must be one this run produced or one the user gave (compared by name)."""
    known = {Path(p).name.lower() for p in [*produced, *inputs]}
    return [
        f"the answer names the file {name!r}, which this run did not produce and the user did not give"
        for name in dict.fromkeys(file_names(text))
        if Path(name.replace("\\", "/")).name.lower() not in known
    ]


_MEDIA_NOUNS = {
    "image": "image",
    "picture": "image",
    "photo": "image",
    "drawing": "image",
    "illustration": "image",
    "painting": "image",
    "depth map": "image",
    "mask": "image",
    "audio": "audio",
    "sound": "audio",
    "recording": "audio",
    "speech": "audio",
    "voice": "audio",
    "video": "video",
    "clip": "video",
    "animation": "video",
    "file": "any",
}
_NOUNS = "|".join(sorted(_MEDIA_NOUNS, key=len, reverse=True))
_VERBS = r"drew|drawn|generated|created|saved|produced|made|rendered|synthesi[sz]ed|recorded|painted|composed"
_DETERMINERS = r"(?:(?:a|an|the|your|this|that|1|new|short|brief|small)\s+){0,3}(?:[\w-]+\s+)??"
_ABOUT = r"(?:description|caption|analysis|transcript|transcription|text|content|summary|results?)\b"
_CLAIMS = [
    # "I drew a picture of ...", "I have generated an audio file", "we saved the image as ..."
    re.compile(rf"\b(?:i|i've|we|we've)\s+(?:have\s+|just\s+|also\s+)?(?:{_VERBS})\s+{_DETERMINERS}({_NOUNS})\b"),
    # "here is the image", "attached is a short video"
    re.compile(rf"\b(?:here is|here's|here are|attached is)\s+{_DETERMINERS}({_NOUNS})\b(?!'s|\s+{_ABOUT})"),
    # "the image has been saved", "an audio file was generated"
    re.compile(
        rf"\b(?:the|an?|your)\s+(?:[\w-]+\s+)?({_NOUNS})\s+(?:has|have|was|were|is|are)\s+(?:been\s+|now\s+)?"
        rf"(?:saved|generated|created|produced|drawn|rendered|synthesi[sz]ed)\b"
    ),
]
_NEGATION = re.compile(r"\b(not|no|never|unable|cannot|can't|couldn't|could not|wasn't|weren't|isn't|without)\b")


def check_claims(text: str, produced_modalities: set[str]) -> list[str]:
    """No claim to have made an image, audio, video or file when no such file was produced."""
    reasons = []
    lowered = normalise(text)
    for pattern in _CLAIMS:
        for match in pattern.finditer(lowered):
            sentence_start = max(lowered.rfind(".", 0, match.start()), lowered.rfind("\n", 0, match.start())) + 1
            if _NEGATION.search(lowered[sentence_start : match.end()]):
                continue
            if re.search(r"\b(?:of|from|in|on)\s*$", lowered[sentence_start : match.start()]):
                continue  # "a summary of the speech has been generated" is about the summary
            modality = _MEDIA_NOUNS[match.group(1)]
            if (modality == "any" and produced_modalities) or modality in produced_modalities:
                continue
            kind = "" if modality == "any" else f"{modality} "
            reasons.append(f"the answer claims {match.group(0)!r} but this run produced no {kind}file")
    return reasons


_HONEST = re.compile(
    r"\b(cannot|can't|can ?not|could not|couldn't|unable|not available|unavailable|no installed model|not "
    r"installed|not supported|no model|not possible|don't have|do not have|no (?:local |offline )?model)\b",
    re.IGNORECASE,
)


def direct_answer(text: str) -> str:
    """The answer a person reads as the reply: the text before the rendered account of the workflow (the whole
    text in trees that render none), so the account's log of expert outputs cannot make a wrong answer pass."""
    try:
        from ..account import split_answer
    except ImportError:  # a tree from before the rendered account (the "before" measurement)
        return text
    return split_answer(text)[0]


def check_unservable(answer: Answer, task_types: Sequence[str]) -> list[str]:
    """A request no offline model serves passes when the direct answer says it could not be done, or when a real
    model of one of those task types did produce a file."""
    served = [r for r in answer.results if r.task in task_types and r.status == "ok" and r.artifacts()]
    if served or _HONEST.search(direct_answer(answer.text)):
        return []
    return [f"the answer does not say that {' / '.join(task_types)} could not be done"]


def check_selection_calls(answers: Sequence[Answer]) -> list[str]:
    count = sum(1 for a in answers for call in a.llm_usage if call.stage == "selection")
    return [f"{count} selection-stage LLM calls (expected 0)"] if count else []


def produced_files(answer: Answer, inputs_dir: Path | None = None) -> list[tuple[str, str, str]]:
    """(path, media type, modality) of every file the run wrote that exists; inputs passed through are not counted."""
    files = []
    for artifact in answer.artifacts():
        path = Path(artifact.path)
        if not path.is_file():
            continue
        if inputs_dir is not None and path.resolve().is_relative_to(inputs_dir.resolve()):
            continue
        files.append((artifact.path, artifact.media_type, artifact.modality))
    return files


def check_artifacts(files: Sequence[tuple[str, str, str]], prefixes: Sequence[str]) -> list[str]:
    return [
        f"no {prefix}* file was produced (got {', '.join(m for _, m, _ in files) or 'none'})"
        for prefix in prefixes
        if not any(media.startswith(prefix) for _, media, _ in files)
    ]


async def check_case(
    case: Case,
    answers: Sequence[Answer],
    inputs: Sequence[str],
    *,
    inputs_dir: Path | None = None,
    transcribe: Transcriber | None = None,
) -> tuple[list[str], str | None]:
    """Every check of `case` and the universal ones on its last answer (`answers` are all its turns, last last).
    Returns the failures' reasons and the transcript of the produced speech, if any was checked."""
    answer = answers[-1]
    files = produced_files(answer, inputs_dir)
    direct = direct_answer(answer.text)
    failures = check_groups(direct, case.must)
    failures += check_forbidden(direct, case.must_not)
    failures += check_artifacts(files, case.artifacts)
    transcript = None
    if case.speech:
        audio = [Path(path) for path, media, _ in files if media.startswith("audio/")]
        if not audio:
            failures.append("no speech was produced to transcribe")
        elif transcribe is None:
            failures.append("no transcriber (Whisper) to check the produced speech")
        else:
            transcript = " ".join([await transcribe(path) for path in audio]).strip()
            failures += check_groups(transcript, case.speech, "the produced speech")
    if case.unservable:
        failures += check_unservable(answer, case.unservable)
    earlier = [path for a in answers[:-1] for path, _, _ in produced_files(a, inputs_dir)]
    failures += check_files(answer.text, [p for p, _, _ in files] + earlier, inputs)
    failures += check_claims(answer.text, {modality for _, _, modality in files})
    failures += check_selection_calls(answers)
    return failures, transcript


# --- runner -------------------------------------------------------------------------------------------------------


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


# --- report -------------------------------------------------------------------------------------------------------


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
