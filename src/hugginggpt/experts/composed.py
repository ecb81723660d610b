"""Composed experts: document QA (OCR + LLM) and VQA (scene facts + LLM), answers checked against their source.

One module: the support checks belong to the two experts, each check guarding one expert's answer against that
expert's own source (the OCR rows, the scene facts)."""

from __future__ import annotations

import asyncio
import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ExpertError, LLMError
from ..jsontext import JSONNotFound, extract_json
from ..llm.protocol import LLM, Message
from ..prompts import render
from ..types import ModelCard
from .media import need
from .ocr import OCRExpert, OCRReader, OCRRow, read_rgb, text_rows
from .protocol import Expert, ExpertContext, Outputs
from .scene import COLOURS, SceneFacts, SceneReader
from .vision import COCO_LABELS, ImageClassificationExpert, ObjectDetectionExpert, plural

DOCUMENT_QA_ID = "embedded/composed-document-qa"
VQA_ID = "embedded/composed-vqa"
MAX_TOKENS = 120
MAX_ROWS = 40  # rows of document text given to the LLM; a longer page keeps the rows nearest the question
MAX_CHARS = 2400
QUOTE_MATCH = 0.8  # how alike (difflib ratio, normalised) a quoted line and a row of the text must be

_STOPWORDS = frozenset(
    {"a", "an", "the", "is", "are", "was", "were", "be", "of", "in", "on", "at", "to", "for", "and", "or", "by",
     "with", "from", "as", "it", "its", "this", "that", "these", "those", "what", "which", "who", "whom", "when",
     "where", "how", "much", "many", "does", "do", "did", "there", "their", "any", "some"}
)  # fmt: skip
_NEGATIONS = frozenset({"no", "not", "none", "zero", "nothing", "never", "without", "cannot", "isn't", "aren't"})
_NUMBER_WORDS = {
    "no": 0, "zero": 0, "one": 1, "a": 1, "an": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
# words an answer may use that state no fact of their own (how much, where, which source, linking words)
_PLAIN_TEXT = """image images picture pictures photo photograph shows show shown showing visible see seen found detected
    detector identified recognised recognized classified classifier model models fact facts given information
    provided based according colour color colours colors coloured colored shade shades tone light dark bright
    object objects thing things item items total number numbers amount count counted counts altogether together
    overall whole entire both each every all only also main mainly mostly most largely primarily predominantly
    dominant dominates majority largest biggest rest remaining remainder share percent percentage area areas
    portion part parts mixed makes make made covers cover covering covered takes take fills fill filling
    text says say reads read written printed word words line lines letters has have having contains contain
    containing include includes including consist consists one two three four five six seven eight nine ten
    no not none nothing any i can could would will may might must should be been being they them their it its
    and or but so because however with without about above below around approximately roughly nearly almost
    just exactly least many much several few various different same other others another more than fewer less
    over under up out into onto then which while whose where there here these those this that what side sides
    top bottom middle center centre left right near next located position positioned placed present appears
    appear appearing seems seem single yes indeed correct very quite too well such if either neither nor
    kind kinds type types sort"""
_PLAIN_WORDS = frozenset(_PLAIN_TEXT.split())
_COLOUR_WORDS = {
    **{name: name for name in COLOURS},
    "gray": "grey", "golden": "yellow", "gold": "yellow", "tan": "beige", "cream": "beige", "violet": "purple",
    "magenta": "pink", "turquoise": "cyan", "teal": "cyan", "silver": "grey", "navy": "blue", "maroon": "brown",
}  # fmt: skip
_READABLE_COCO = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch", "pottedplant": "potted plant"}
_COCO = tuple(_READABLE_COCO.get(label, label) for label in COCO_LABELS)

_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "found": {"type": "boolean"},
        "line": {"type": "string", "maxLength": 160},
        "answer": {"type": "string", "maxLength": 120},
    },
    "required": ["found", "line", "answer"],
    "additionalProperties": False,
}
_VQA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answerable": {"type": "boolean"}, "answer": {"type": "string", "maxLength": 200}},
    "required": ["answerable", "answer"],
    "additionalProperties": False,
}


class DocumentReply(BaseModel):
    found: bool
    line: str = ""
    answer: str = ""


class VisualReply(BaseModel):
    answerable: bool
    answer: str = ""


# --- the support checks ---------------------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """Lower-case words and numbers; a number loses its separators (`$1,234.50` and `1234.50` are `123450`)."""
    found = re.findall(r"\d+(?:[.,]\d+)*|[^\W\d_]+", text.lower())
    return [re.sub(r"[.,]", "", t) if t[0].isdigit() else t for t in found]


