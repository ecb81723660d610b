"""The answer check: sentences naming a file, model or artifact that the run did not produce never reach the user."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath

from pydantic import BaseModel, Field

from .facts import TaskFacts, total_counts
from .types import MEDIA

_NAME = r"[^\s'\"`<>()\[\]{},;*]"
# A scheme's and a name's characters are bounded, so a long word without either (a 20,000-character request)
# costs linear time, not quadratic; a longer path still matches its last 256 characters, its file name among them.
_FILE = re.compile(rf"(?:[a-z][a-z0-9+.-]{{0,30}}://)?{_NAME}{{0,255}}?[\w-]\.([A-Za-z][A-Za-z0-9]{{1,4}})\b", re.I)
_MODEL = re.compile(r"(?<![\w/.-])([A-Za-z][\w.-]*/[\w.-]*\w)(?![\w/])")

_MEDIA_NOUNS = {
    "image": r"images?|pictures?|photos?|photographs?|drawings?|illustrations?|paintings?|sketch(?:es)?|artwork"
    r"|jpe?g|png|depth map|masks?",
    "audio": r"audio|sounds?|speech|recordings?|voice|wav|mp3|spoken version",
    "video": r"videos?|clips?|animations?|movies?|films?|mp4",
    "file": r"files?|attachments?",
}
_VERBS = (
    r"drew|drawn|draws?|painted|paints?|sketched|generated|generates?|created|creates?|produced|produces?|rendered"
    r"|renders?|saved|saves?|made|makes?|synthesi[sz]ed|synthesi[sz]es?|recorded|records?|composed|exported"
    r"|attached|stored|wrote|written|spoke|spoken|narrated|converted|edited|animated|filmed"
)
_PASSIVE = r"is|was|were|are|has been|have been|had been|is now|was now"
_NOT_BETWEEN = r"(?!(?:for|of|in|on|from|about|at|with|by|into|onto|over|around|inside)\b)"
_NEGATION = re.compile(
    r"\b(?:not|no|never|cannot|unable|failed|fail|without|nothing|none|neither|nor)\b|n't\b", re.IGNORECASE
)
_MODAL = re.compile(r"\b(?:can|could|would|will|might|may|should|if)\s+(?:(?:be|have|then)\s+)?$", re.IGNORECASE)
_CLAUSES = re.compile(r"[,;:]|\b(?:but|although|though|however|whereas|while)\b", re.IGNORECASE)
_AUDIO_PHRASES = re.compile(r"\baloud\b|\bout loud\b|\byou can (?:listen|hear)\b", re.IGNORECASE)
_VIDEO_PHRASES = re.compile(r"\byou can (?:watch)\b", re.IGNORECASE)
# colour words: an answer may state a colour only when a result (or the user) gives it
_COLOURS = re.compile(
    r"\b(red|orange|yellow|green|blue|purple|violet|pink|brown|black|white|gr[ae]y|beige|cyan|turquoise|gold"
    r"|golden|silver|maroon|navy)(?:d?ish)?\b",
    re.IGNORECASE,
)
# months and weekdays: an answer may name one only when a result, the request or the history does. Capitalised,
# as English writes them; "May" is left out (the modal verb starts too many sentences).
_CALENDAR = re.compile(
    r"\b(January|February|March|April|June|July|August|September|October|November|December"
    r"|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)s?\b"
)
# numbers: an answer may state one only when a result, the request or the history gives it (or the code's totals)
_NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.,])\d+(?:\.\d+)?(?![\w])")
_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
_NUMBER_WORDS = {word: n for n, word in enumerate((_WORDS + "seventeen eighteen nineteen twenty").split())}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_BOUNDARY = re.compile(r"[.!?][\"')\]]*[ \t]+|[.!?][\"')\]]*\n\s*|\n\s*")


def _claim_patterns(nouns: str) -> list[re.Pattern[str]]:
    words = rf"(?:{_NOT_BETWEEN}[\w'-]+\s+){{0,3}}?"
    return [
        re.compile(rf"\b(?P<verb>{_VERBS})\s+{words}(?:{nouns})\b", re.IGNORECASE),
        re.compile(rf"\b(?:{nouns})\s+(?:{_PASSIVE})\s+(?:\w+\s+)?(?P<verb>{_VERBS}|available|ready)\b", re.IGNORECASE),
        re.compile(rf"\bhere(?:'s|\s+is|\s+are)\s+{words}(?:{nouns})\b", re.IGNORECASE),
    ]


_CLAIMS = {kind: _claim_patterns(nouns) for kind, nouns in _MEDIA_NOUNS.items()}


class Removal(BaseModel):
    """A sentence of the LLM's answer that the check kept from the user, and why."""

    sentence: str
    reason: str
    claims: str | None = Field(None, description="the kind of artifact the sentence claimed (image/audio/video/file)")


