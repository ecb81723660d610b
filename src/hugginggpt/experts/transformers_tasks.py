"""What transformers runs for each task type: the pipeline or `AutoModelFor...` class that serves it, and one call of
it with its outputs turned into ours (labels, entities, files, scores). `transformers.py` loads and places the models.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ExpertError
from .media import (
    detection_output,
    image_output,
    labels_output,
    need,
    num,
    open_image,
    read_wav,
    segmentation_output,
    write_wav,
)
from .protocol import ExpertContext, Outputs

# Our task type -> the transformers pipeline that serves it.
PIPELINE_TASKS: dict[str, str] = {
    "text-classification": "text-classification",
    "token-classification": "token-classification",
    "text-generation": "text-generation",
    "conversational": "text-generation",
    "sentence-similarity": "feature-extraction",
    "object-detection": "object-detection",
    "image-classification": "image-classification",
    "image-to-text": "image-text-to-text",
    "visual-question-answering": "image-text-to-text",
    "image-segmentation": "image-segmentation",
    "depth-estimation": "depth-estimation",
    "text-to-speech": "text-to-audio",
    "automatic-speech-recognition": "automatic-speech-recognition",
    "audio-classification": "audio-classification",
    "document-question-answering": "document-question-answering",
}
# Tasks transformers 5 has no pipeline for, served by an AutoModel class and a few lines of our own.
SEQ2SEQ_TASKS = ("summarization", "translation", "text2text-generation")
QA_TASK = "question-answering"
TASKS: tuple[str, ...] = (*PIPELINE_TASKS, *SEQ2SEQ_TASKS, QA_TASK)


def runner_kind(task: str) -> str:
    """What a task's model loads as: a `pipeline`, or a tokenizer and a `seq2seq` or `qa` AutoModel."""
    if task in SEQ2SEQ_TASKS:
        return "seq2seq"
    if task == QA_TASK:
        return "qa"
    return "pipeline"


def run_task(task: str, runner: Any, args: dict[str, str], ctx: ExpertContext, max_new_tokens: int) -> Outputs:
    """One call of a loaded runner (what `runner_kind` loads) on a task's args, its outputs typed as ours."""
    import torch

    with torch.inference_mode():
        if task in SEQ2SEQ_TASKS:
            return _seq2seq(task, runner, args, max_new_tokens)
        if task == QA_TASK:
            return _extractive_qa(runner, args)
        return _PIPELINE_RUNNERS[task](runner, args, ctx, max_new_tokens)


