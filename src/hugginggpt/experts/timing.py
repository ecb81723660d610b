"""Load time and latency of the embedded experts, each run on an input made on the spot."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from ..types import ModelCard
from ..workspace import Workspace
from .protocol import ExpertContext, LocalExpert

SAMPLE_TEXT = (
    "The city council met on Tuesday to debate new bicycle lanes. Supporters said the lanes would make streets "
    "safer for children riding to school. Shop owners worried that losing parking spaces would cost them customers. "
    "The mayor proposed a six-month trial on two main streets. Traffic engineers will count cyclists, cars and "
    "accidents during the trial. The council will vote on a permanent plan after the trial ends. Local newspapers "
    "printed letters from both sides all week, and a petition for the lanes gathered four thousand signatures."
)
SAMPLE_SPEECH = "Please read the text in this picture and count the zebras in the other one."


class ExpertTiming(BaseModel):
    """One expert's measured load time (first use) and median latency over warm runs, in seconds."""

    task: str
    id: str
    load_s: float | None = None
    latency_s: float | None = None
    runs: int = 0
    shares_model_with: str | None = None
    error: str | None = None


def _draw_text_image(path: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (800, 240), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    draw.text((30, 40), "Zebras cross the road", fill="black", font=font)
    draw.text((30, 130), "Speed limit 30 km/h", fill="black", font=font)
    image.save(path)
    return path


def _sample_args(card: ModelCard, folder: Path, audio: Path | None) -> dict[str, str] | None:
    """Arguments for one run of an expert, or None when no sample can be made for it here."""
    task = card.task
    if task in ("image-to-text", "object-detection", "image-classification", "image-segmentation"):
        path = folder / "sample.png"
        return {"image": str(path if path.exists() else _draw_text_image(path))}
    if task == "automatic-speech-recognition":
        return {"audio": str(audio)} if audio else None
    if task == "text-to-speech":
        return {"text": SAMPLE_SPEECH}
    if task == "sentence-similarity":
        return {"text": "A man plays the guitar.", "text_2": "Someone is playing music on a guitar."}
    if task == "question-answering":
        return {"text": "What did shop owners worry about?", "text_2": SAMPLE_TEXT}
    if task == "text-classification" and "zero-shot" in card.tags:
        return {"text": "The striker scored twice in the final.", "labels": "sports, politics, cooking"}
    return {"text": SAMPLE_TEXT}


async def measure_experts(experts: Sequence[LocalExpert], folder: Path, *, runs: int = 3) -> list[ExpertTiming]:
    """Load each available expert (timed), then time `runs` calls (as the pipeline makes them) on a sample input.
    Experts that share a model show the load once, on the first of them. Text-to-speech runs first, so that speech
    recognition can transcribe what it said."""
    folder.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(folder / "outputs", [folder])
    ordered = sorted(experts, key=lambda e: e.card.task != "text-to-speech")
    audio: Path | None = None
    timings = []
    owners: dict[int, str] = {}
    for number, expert in enumerate(ordered):
        timing = ExpertTiming(task=expert.card.task, id=expert.card.id)
        timings.append(timing)
        owner = owners.setdefault(id(expert.lock), expert.card.task)
        if owner != expert.card.task:
            timing.shares_model_with = owner
        if not expert.card.available:
            timing.error = "not available"
            continue
        args = _sample_args(expert.card, folder, audio)
        if args is None:
            timing.error = "no sample input (needs the text-to-speech expert)"
            continue
        try:
            start = time.perf_counter()
            expert.prepare()
            timing.load_s = round(time.perf_counter() - start, 3)
            seconds = []
            for _ in range(runs):
                start = time.perf_counter()
                ctx = ExpertContext(workspace=workspace, task_id=number, task=expert.card.task)
                outputs = await expert.run(args, ctx)
                seconds.append(time.perf_counter() - start)
            timing.latency_s = round(statistics.median(seconds), 5)
            timing.runs = runs
        except Exception as exc:  # a measurement reports every failure and goes on with the next expert
            timing.error = f"{type(exc).__name__}: {exc}"
            continue
        if expert.card.task == "text-to-speech" and "audio" in outputs:
            audio = Path(outputs["audio"].path)
    return timings


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