class Grounds(BaseModel):
    """What an answer may name: the run's artifacts and inputs, files the user named, models that ran, and the
    media kinds produced."""

    files: set[str] = Field(default_factory=set, description="file names (lower case, without folders)")
    models: set[str] = Field(default_factory=set)
    produced: set[str] = Field(default_factory=set, description="media kinds of the run's artifacts")
    colours: set[str] = Field(default_factory=set, description="colour words the request, history or results say")
    calendar: set[str] = Field(default_factory=set, description="month and weekday names the texts and results say")
    numbers: set[float] | None = Field(
        None, description="numbers the request, history, results and totals give (None: numbers are not checked)"
    )

    @classmethod
    def of(cls, facts: Sequence[TaskFacts], texts: Iterable[str] = (), inputs: Iterable[str] = ()) -> Grounds:
        """From the facts, the texts the user and the experts wrote (request, history, results, errors) and the
        task arguments."""
        grounds = cls()
        for fact in facts:
            for artifact in fact.produced:
                grounds.files.add(_file_key(artifact.path))
                grounds.produced.add(artifact.modality)
            if fact.model_id:
                grounds.models.add(fact.model_id.lower())
        told = [*texts, *(f.result for f in facts), *(f.error or "" for f in facts)]
        grounds.numbers = {float(len(facts))} | {float(n) for n in total_counts(facts).values()}
        for text in told:
            grounds.numbers.update(numbers_in(text))
            grounds.colours.update(colour_words(text))
            grounds.calendar.update(calendar_words(text))
            grounds.files.update(_file_key(name) for name in file_names(text))
            grounds.models.update(m.lower() for m in _MODEL.findall(text))
        for value in inputs:
            if is_file_name(value.strip()):
                grounds.files.add(_file_key(value.strip()))
        return grounds


def numbers_in(text: str) -> set[float]:
    """The numbers a text states, in digits (`1,234.50`) or as words up to twenty; times and dates give their parts."""
    found = {float(m.group(0).replace(",", "")) for m in _NUMBER.finditer(text)}
    return found | {float(_NUMBER_WORDS[m.group(1).lower()]) for m in _NUMBER_WORD.finditer(text)}


def colour_words(text: str) -> set[str]:
    """The colour words a text says, lower case (`grey` and `gray` as one)."""
    return {m.group(1).lower().replace("gray", "grey") for m in _COLOURS.finditer(text)}


def calendar_words(text: str) -> set[str]:
    """The month and weekday names a text says ("Mondays" as "Monday"); any case in a result or request counts."""
    return {m.group(1) for m in _CALENDAR.finditer(re.sub(r"\b[a-z]", lambda c: c.group(0).upper(), text))}


def _file_key(name: str) -> str:
    return PurePath(name.rstrip("/\\").replace("\\", "/")).name.lower()


def is_file_name(token: str) -> bool:
    """Whether `token` looks like a file name: an extension the system knows a media type for (`.jpg`, `.json`)."""
    match = _FILE.fullmatch(token)
    return match is not None and mimetypes.guess_type("x." + match.group(1).lower())[0] is not None


def _kind_of(name: str) -> str:
    media_type = mimetypes.guess_type("x" + PurePath(name).suffix.lower())[0] or ""
    kind = media_type.split("/")[0]
    return kind if kind in MEDIA else "file"


def file_names(text: str) -> list[str]:
    """The file names and paths a text mentions."""
    return [m.group(0) for m in _FILE.finditer(text) if is_file_name(m.group(0))]


def claimed_kinds(clause: str, *, supposed: bool = False) -> list[str]:
    """The kinds of artifact (image/audio/video/file) a clause says were made, saved or given; [] when it denies,
    supposes (unless `supposed`) or only talks about an input."""
    if _NEGATION.search(clause):
        return []
    kinds = []
    for kind, patterns in _CLAIMS.items():
        for pattern in patterns:
            match = pattern.search(clause)
            before = clause[: match.start("verb") if match and "verb" in match.re.groupindex else 0]
            if match and (supposed or not _MODAL.search(before)):
                kinds.append(kind)
                break
    if _AUDIO_PHRASES.search(clause) and "audio" not in kinds:
        kinds.append("audio")
    if _VIDEO_PHRASES.search(clause) and "video" not in kinds:
        kinds.append("video")
    return kinds


def requested_kinds(request: str) -> set[str]:
    """The kinds of artifact a request asks to be made ('Draw a picture', 'can you read it aloud?')."""
    return {kind for clause in _CLAUSES.split(request) for kind in claimed_kinds(clause, supposed=True)}


