"""Shared parts of the server tests: small real experts, a scripted controller LLM, and a live uvicorn server."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import struct
import threading
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from hugginggpt.config import Settings
from hugginggpt.errors import ExpertError
from hugginggpt.experts.llm import llm_experts
from hugginggpt.experts.protocol import ExpertContext, LocalExpert, Outputs
from hugginggpt.experts.registry import ExpertRegistry
from hugginggpt.llm.protocol import Message
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import HuggingGPT
from hugginggpt.prompts import render
from hugginggpt.types import ModelCard
from localserver import serving

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 40)}


def _card(model_id: str, task: str, description: str) -> ModelCard:
    return ModelCard(id=model_id, task=task, backend="embedded", available=True, description=description)


class Painter(LocalExpert):
    """text-to-image: a real PNG, filled with the first colour named in the text, with a circle on it."""

    def __init__(self) -> None:
        super().__init__(_card("test/painter", "text-to-image", "paints a flat PNG in the colour the text names"))

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        text = args["text"].lower()
        color = next((rgb for name, rgb in COLORS.items() if name in text), (128, 128, 128))
        image = Image.new("RGB", (96, 64), color)
        ImageDraw.Draw(image).ellipse((28, 12, 68, 52), outline=(255, 255, 255), width=3)
        path = ctx.output_path(".png")
        image.save(path)
        return {"image": ctx.artifact(path, "image")}


class Speaker(LocalExpert):
    """text-to-speech: a real WAV (stdlib `wave`), one short tone per word."""

    def __init__(self) -> None:
        super().__init__(_card("test/speaker", "text-to-speech", "beeps once per word, as 16-bit mono WAV"))

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        rate = 8000
        frames = bytearray()
        for number, _ in enumerate(args["text"].split()[:20]):
            pitch = 440 + 40 * number
            frames += b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * pitch * i / rate))) for i in range(rate // 10)
            )
            frames += b"\0\0" * (rate // 20)
        path = ctx.output_path(".wav")
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(bytes(frames))
        return {"audio": ctx.artifact(path, "audio")}


class Describer(LocalExpert):
    """image-to-text: reads the image with PIL and says its size and dominant colour."""

    def __init__(self) -> None:
        super().__init__(_card("test/describer", "image-to-text", "names an image's size and main colour"))

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        with Image.open(args["image"]) as image:
            rgb = image.convert("RGB")
            pixel = rgb.getpixel((2, 2))
            name = min(COLORS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLORS[c], pixel, strict=True)))
            return {"text": f"a {rgb.width}x{rgb.height} {name} image"}


class Gate:
    """text-classification under the test's control: `fail` raises, `block` waits until the test opens the gate."""

    def __init__(self) -> None:
        self.card = _card("test/gate", "text-classification", "labels a text; can fail or wait on purpose")
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.cancelled = threading.Event()

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        text = args["text"]
        if "fail" in text:
            raise ExpertError("the gate refused this text")
        if "block" in text:
            self.entered.set()
            try:
                while not self.opened.is_set():
                    await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return {"text": f"label: {'long' if len(text) > 20 else 'short'}"}


def _last_user(messages: Sequence[Message]) -> str:
    return next(m.content for m in reversed(messages) if m.role == "user")


def _history_file(messages: Sequence[Message], suffix: str) -> str | None:
    found = None
    for message in messages:
        if message.role == "assistant":
            for name in re.findall(r"[\w./-]+\." + suffix, message.content):
                found = name
    return found