def _normal(text: str) -> str:
    return " ".join(tokens(text))


def matching_row(quote: str, rows: list[str]) -> str | None:
    """The row of the document text the quoted line is (normalised, allowing small OCR-like differences), or None."""
    wanted = _normal(quote)
    if not wanted:
        return None
    best, best_ratio = None, 0.0
    for row in rows:
        have = _normal(row)
        if not have:
            continue
        ratio = difflib.SequenceMatcher(None, wanted, have).ratio()
        if wanted in have and len(wanted) >= min(len(have), 4):
            ratio = max(ratio, QUOTE_MATCH)
        if ratio > best_ratio:
            best, best_ratio = row, ratio
    return best if best_ratio >= QUOTE_MATCH else None


def answer_in_line(answer: str, line: str, question: str) -> bool:
    """Whether the answer is supported by the line: every number of the answer, and every word it adds to the
    question (other than little words), occurs in the line. An answer that adds nothing is not an answer."""
    have = set(tokens(line))
    asked = set(tokens(question))
    added = [t for t in tokens(answer) if t[0].isdigit() or (t not in _STOPWORDS and t not in asked)]
    if not added:
        return False
    return all(t in have or (not t[0].isdigit() and _near(t, have)) for t in added)


def _forms(word: str) -> set[str]:
    """The word and its crude stems, enough to match `horse`/`horses`, `colour`/`coloured`, `box`/`boxes`."""
    forms = {word}
    for ending, replacement in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("d", ""), ("ing", "")):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            forms.add(word[: -len(ending)] + replacement)
    return forms


def _near(word: str, words: set[str]) -> bool:
    return any(len(word) > 3 and difflib.SequenceMatcher(None, word, w).ratio() >= 0.85 for w in words)


def _label_forms() -> dict[str, str]:
    forms = {}
    for label in _COCO:
        forms[label] = label
        forms[plural(label, 2).split(" ", 1)[1]] = label
    return forms