# Looser hints that a request wants a kind of artifact made, for `wanted_kinds`: a superset of `requested_kinds`,
# which a false hint only makes keep a task.
_WANTED = {
    "audio": re.compile(
        r"\b(?:to|into|as)\s+(?:an?\s+|the\s+|some\s+)?(?:speech|audio|voice|sound|spoken)\b"
        r"|\b(?:aloud|out loud|hear|listen|narrat\w*|recite|pronounc\w*|voice-?overs?|text-to-speech|audiobooks?"
        r"|podcasts?|speak|say it)\b|\bread\b[^.?!,;]{0,40}\b(?:to me|for me|to us)\b"
        r"|\b(?:provide|give|generate|create|make|produce|want|need)\s+(?:[\w'-]+\s+){0,3}?"
        r"(?:speech|audio|voice|spoken|sound)\b",
        re.IGNORECASE,
    ),
    "image": re.compile(
        r"\b(?:to|into|as)\s+(?:an?\s+|the\s+)?(?:image|picture|photo|drawing|illustration|painting|poster|sketch)s?\b"
        r"|\b(?:draw|paint|sketch|illustrate|visuali[sz]e|depict|render)\b"
        r"|\b(?:generate|create|make|produce|design|show me|give me)\s+(?:[\w'-]+\s+){0,4}?"
        r"(?:images?|pictures?|photos?|posters?|logos?|artworks?|illustrations?|drawings?|wallpapers?|icons?)\b",
        re.IGNORECASE,
    ),
    "video": re.compile(r"\b(?:videos?|clips?|animat\w*|movies?|films?|mp4)\b", re.IGNORECASE),
}


def wanted_kinds(request: str) -> set[str]:
    """The kinds of artifact a request may want made: those it asks for (`requested_kinds`) and those it hints at
    ('read it to me', 'turn it into speech', any mention of a video). A superset, for deciding what is unasked."""
    return requested_kinds(request) | {kind for kind, pattern in _WANTED.items() if pattern.search(request)}


def _unproduced_claim(sentence: str, grounds: Grounds) -> str | None:
    for clause in _CLAUSES.split(sentence):
        for kind in claimed_kinds(clause):
            if (kind == "file" and not grounds.produced) or (kind != "file" and kind not in grounds.produced):
                return kind
    return None


def check(sentence: str, grounds: Grounds) -> Removal | None:
    """Why `sentence` must not reach the user, or None when it names only real files and models and claims only
    artifacts the run produced."""
    claim = _unproduced_claim(sentence, grounds)
    for name in file_names(sentence):
        if _file_key(name) not in grounds.files:
            reason = f"names the file {name!r}, which this run did not produce"
            return Removal(sentence=sentence, reason=reason, claims=claim or _kind_of(name))
    rest = _FILE.sub(" ", sentence)
    for model in _MODEL.findall(rest):
        if "://" not in model and re.search(r"[\d-]", model) and model.lower() not in grounds.models:
            reason = f"names the model {model!r}, which this run did not use"
            return Removal(sentence=sentence, reason=reason, claims=claim)
    if claim is not None:
        what = {"image": "an image", "audio": "audio", "video": "a video"}.get(claim, "a file")
        return Removal(sentence=sentence, reason=f"claims {what} that this run did not produce", claims=claim)
    unsaid = sorted(colour_words(sentence) - grounds.colours)
    if unsaid:
        return Removal(sentence=sentence, reason=f"states the colour {unsaid[0]!r}, which no result gives")
    named = sorted({m.group(1) for m in _CALENDAR.finditer(sentence)} - grounds.calendar)
    if named:
        return Removal(sentence=sentence, reason=f"names {named[0]}, which no result gives")
    if grounds.numbers is not None:
        invented = sorted(numbers_in(_FILE.sub(" ", sentence)) - grounds.numbers - {0.0, 1.0})
        if invented:
            return Removal(sentence=sentence, reason=f"states the number {invented[0]:g}, which no result gives")
    return None


class CheckedStream:
    """Passes a streamed answer on sentence by sentence, each only after `check` let it through; the rest is
    recorded in `removed`. What was emitted is `text`."""

    def __init__(self, grounds: Grounds, emit: Callable[[str], None] | None = None) -> None:
        self.grounds = grounds
        self.removed: list[Removal] = []
        self._emit = emit
        self._buffer = ""
        self._pending = ""  # whitespace after the last kept sentence, sent only before the next one
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def feed(self, delta: str) -> None:
        self._buffer += delta
        while match := _BOUNDARY.search(self._buffer):
            piece, self._buffer = self._buffer[: match.end()], self._buffer[match.end() :]
            self._take(piece)

    def close(self) -> None:
        """Check what is left after the last sentence boundary."""
        piece, self._buffer = self._buffer, ""
        self._take(piece)

    def add(self, text: str, separator: str = " ") -> None:
        """Append text the code wrote from the results (not checked), after a separator when text came before."""
        if text:
            self._send((separator if self._parts else "") + text)
            self._pending = ""

    def _take(self, piece: str) -> None:
        body = piece.rstrip()
        tail = piece[len(body) :]
        if not body.strip():
            return
        removal = check(body.strip(), self.grounds)
        if removal is not None:
            self.removed.append(removal)
            if "\n" in tail and "\n" not in self._pending:
                self._pending = tail  # a removed line keeps the line break before the next one
            return
        self._send((self._pending if self._parts else "") + (body if self._parts else body.lstrip()))
        self._pending = tail

    def _send(self, text: str) -> None:
        self._parts.append(text)
        if self._emit is not None:
            self._emit(text)