def plan_for(request: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """A small rule-based planner: `draw <colour thing>`, `... and describe it`, `say <words>`,
    `describe <file>` / `describe the picture` (the last one from history), `gate <text>`, `summarize <text>`."""
    first = request.splitlines()[0]
    attached = re.search(r"Attached files: (.+)$", request, re.MULTILINE)
    tasks: list[dict[str, Any]] = []
    if match := re.match(r"draw (.+?)( and describe it)?$", first):
        tasks.append({"task": "text-to-image", "id": 0, "dep": [], "args": {"text": match.group(1)}})
        if match.group(2):
            tasks.append({"task": "image-to-text", "id": 1, "dep": [0], "args": {"image": "<resource>-0"}})
    elif match := re.match(r"say (.+)$", first):
        tasks.append({"task": "text-to-speech", "id": 0, "dep": [], "args": {"text": match.group(1)}})
    elif match := re.match(r"describe (.+)$", first):
        target = match.group(1)
        if attached:
            target = attached.group(1).split(", ")[0]
        elif target == "the picture":
            target = _history_file(messages, "png") or "missing.png"
        tasks.append({"task": "image-to-text", "id": 0, "dep": [], "args": {"image": target}})
    elif match := re.match(r"gate (.+)$", first):
        tasks.append({"task": "text-classification", "id": 0, "dep": [], "args": {"text": match.group(1)}})
    elif match := re.match(r"summarize (.+)$", first):
        tasks.append({"task": "summarization", "id": 0, "dep": [], "args": {"text": match.group(1)}})
    return tasks


def controller(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    """Answers every controller call from the messages alone, so concurrent runs never take each other's replies."""
    if schema is not None and "tasks" in schema.get("properties", {}):
        request = _last_user(messages)
        if request.startswith("crash"):
            raise RuntimeError("the controller crashed on purpose")
        return json.dumps({"tasks": plan_for(request, messages)})
    if messages[0].role == "system" and messages[0].content == render("response_system.j2"):
        prompt = _last_user(messages)
        request = prompt.split("\nHere is what the models returned", 1)[0].split("\n(No models", 1)[0].strip()
        outputs = re.findall(r'"(?:text|label)": "([^"]*)"', prompt)
        files = re.findall(r'"(?:image|audio)": "([^"]*)"', prompt)
        parts = [f"Answer to [{request.splitlines()[0]}]."]
        if outputs:
            parts.append("Results: " + "; ".join(outputs) + ".")
        if files:
            parts.append("Files: " + ", ".join(files) + ".")
        return " ".join(parts)
    return "summary: " + _last_user(messages).splitlines()[-1][:60]


def make_pipeline(settings: Settings, gate: Gate | None = None, delay: float = 0.0) -> HuggingGPT:
    llm = ScriptedLLM(fallback=controller, delay=delay, chunk=6)
    experts = ExpertRegistry([Painter(), Speaker(), Describer(), gate or Gate(), *llm_experts(llm)])
    return HuggingGPT(llm, experts, settings=settings)


def settings_for(tmp: Path, **values: Any) -> Settings:
    if "HUGGINGGPT_DB" not in os.environ:
        values.setdefault("db", tmp / "server.db")
    values.setdefault("output_dir", tmp / "outputs")
    values.setdefault("selection", "top")
    return Settings(**values)


class LiveServer:
    """A real uvicorn serving `app` on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        self._serving = serving(app, lifespan="on", timeout_graceful_shutdown=5)
        self.url = ""
        self.port = 0

    def __enter__(self) -> LiveServer:
        self.url = self._serving.__enter__()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(*exc)


def wait_for(condition: Any, what: str, timeout: float = 20.0) -> None:
    """Wait (bounded) until `condition()` is true; fail naming `what` if it never is."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def sse_events(lines: Any) -> list[tuple[str, dict[str, Any]]]:
    """Parse `event:`/`data:` frames from an iterator of text lines into (type, data) pairs."""
    events = []
    kind, data = None, []
    for line in lines:
        if line == "":
            if data:
                events.append((kind or "message", json.loads("\n".join(data))))
            kind, data = None, []
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
    return events


class Served(LiveServer):
    """A live server of the test pipeline, with its settings and the gate expert the test controls."""

    def __init__(self, tmp: Path, *, delay: float = 0.0, **values: Any) -> None:
        from hugginggpt.server.app import create_app

        self.settings = settings_for(tmp, **values)
        self.gate = Gate()
        self.gpt = make_pipeline(self.settings, self.gate, delay=delay)
        super().__init__(create_app(self.gpt, self.settings))

    def __enter__(self) -> Served:
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.opened.set()
        super().__exit__(*exc)