_LABEL_FORMS = _label_forms()
_LABEL_PATTERN = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, _LABEL_FORMS), key=len, reverse=True)) + r")\b", re.IGNORECASE
)
_COUNT_PATTERN = re.compile(
    r"\b(\d+|"
    + "|".join(_NUMBER_WORDS)
    + r")\s+([a-z]+\s+)?("
    + "|".join(sorted(map(re.escape, _LABEL_FORMS), key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


def unsupported_claims(answer: str, facts: SceneFacts, question: str = "") -> list[str]:
    """What the answer says that the facts do not: an object count other than the detector's, an object the
    detector did not find (unless the answer says it is not there), a colour no computed colour matches, words
    that are neither in the facts nor in the question (an action, a place, a detail no model reported)."""
    problems = []
    lowered = answer.lower()
    negated = bool(_NEGATIONS & set(re.findall(r"[a-z']+", lowered)))
    known_words = {form for t in tokens(facts.render() + " " + question) for form in _forms(t)}
    if negated and facts.objects is not None:  # the detector knows what is not there among its 80 classes
        known_words |= {word for form in _LABEL_FORMS for word in form.split()}
    extra = [
        t
        for t in tokens(answer)
        if not t[0].isdigit() and t not in _STOPWORDS and t not in _PLAIN_WORDS and not _forms(t) & known_words
    ]
    if extra:
        problems.append("says what no fact says: " + ", ".join(dict.fromkeys(extra)))
    counts = facts.counts()
    if facts.objects is not None:
        for number, adjective, form in _COUNT_PATTERN.findall(lowered):
            label = _LABEL_FORMS[form.lower()]
            claimed = int(number) if number.isdigit() else _NUMBER_WORDS[number.lower()]
            if claimed == 1 and not number.isdigit():
                continue  # "a horse", "one horse is white": says nothing about how many there are
            allowed = {counts.get(label, 0)}
            colour = _COLOUR_WORDS.get(adjective.strip())
            if colour is not None:  # "2 black horses": as many of that label as have that colour
                allowed.add(sum(1 for o in facts.objects if o.label == label and colour in o.colours))
            if claimed not in allowed:
                problems.append(f"says {number} {form}, the detector found {counts.get(label, 0)}")
        named = {_LABEL_FORMS[m.lower()] for m in _LABEL_PATTERN.findall(lowered)}
        labels_text = " ".join(lb.label.lower() for lb in facts.labels or ())
        for label in sorted(named - set(counts)):
            if not negated and not re.search(rf"\b{re.escape(label)}\b", labels_text):
                problems.append(f"names a {label}, which the detector did not find")
    known = facts.colour_names()
    for word in re.findall(r"[a-z]+", lowered):
        colour = _COLOUR_WORDS.get(word)
        if colour is not None and colour not in known and not negated:
            problems.append(f"says {word}, which is not among the computed colours")
    return problems


# --- the experts ----------------------------------------------------------------------------------------------------


async def _ask(llm: LLM, template: str, schema: dict[str, Any], reply: type[BaseModel], **context: Any) -> Any:
    """The LLM's reply to the template's fixed system prompt (first, so its KV state is reused between calls) and
    the filled user prompt, schema-constrained."""
    messages = [
        Message(role="system", content=render(f"{template}_system.j2")),
        Message(role="user", content=render(f"{template}.j2", **context)),
    ]
    try:
        completion = await llm.complete(messages, json_schema=schema, max_tokens=MAX_TOKENS, temperature=0.0)
        return reply.model_validate(extract_json(completion.text))
    except (LLMError, JSONNotFound, ValidationError) as exc:
        raise ExpertError(f"the controller LLM ({llm.name}) gave no usable answer: {exc}") from None


def _question(args: dict[str, str], task: str) -> str:
    try:
        return need(args, "text").strip()
    except ExpertError:
        raise ExpertError(f"{task} needs the question in the 'text' argument") from None


def _image(args: dict[str, str], task: str) -> Path:
    try:
        return Path(need(args, "image"))
    except ExpertError:
        raise ExpertError(f"{task} needs an 'image' file") from None


def prompt_rows(rows: list[str], question: str) -> list[str]:
    """The rows given to the LLM: all of them when they fit, else the ones sharing most words with the question
    (and the first rows, where titles are), kept in page order."""
    if len(rows) <= MAX_ROWS and sum(len(r) + 1 for r in rows) <= MAX_CHARS:
        return rows
    asked = set(tokens(question)) - _STOPWORDS
    scored = sorted(range(len(rows)), key=lambda i: (-len(asked & set(tokens(rows[i]))), i))
    kept, size = set(), 0
    for i in scored:
        if len(kept) >= MAX_ROWS or size + len(rows[i]) + 1 > MAX_CHARS:
            break
        kept.add(i)
        size += len(rows[i]) + 1
    return [rows[i] for i in sorted(kept)]


class DocumentQAExpert:
    """document-question-answering, composed: OCR reads the document's rows of text, the controller LLM answers
    from that text only and quotes the row; the answer is kept only when the quoted row is in the text and holds
    the answer's words and numbers. Otherwise the result says the document does not say it."""

    def __init__(self, ocr: OCRReader, llm: LLM, *, ocr_id: str, available: bool = True) -> None:
        self.ocr = ocr
        self.llm = llm
        self.card = ModelCard(
            id=DOCUMENT_QA_ID,
            task="document-question-answering",
            backend="embedded",
            available=available,
            license="Apache-2.0 (OCR); the controller LLM's own licence",
            tags=["composed", "ocr", "llm"],
            priority=-1,  # composed from other models: a real document-QA model ranks first at equal downloads
            composed_from=[ocr_id, f"llm:{llm.name}"],
            description=(
                f"composed, not a document-QA network: OCR ({ocr_id}) reads the printed text of the document image "
                f"row by row, then the controller LLM ({llm.name}) answers the question from that text only and "
                "quotes the row the answer is on; an answer not found in the text is reported as not in the document"
            ),
            not_for=(
                "questions about what a picture shows, handwriting, charts, or anything not printed as text in the "
                "image; it does not reason beyond the words on the page"
            ),
        )

    def read_rows(self, path: Path) -> list[OCRRow]:
        """The document's rows of text (blocking)."""
        return text_rows(self.ocr.read(read_rgb(path)))

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        task = self.card.task
        path, question = _image(args, task), _question(args, task)
        rows = await asyncio.to_thread(self.read_rows, path)
        if not rows:
            raise ExpertError(f"no readable text found in {path.name}")
        texts = [row.text for row in rows]
        shown = prompt_rows(texts, question)
        reply: DocumentReply = await _ask(
            self.llm, "composed_document_qa", _DOCUMENT_SCHEMA, DocumentReply, rows=shown, question=question
        )
        row = matching_row(reply.line, texts) if reply.found else None
        supported = row is not None and answer_in_line(reply.answer, row, question)
        summary = {
            "question": question,
            "lines": len(rows),
            "rows": [row.model_dump() for row in rows],
            "composed_from": self.card.composed_from,
        }
        if supported:
            answer = reply.answer.strip()
            text = f'{answer} (from the line "{row}" of {path.name})'
            return {"text": text, "json": {**summary, "answer": answer, "quote": row, "supported": True}}
        text = f'The text of {path.name} ({len(rows)} lines read by OCR) does not say: "{question}".'
        rejected = {"answer": reply.answer, "line": reply.line} if reply.found else None
        return {
            "text": text,
            "json": {**summary, "answer": None, "quote": None, "supported": False, "rejected": rejected},
        }


class VisualQAExpert:
    """visual-question-answering, composed: scene facts from real models and pixels (objects with counts,
    positions and colours; ImageNet labels; OCR text; dominant colours), then the controller LLM answers from those
    facts only. An answer whose counts, objects or colours the facts do not support is replaced by what the facts
    say."""

    def __init__(self, reader: SceneReader, llm: LLM, *, model_ids: list[str]) -> None:
        self.reader = reader
        self.llm = llm
        used = ", ".join(model_ids) or "no models, only the pixels' colours"
        self.card = ModelCard(
            id=VQA_ID,
            task="visual-question-answering",
            backend="embedded",
            available=True,
            license="MIT AND Apache-2.0 (vision models); the controller LLM's own licence",
            tags=["composed", "llm", "scene facts"],
            priority=-1,
            composed_from=[*model_ids, f"llm:{llm.name}"],
            description=(
                f"composed, not a VQA network: facts about the image from real models ({used}) and from its pixels "
                f"(object counts, positions and colours, dominant colours, printed text), then the controller LLM "
                f"({llm.name}) answers from those facts only and says when they do not answer the question"
            ),
            not_for=(
                "actions, relations, emotions, ages, fine details, or objects outside the 80 COCO classes: it knows "
                "only what its models found"
            ),
        )

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        task = self.card.task
        path, question = _image(args, task), _question(args, task)
        facts: SceneFacts = await asyncio.to_thread(self.reader.read, path)
        lines = facts.lines()
        reply: VisualReply = await _ask(
            self.llm, "composed_vqa", _VQA_SCHEMA, VisualReply, facts=lines, question=question
        )
        problems = unsupported_claims(reply.answer, facts, question) if reply.answerable else []
        supported = reply.answerable and bool(reply.answer.strip()) and not problems
        summary = {
            "question": question,
            "facts": lines,
            "counts": facts.counts(),
            "colours": [c.model_dump() for c in facts.colours],
            "composed_from": self.card.composed_from,
        }
        if supported:
            answer = reply.answer.strip()
            return {"text": answer, "json": {**summary, "answer": answer, "supported": True}}
        text = f'The facts I have about {facts.image} ({facts.summary()}) do not say: "{question}".'
        rejected = {"answer": reply.answer, "problems": problems} if problems else None
        return {"text": text, "json": {**summary, "answer": None, "supported": False, "rejected": rejected}}


def composed_experts(experts: Iterable[Expert], llm: LLM) -> list[Expert]:
    """The composed experts built on the registered ones, sharing their models and locks: document QA needs the
    OCR expert; VQA uses whichever of the detectors (the highest priority), the classifier and the OCR are
    available."""
    experts = list(experts)

    def best(kind: type) -> Any:
        found = [e for e in experts if isinstance(e, kind) and e.card.available]
        return max(found, key=lambda e: e.card.priority, default=None)

    detector, classifier = best(ObjectDetectionExpert), best(ImageClassificationExpert)
    ocr = next((e for e in experts if isinstance(e, OCRExpert)), None)
    reader = SceneReader()
    ids = []
    if detector is not None:
        reader.detector, reader.detector_lock = detector.detector, detector.lock
        reader.source_ids["objects"] = detector.card.id
        ids.append(detector.card.id)
    if classifier is not None:
        reader.classifier, reader.classifier_lock = classifier.classifier, classifier.lock
        reader.source_ids["labels"] = classifier.card.id
        ids.append(classifier.card.id)
    if ocr is not None and ocr.card.available:
        reader.ocr = ocr.reader
        reader.source_ids["text"] = ocr.card.id
        ids.append(ocr.card.id)
    found: list[Expert] = [VisualQAExpert(reader, llm, model_ids=ids)]
    if ocr is not None:
        found.append(DocumentQAExpert(ocr.reader, llm, ocr_id=ocr.card.id, available=ocr.card.available))
    return found
