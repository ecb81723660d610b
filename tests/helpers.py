"""Test parts: small real experts, and a local HTTP server that speaks the OpenAI chat-completions API."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from hugginggpt.errors import ExpertError
from hugginggpt.experts.protocol import ExpertContext, LocalExpert, Outputs
from hugginggpt.types import ModelCard


def card(task: str, model_id: str, downloads: int = 0) -> ModelCard:
    return ModelCard(id=model_id, task=task, backend="embedded", available=True, downloads=downloads)


class DrawExpert(LocalExpert):
    """text-to-image: draws the prompt's words onto a PNG."""

    def __init__(self, model_id: str = "test/draw", downloads: int = 0) -> None:
        super().__init__(card("text-to-image", model_id, downloads))

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        image = Image.new("RGB", (160, 80), "white")
        ImageDraw.Draw(image).text((5, 30), args["text"][:30], fill="black")
        path = ctx.output_path(".png")
        image.save(path)
        return {"image": ctx.artifact(path, "image")}


class ColourExpert(LocalExpert):
    """image-classification: labels an image by its dominant colour channel."""

    def __init__(self, model_id: str = "test/colour", downloads: int = 0) -> None:
        super().__init__(card("image-classification", model_id, downloads))

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        with Image.open(args["image"]) as image:
            size = list(image.size)
            r, g, b = image.convert("RGB").resize((1, 1)).getpixel((0, 0))
        label = max((("red", r), ("green", g), ("blue", b)), key=lambda x: x[1])[0]
        return {"text": label, "json": {"label": label, "size": size}}


class SleepExpert:
    """Any task: sleeps, then echoes its text. Records when it ran, so tests can see overlap."""

    def __init__(self, task: str, model_id: str, seconds: float = 0.2, downloads: int = 0) -> None:
        self.card = card(task, model_id, downloads)
        self.seconds = seconds
        self.intervals: list[tuple[float, float]] = []

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        start = time.monotonic()
        await asyncio.sleep(self.seconds)
        self.intervals.append((start, time.monotonic()))
        return {"text": f"{self.card.task}: {args.get('text', '')}"}


class CrashExpert:
    def __init__(self, task: str, model_id: str = "test/crash") -> None:
        self.card = card(task, model_id)

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        raise RuntimeError("model exploded")


class HangExpert(LocalExpert):
    """Blocks its worker thread until released: a hung model."""

    def __init__(self, task: str, model_id: str = "test/hang") -> None:
        super().__init__(card(task, model_id))
        self.release = threading.Event()

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        self.release.wait(10)
        return {"text": "late"}


def write_png(path: Path, colour: str = "red", size: tuple[int, int] = (32, 32)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve a stdlib request handler on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


Handler = Callable[[dict[str, Any]], "Reply"]


class Reply:
    """What the fake endpoint answers: a status, a JSON body, or SSE chunks of text."""

    def __init__(
        self,
        text: str | None = None,
        *,
        status: int = 200,
        body: Any = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
        finish_reason: str = "stop",
        break_after: int | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        self.text = text
        self.status = status
        self.body = body
        self.delay = delay
        self.headers = headers or {}
        self.finish_reason = finish_reason
        # Streamed: send this many text chunks, then drop the connection before the body ends (a broken stream).
        self.break_after = break_after
        # Streamed: a last chunk with this usage and no choices (what `stream_options.include_usage` asks for).
        self.usage = usage


class OpenAIServer:
    """A real HTTP server on 127.0.0.1 answering POST /v1/chat/completions (plain and SSE) from a handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": "not found"})
                    return
                reply = server.handler(body)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status != 200 or reply.body is not None:
                    self._send(reply.status, reply.body or {"error": {"message": "scripted error"}}, reply.headers)
                    return
                text = reply.text or ""
                if body.get("stream") and reply.break_after is not None:
                    pieces = [
                        {"choices": [{"index": 0, "delta": {"content": text[start : start + 5]}}]}
                        for start in range(0, len(text), 5)
                    ]
                    sent = "".join(f"data: {json.dumps(p)}\n\n" for p in pieces[: reply.break_after]).encode()
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("content-length", str(len(sent) + 1000))  # promises more than it sends
                    self.end_headers()
                    self.wfile.write(sent)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    for start in range(0, len(text), 5):
                        chunk = {"choices": [{"index": 0, "delta": {"content": text[start : start + 5]}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    final = {"choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]}
                    if reply.usage is not None:
                        usage_chunk = {"choices": [], "usage": reply.usage}
                        self.wfile.write(f"data: {json.dumps(final)}\n\ndata: {json.dumps(usage_chunk)}\n\n".encode())
                        self.wfile.write(b"data: [DONE]\n\n")
                        return
                    self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
                    return
                message = {"role": "assistant", "content": text}
                usage = {"prompt_tokens": 11, "completion_tokens": 7}
                choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
                self._send(200, {"choices": [choice], "usage": usage})

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self._serving = http_server(_Handler)
        self.url = ""

    def __enter__(self) -> OpenAIServer:
        self.url = self._serving.__enter__() + "/v1"
        return self

    def __exit__(self, *exc: Any) -> None:
        self._serving.__exit__(*exc)


def role_of(messages: list[dict[str, Any]] | list[Any]) -> str:
    """Which stage a request comes from, by its system prompt: planning, selection, response or expert."""
    first = messages[0]
    content = first["content"] if isinstance(first, dict) else first.content
    role = first["role"] if isinstance(first, dict) else first.role
    if role != "system":
        return "expert"
    if "planner of HuggingGPT" in content:
        return "planning"
    if "choose AI models" in content:
        return "selection"
    return "response"


class AnswerExpert:
    """A question-answering task (document or visual QA): gives a fixed answer, or fails when `answer` is None.
    Records the args it was asked with."""

    def __init__(self, task: str, model_id: str, answer: str | None) -> None:
        self.card = card(task, model_id)
        self.answer = answer
        self.asked: list[dict[str, str]] = []

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        self.asked.append(dict(args))
        if self.answer is None:
            raise ExpertError(f"no readable text found in {Path(args['image']).name}")
        return {"text": self.answer}
