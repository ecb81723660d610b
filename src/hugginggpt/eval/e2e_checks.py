"""The end-to-end suite's checks: what a person would check in an answer (the words and numbers it must say, the
claims it must not make, the files it names and the files the run produced, the transcript of produced speech).

Only `..types` is needed here, so the suite's files (`eval/e2e*.py`) can be copied into older trees and run there."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from ..types import Answer

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
