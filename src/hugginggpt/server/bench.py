"""Server latency benchmark: p50/p95 of `/v1/chat/completions` at concurrency 1 and N, with a scripted LLM, real
experts (the LLM text experts) and a real uvicorn on 127.0.0.1, so what is measured is the server and pipeline."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import BaseModel

from ..config import Settings
from ..experts.llm import llm_experts
from ..experts.registry import ExpertRegistry
from ..llm.protocol import Message
from ..llm.scripted import ScriptedLLM
from ..pipeline import HuggingGPT
from ..prompts import render
from .app import create_app


class LevelResult(BaseModel):
    """Latencies of `requests` requests sent `concurrency` at a time."""

    concurrency: int
    requests: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    wall_s: float
    throughput_rps: float


class BenchReport(BaseModel):
    llm_delay_s: float
    levels: list[LevelResult]

    def ratios(self) -> dict[str, float]:
        """Each level against the first (concurrency 1): latency and throughput ratios."""
        base = self.levels[0]
        out: dict[str, float] = {}
        for level in self.levels[1:]:
            out[f"p50 x{level.concurrency} / x{base.concurrency}"] = round(level.p50_ms / base.p50_ms, 2)
            out[f"p95 x{level.concurrency} / x{base.concurrency}"] = round(level.p95_ms / base.p95_ms, 2)
            out[f"throughput x{level.concurrency} / x{base.concurrency}"] = round(
                level.throughput_rps / base.throughput_rps, 2
            )
        return out


def _controller(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    """Plans every request as summarization -> translation (four LLM calls a request, as a real run makes)."""
    request = next(m.content for m in reversed(messages) if m.role == "user")
    if schema is not None and "tasks" in schema.get("properties", {}):
        tasks = [
            {"task": "summarization", "id": 0, "dep": [], "args": {"text": request}},
            {"task": "translation", "id": 1, "dep": [0], "args": {"text": "<resource>-0", "tgt_lang": "French"}},
        ]
        return json.dumps({"tasks": tasks})
    if messages[0].role == "system" and messages[0].content == render("response_system.j2"):
        return "I summarised your text and translated the summary into French. " * 3
    return "a short text that stands for a model's output"


def bench_pipeline(settings: Settings, llm_delay: float = 0.0) -> HuggingGPT:
    llm = ScriptedLLM(fallback=_controller, delay=llm_delay)
    return HuggingGPT(llm, ExpertRegistry(llm_experts(llm)), settings=settings)


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _level(client: httpx.AsyncClient, concurrency: int, requests: int) -> LevelResult:
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(number: int) -> None:
        async with slots:
            body = {"model": "hugginggpt", "messages": [{"role": "user", "content": f"request {number}: some text"}]}
            start = time.perf_counter()
            response = await client.post("/v1/chat/completions", json=body)
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()

    start = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(requests)))
    wall = time.perf_counter() - start
    return LevelResult(
        concurrency=concurrency,
        requests=requests,
        p50_ms=round(_percentile(latencies, 50) * 1000, 1),
        p95_ms=round(_percentile(latencies, 95) * 1000, 1),
        mean_ms=round(statistics.fmean(latencies) * 1000, 1),
        wall_s=round(wall, 3),
        throughput_rps=round(requests / wall, 1),
    )


async def _measure(url: str, levels: Sequence[int], requests: int) -> list[LevelResult]:
    limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=max(levels))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await _level(client, max(levels), max(levels))  # warm up: connections, imports, first-call costs
        return [await _level(client, level, requests) for level in levels]


def serve_bench_app(settings_json: str, port: int, llm_delay: float) -> None:
    """The benchmark server's process: the bench pipeline behind the real app on 127.0.0.1:`port`."""
    settings = Settings.model_validate_json(settings_json)
    app = create_app(bench_pipeline(settings, llm_delay), settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the benchmark server exited before it was up")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the benchmark server did not come up within {timeout:g} s")


def bench_server(
    *, requests: int = 40, levels: Sequence[int] = (1, 20), llm_delay: float = 0.0, workdir: Path | None = None
) -> BenchReport:
    """Start a server in a child process on a free loopback port, send `requests` requests at each concurrency
    level from this process, stop it. Client and server are separate processes, as in real use."""
    with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-") as scratch:
        root = Path(workdir or scratch)
        settings = Settings(
            db=root / "bench.db",
            output_dir=root / "outputs",
            max_runs_per_key=max(levels),
            selection="top",
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        code = (
            "import sys; from hugginggpt.server.bench import serve_bench_app; "
            "serve_bench_app(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))"
        )
        argv = [sys.executable, "-c", code, settings.model_dump_json(), str(port), str(llm_delay)]
        process = subprocess.Popen(argv)
        try:
            _wait_until_up(url, process)
            results = asyncio.run(_measure(url, levels, requests))
        finally:
            process.terminate()
            process.wait(timeout=30)
    return BenchReport(llm_delay_s=llm_delay, levels=results)
