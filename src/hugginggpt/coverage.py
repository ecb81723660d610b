"""What would serve a task type that no installed model serves: the message a user gets instead of a made-up result."""

from __future__ import annotations

import importlib.util
import os

from .catalog import ModelCatalog

# Well-known Hugging Face models per task type, named as examples of what would serve a task here.
EXAMPLE_MODELS: dict[str, tuple[str, ...]] = {
    "text-classification": ("distilbert/distilbert-base-uncased-finetuned-sst-2-english",),
    "token-classification": ("dslim/bert-base-NER",),
    "text2text-generation": ("google/flan-t5-base",),
    "summarization": ("facebook/bart-large-cnn",),
    "translation": ("Helsinki-NLP/opus-mt-en-fr",),
    "question-answering": ("deepset/roberta-base-squad2",),
    "conversational": ("Qwen/Qwen2.5-1.5B-Instruct",),
    "text-generation": ("Qwen/Qwen2.5-1.5B-Instruct",),
    "sentence-similarity": ("sentence-transformers/all-MiniLM-L6-v2",),
    "tabular-classification": ("microsoft/table-transformer-structure-recognition",),
    "object-detection": ("facebook/detr-resnet-50",),
    "image-classification": ("google/vit-base-patch16-224",),
    "image-to-text": ("Salesforce/blip-image-captioning-base",),
    "text-to-image": ("stabilityai/sdxl-turbo",),
    "image-to-image": ("timbrooks/instruct-pix2pix",),
    "image-segmentation": ("nvidia/segformer-b0-finetuned-ade-512-512",),
    "depth-estimation": ("Intel/dpt-large",),
    "text-to-speech": ("facebook/mms-tts-eng",),
    "automatic-speech-recognition": ("openai/whisper-small",),
    "audio-to-audio": ("speechbrain/sepformer-wham",),
    "audio-classification": ("MIT/ast-finetuned-audioset-10-10-0.4593",),
    "document-question-answering": ("impira/layoutlm-document-qa",),
    "visual-question-answering": ("dandelin/vilt-b32-finetuned-vqa",),
    "text-to-video": ("ali-vilab/text-to-video-ms-1.7b",),
    "image-editing": ("timbrooks/instruct-pix2pix",),
}


def _transformers_installed() -> bool:
    return importlib.util.find_spec("transformers") is not None


def what_would_serve(task: str, catalog: ModelCatalog, *, routing: str = "hybrid") -> str:
    """A plain statement that nothing installed serves `task`, and the concrete ways to serve it here."""
    listed = [c for c in catalog.cards(task) if not c.available]
    examples = [c.id for c in sorted(listed, key=lambda c: -c.downloads)[:2]] or list(EXAMPLE_MODELS.get(task, ()))
    such = f", such as {' or '.join(examples)}" if examples else ""
    ways = []
    if routing != "remote":
        if _transformers_installed():
            ways.append(f"a {task} model{such} in the local Hugging Face cache (the transformers backend runs it)")
        else:
            ways.append(f"the transformers extra (pip install 'hugginggpt[transformers]') with a {task} model{such}")
    if routing != "local":
        token = "HF_TOKEN is set" if os.environ.get("HF_TOKEN") else "set HF_TOKEN"
        ways.append(f"HF Inference ({token}; it needs the network)")
    ways.append("a model server that hosts one (HUGGINGGPT_MODEL_SERVERS)")
    return f"no installed model serves {task}; what would serve it: " + "; or ".join(ways)
