"""The embedded expert set: offline models whose weights ship inside installed packages, each with its card."""

from __future__ import annotations

import threading

from ..config import Settings
from ..embedding import MODEL_ID as MINILM_ID
from ..embedding import SentenceEmbedder
from ..types import ModelCard
from .faces import FaceExpert, cascade_file
from .ocr import OCRExpert
from .protocol import LocalExpert
from .speech import PiperExpert, WhisperExpert, piper_voice_files, whisper_model_dir
from .text import (
    NERExpert,
    RetrievalQAExpert,
    SentimentExpert,
    SimilarityExpert,
    SummaryExpert,
    ZeroShotExpert,
    spacy_available,
)
from .weights import importable, package_file


def _card(
    model_id: str,
    task: str,
    description: str,
    license_: str,
    available: bool,
    *tags: str,
    requires: tuple[str, ...] = (),
    priority: int = 0,
    specialty: tuple[str, ...] = (),
    not_for: str = "",
) -> ModelCard:
    return ModelCard(
        id=model_id,
        task=task,
        backend="embedded",
        available=available,
        license=license_,
        description=description,
        tags=["embedded", *tags],
        requires=list(requires),
        priority=priority,
        specialty=list(specialty),
        not_for=not_for,
    )


# What a request says when it asks for the text written in an image, or for the sentiment of a text.
OCR_WORDS = (
    "text", "read", "written", "writing", "words", "word", "says", "say", "sign", "ocr", "letters", "printed",
    "label", "handwriting", "title", "headline", "number plate", "transcribe",
)  # fmt: skip
SENTIMENT_WORDS = (
    "sentiment", "positive", "negative", "neutral", "opinion", "mood", "tone", "feel", "feeling", "happy",
    "angry", "emotion", "like it", "review",
)  # fmt: skip


def _ocr_present() -> bool:
    models = ("PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx")
    return importable("rapidocr", "onnxruntime", "cv2") and all(package_file("rapidocr", "models", m) for m in models)


def embedded_experts(settings: Settings) -> list[LocalExpert]:
    """Every embedded expert, loaded lazily on first use; `card.available` says whether its package is importable
    and its weights are present. Experts built on one model (MiniLM) share that model and its lock."""
    threads = settings.expert_threads
    embedder = SentenceEmbedder(threads=threads)
    minilm_lock = threading.Lock()
    minilm = embedder.available and importable("onnxruntime", "tokenizers", "numpy")
    whisper = whisper_model_dir() is not None and importable("faster_whisper", "ctranslate2")
    piper = piper_voice_files() is not None and importable("piper", "onnxruntime")
    return [
        OCRExpert(
            _card(
                "rapidocr/PP-OCRv6-small",
                "image-to-text",
                "OCR: reads the printed text in an image, line by line with boxes (PP-OCRv6 via RapidOCR, ONNX). "
                "Reads text only; does not describe the picture.",
                "Apache-2.0",
                _ocr_present(),
                "ocr",
                "onnx",
                specialty=OCR_WORDS,
                not_for="describing what a picture shows",
            ),
            threads=threads,
        ),
        WhisperExpert(
            _card(
                "openai/whisper-tiny.en",
                "automatic-speech-recognition",
                "Whisper tiny.en (CTranslate2 int8, faster-whisper): transcribes English speech to text, with "
                "timed segments. English only.",
                "MIT",
                whisper,
                "whisper",
                "ctranslate2",
            ),
            threads=threads,
        ),
        PiperExpert(
            _card(
                "piper/en_US-joe-medium",
                "text-to-speech",
                "piper TTS with the en_US joe (medium) voice: reads English text aloud as a 22.05 kHz WAV.",
                "GPL-3.0-or-later (piper-tts); voice MIT",
                piper,
                "piper",
                "onnx",
            )
        ),
        SimilarityExpert(
            _card(
                MINILM_ID,
                "sentence-similarity",
                "all-MiniLM-L6-v2 (int8 ONNX): cosine similarity of the sentence embeddings of two texts.",
                "Apache-2.0",
                minilm,
                "onnx",
            ),
            embedder,
            minilm_lock,
        ),
        ZeroShotExpert(
            _card(
                MINILM_ID,
                "text-classification",
                "zero-shot: picks one of the given labels (needs the labels parameter) by MiniLM similarity of the "
                'text to "This text is about {label}."',
                "Apache-2.0",
                minilm,
                "zero-shot",
                "onnx",
                requires=("labels",),
            ),
            embedder,
            minilm_lock,
        ),
        RetrievalQAExpert(
            _card(
                MINILM_ID,
                "question-answering",
                "retrieval: answers with the one sentence of the context most similar to the question (MiniLM "
                "embeddings); it quotes, it does not reason.",
                "Apache-2.0",
                minilm,
                "retrieval",
                "onnx",
                specialty=("quote", "sentence", "exact words", "retrieve", "passage"),
                not_for="questions whose answer needs reasoning or is not written in one sentence of the context",
            ),
            embedder,
            minilm_lock,
        ),
        NERExpert(
            _card(
                "spacy/en_core_web_sm",
                "token-classification",
                "spaCy en_core_web_sm 3.8 NER: finds named entities in English text (PERSON, GPE places, ORG, "
                "DATE, …) as character spans.",
                "MIT",
                spacy_available(),
                "ner",
                "spacy",
            )
        ),
        SentimentExpert(
            _card(
                "cjhutto/vaderSentiment",
                "text-classification",
                "VADER sentiment (lexicon and rules): labels English text positive, negative or neutral. Use it "
                "when no other labels are asked for.",
                "MIT",
                importable("vaderSentiment"),
                "sentiment",
                specialty=SENTIMENT_WORDS,
                not_for="labels other than positive, negative and neutral",
            )
        ),
        SummaryExpert(
            _card(
                "sumy/lex-rank",
                "summarization",
                "extractive summary (LexRank via sumy): keeps the most central sentences of the text, about a "
                "third, in their order; writes nothing new.",
                "Apache-2.0",
                importable("sumy", "nltk", "numpy"),
                "extractive",
                specialty=("extractive", "key sentence", "most important sentence", "main sentence", "excerpt"),
                not_for="summaries in new words; very short texts",
            )
        ),
        FaceExpert(
            _card(
                "opencv/haarcascade_frontalface_alt",
                "object-detection",
                "face detector only (OpenCV Haar cascade): boxes frontal human faces and draws them; finds no other "
                "objects, gives no scores.",
                "Apache-2.0; cascade: Intel BSD-style",
                cascade_file() is not None,
                "faces",
                "opencv",
                priority=-1,
                specialty=("face", "facial"),
                not_for="any object other than frontal human faces: people, animals, vehicles, things",
            )
        ),
    ]