def _text_classification(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    return labels_output(pipe(need(args, "text"), top_k=None))


def _token_classification(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    found = pipe(need(args, "text"), aggregation_strategy="simple")
    entities = [
        {
            "word": str(e["word"]),
            "entity": str(e.get("entity_group") or e.get("entity")),
            "score": num(e["score"]),
            "start": None if e.get("start") is None else int(e["start"]),
            "end": None if e.get("end") is None else int(e["end"]),
        }
        for e in found
    ]
    text = ", ".join(f"{e['word']} ({e['entity']})" for e in entities) or "no entities found"
    return {"text": text, "json": {"entities": entities}}


def _generated(value: Any) -> str:
    if isinstance(value, list):  # chat input: the conversation comes back, the reply last
        return str(value[-1].get("content", "")) if value else ""
    return str(value)


def _text_generation(pipe: Any, args: dict[str, str], ctx: ExpertContext, max_new_tokens: int) -> Outputs:
    text = need(args, "text")
    chat = getattr(pipe.tokenizer, "chat_template", None) is not None
    prompt: Any = [{"role": "user", "content": text}] if chat else text
    out = pipe(prompt, max_new_tokens=max_new_tokens, return_full_text=False, do_sample=False)
    return {"text": _generated(out[0]["generated_text"]).strip()}


def _sentence_similarity(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    import torch

    vectors = []
    for key in ("text", "text_2"):
        features = torch.as_tensor(pipe(need(args, key), return_tensors=False)[0], dtype=torch.float32)
        vectors.append(features.mean(dim=0))
    score = float(torch.nn.functional.cosine_similarity(vectors[0], vectors[1], dim=0))
    return {"text": f"similarity {score:.3f}", "json": {"similarity": num(score)}}


def _object_detection(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    path = need(args, "image")
    return detection_output(path, pipe(open_image(path), threshold=float(args.get("threshold") or 0.5)), ctx)


def _image_classification(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    return labels_output(pipe(open_image(need(args, "image")), top_k=5))


def _image_text(pipe: Any, args: dict[str, str], ctx: ExpertContext, max_new_tokens: int) -> Outputs:
    prompt = args.get("text") or "Describe this image."
    image = open_image(need(args, "image"))
    out = pipe(images=image, text=prompt, max_new_tokens=max_new_tokens, return_full_text=False)
    return {"text": _generated(out[0]["generated_text"]).strip()}


def _image_segmentation(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    path = need(args, "image")
    return segmentation_output(path, pipe(open_image(path)), ctx)


def _depth_estimation(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    depth = pipe(open_image(need(args, "image")))["depth"]
    return image_output(depth, ctx, f"depth map {depth.size[0]}x{depth.size[1]}")


def _text_to_speech(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    import numpy as np

    out = pipe(need(args, "text"))
    samples = np.asarray(out["audio"], dtype=np.float32).reshape(-1)
    rate = int(out["sampling_rate"])
    path = ctx.output_path(".wav")
    write_wav(path, samples, rate)
    return {"audio": ctx.artifact(path, "audio", "audio/wav"), "text": f"{len(samples) / rate:.2f} s of speech"}


def _audio(args: dict[str, str]) -> Any:
    path = Path(need(args, "audio"))
    if path.suffix.lower() != ".wav":
        return str(path)  # transformers decodes other formats with ffmpeg
    samples, rate = read_wav(path)
    return {"raw": samples, "sampling_rate": rate}


def _speech_recognition(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    return {"text": str(pipe(_audio(args))["text"]).strip()}


def _audio_classification(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    return labels_output(pipe(_audio(args), top_k=5))


def _document_qa(pipe: Any, args: dict[str, str], ctx: ExpertContext, _: int) -> Outputs:
    found = pipe(image=open_image(need(args, "image")), question=need(args, "text"))
    if not found:
        raise ExpertError("the model found no answer")
    best = found[0]
    return {"text": str(best["answer"]), "json": {"answer": str(best["answer"]), "score": num(best["score"])}}


_PIPELINE_RUNNERS: dict[str, Callable[[Any, dict[str, str], ExpertContext, int], Outputs]] = {
    "text-classification": _text_classification,
    "token-classification": _token_classification,
    "text-generation": _text_generation,
    "conversational": _text_generation,
    "sentence-similarity": _sentence_similarity,
    "object-detection": _object_detection,
    "image-classification": _image_classification,
    "image-to-text": _image_text,
    "visual-question-answering": _image_text,
    "image-segmentation": _image_segmentation,
    "depth-estimation": _depth_estimation,
    "text-to-speech": _text_to_speech,
    "automatic-speech-recognition": _speech_recognition,
    "audio-classification": _audio_classification,
    "document-question-answering": _document_qa,
}


def _seq2seq(task: str, runner: tuple[Any, Any], args: dict[str, str], max_new_tokens: int) -> Outputs:
    tokenizer, model = runner
    text = need(args, "text")
    params = getattr(model.config, "task_specific_params", None) or {}
    if task == "summarization":
        text = str(params.get("summarization", {}).get("prefix", "")) + text
    elif task == "translation" and model.config.model_type == "t5":
        text = f"translate English to {args.get('tgt_lang') or 'German'}: {text}"
    limit = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 1024)
    inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=limit).to(model.device)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return {"text": tokenizer.decode(output[0], skip_special_tokens=True).strip()}


def _extractive_qa(runner: tuple[Any, Any], args: dict[str, str]) -> Outputs:
    import torch

    tokenizer, model = runner
    question, context = need(args, "text"), need(args, "text_2")
    encoded = tokenizer(
        question, context, truncation="only_second", max_length=384, return_offsets_mapping=True, return_tensors="pt"
    )
    offsets = encoded.pop("offset_mapping")[0].tolist()
    in_context = torch.tensor([s == 1 for s in encoded.sequence_ids(0)])
    logits = model(**encoded.to(model.device))
    start = logits.start_logits[0].float().cpu().masked_fill(~in_context, -math.inf)
    end = logits.end_logits[0].float().cpu().masked_fill(~in_context, -math.inf)
    scores = start[:, None] + end[None, :]
    allowed = torch.triu(torch.ones_like(scores, dtype=torch.bool)) & ~torch.triu(
        torch.ones_like(scores, dtype=torch.bool), diagonal=30
    )
    scores = scores.masked_fill(~allowed, -math.inf)
    best = int(scores.argmax())
    first, last = divmod(best, scores.shape[1])
    if not math.isfinite(float(scores[first, last])):
        raise ExpertError("the model found no answer in the context")
    answer = context[offsets[first][0] : offsets[last][1]].strip()
    probability = float(torch.softmax(scores.flatten(), 0)[best])
    return {"text": answer, "json": {"answer": answer, "score": num(probability)}}
