"""Parts of the fault and restart tests: a controller endpoint speaking OpenAI's API that plans by rules and can
hold a reply, and `hugginggpt serve` as a real child process on 127.0.0.1 that a test can SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from helpers import OpenAIServer, Reply, role_of
from hugginggpt.experts.protocol import ExpertContext, LocalExpert, Outputs
from hugginggpt.types import ModelCard
from localserver import free_port

TESTS = str(Path(__file__).parent)


def controller_plan(request: str) -> list[dict[str, Any]]:
    """`say <words>` -> text-to-speech, `summarize <text>` / `slow <text>` -> summarization, else no task."""
    first = request.splitlines()[0]
    if match := re.match(r"say (.+)$", first):
        return [{"task": "text-to-speech", "id": 0, "dep": [], "args": {"text": match.group(1)}}]
    if match := re.match(r"(?:summarize|slow) (.+)$", first):
        return [{"task": "summarization", "id": 0, "dep": [], "args": {"text": match.group(1)}}]
    return []


class Controller(OpenAIServer):
    """The controller LLM as an OpenAI-compatible endpoint. A plan for a request starting `slow` waits until
    `release` is set (a run in flight for as long as the test wants); `held` counts the plans waiting.
    `plan_break_after` / `answer_break_after` drop the connection of each plan / answer stream after that many
    chunks (of 5 characters)."""

    def __init__(self, *, plan_break_after: int | None = None, answer_break_after: int | None = None) -> None:
        super().__init__(self._reply)
        self.release = threading.Event()
        self.held = 0
        self.plan_break_after = plan_break_after
        self.answer_break_after = answer_break_after
        self._count = threading.Lock()

    def _reply(self, body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        request = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        role = role_of(messages)
        if role == "planning":
            if request.startswith("slow"):
                with self._count:
                    self.held += 1
                self.release.wait(120)
            return Reply(json.dumps({"tasks": controller_plan(request)}), break_after=self.plan_break_after)
        if role == "response":
            text = "Done: " + request.splitlines()[0][:80] + ". " + "It went as planned. " * 3
            return Reply(text, break_after=self.answer_break_after)
        return Reply("a short summary of the text")

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        super().__exit__(*exc)


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any HUGGINGGPT_* setting (the cache dir stays), plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUGGINGGPT_") or k == "HUGGINGGPT_CACHE_DIR"}
    return {**env, "HF_HUB_OFFLINE": "1", **values}


class ServeProcess:
    """`hugginggpt serve` in a child process on a free loopback port; `kill()` sends SIGKILL."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> ServeProcess:
        command = [sys.executable, "-m", "hugginggpt.cli", "serve", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"hugginggpt serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"hugginggpt serve did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SlowLabel(LocalExpert):
    """text-classification on a model server: labels a text, or for a text with `hang` in it, touches `entered`
    and then hangs (a model stuck mid-call) until `release` exists. Each call's text is appended to `calls`."""

    def __init__(self, folder: Path) -> None:
        card = ModelCard(id="test/slow-label", task="text-classification", backend="embedded", available=True)
        super().__init__(card)
        self.folder = folder

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        with (self.folder / "calls").open("a") as calls:
            calls.write(args["text"] + "\n")
        if "hang" in args["text"]:
            (self.folder / "entered").touch()
            deadline = time.monotonic() + 120
            while not (self.folder / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return {"text": f"label: {len(args['text'])} characters"}


def serve_models(port: int, root: str) -> None:
    """The model server's process: `SlowLabel` behind the real model-server app on 127.0.0.1:`port`."""
    from hugginggpt.experts.registry import ExpertRegistry
    from hugginggpt.server.model_server import ModelHost, serve

    folder = Path(root)
    host = ModelHost(ExpertRegistry([SlowLabel(folder)]), folder / "requests")
    serve(host, port=port, log_level="warning")


class ModelServerProcess:
    """`serve_models` in a child process on `port` (a free one by default); `kill()` sends SIGKILL."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.entered = root / "entered"
        self.release = root / "release"
        self.calls = root / "calls"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ModelServerProcess:
        for path in (self.entered, self.release, self.calls):
            path.unlink(missing_ok=True)
        code = f"import sys; sys.path.insert(0, {TESTS!r}); from faultkit import serve_models; serve_models(int(sys.argv[1]), sys.argv[2])"
        argv = [sys.executable, "-c", code, str(self.port), str(self.root)]
        self.process = subprocess.Popen(argv, env=clean_env())
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("the model server exited before it was up")
            try:
                if httpx.get(f"{self.url}/running", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("the model server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
