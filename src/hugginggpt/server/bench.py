"""Server latency benchmark: p50/p95 of `/v1/chat/completions` at concurrency 1 and N on a real uvicorn on
127.0.0.1. With the scripted LLM (default) and its text experts, what is measured is the server and pipeline; with
`embedded`, the shipped stack (the embedded controller LLM and its slots, the embedded experts) on everyday text
requests, each request a different one so no two share a cached prompt by accident."""

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
    pipeline: str = "scripted"  # or "shipped": HuggingGPT.from_settings, the embedded LLM unless an endpoint is set
    slots: int | None = None  # the embedded LLM's slots (shipped)

    def ratios(self) -> dict[str, float]:
        """Each level against the first (concurrency 1): latency and throughput ratios."""
        base = self.levels[0]
        out: dict[str, float] = {}
        for level in self.levels[1:]:
            out[f"p50 x{level.concurrency} / x{base.concurrency}"] = round(level.p50_ms / base.p50_ms, 2)
            out[f"p95 x{level.concurrency} / x{base.concurrency}"] = round(level.p95_ms / base.p95_ms, 2)
            if base.throughput_rps:
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


# everyday requests for the embedded stack (plan, one LLM-served text task, answer); request n asks the n-th
EVERYDAY = (
    "Translate 'see you tomorrow at the station' into German.",
    "Summarize this: the meeting moved from Monday to Thursday because the manager was ill.",
    "Translate 'the museum opens at ten' into French.",
    "Write a two-line poem about the sea.",
    "Translate 'where is the nearest pharmacy?' into Spanish.",
    "Summarize this: the library will close early on Friday for a staff training day.",
    "Write a one-sentence birthday wish for my sister.",
    "Translate 'the train is twenty minutes late' into Italian.",
)


def _body(number: int, embedded: bool) -> dict[str, Any]:
    content = EVERYDAY[number % len(EVERYDAY)] if embedded else f"request {number}: some text"
    return {"model": "hugginggpt", "messages": [{"role": "user", "content": content}]}


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _level(
    client: httpx.AsyncClient, concurrency: int, requests: int, embedded: bool = False, first: int = 0
) -> LevelResult:
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(number: int) -> None:
        async with slots:
            body = _body(first + number, embedded)
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
        throughput_rps=round(requests / wall, 4),
    )


async def _measure(url: str, levels: Sequence[int], requests: int, embedded: bool = False) -> list[LevelResult]:
    limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=max(levels))
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        # warm up: connections, imports, first-call costs (the embedded stack: one request, its experts loaded)
        await _level(client, 1 if embedded else max(levels), 1 if embedded else max(levels), embedded, first=-1)
        results = []
        for number, level in enumerate(levels):  # each level asks different requests than the one before
            results.append(await _level(client, level, requests, embedded, first=number * requests))
        return results


def serve_bench_app(settings_json: str, port: int, llm_delay: float, embedded: bool = False) -> None:
    """The benchmark server's process: the bench pipeline (or the shipped one) behind the real app on
    127.0.0.1:`port`."""
    settings = Settings.model_validate_json(settings_json)
    gpt = HuggingGPT.from_settings(settings) if embedded else bench_pipeline(settings, llm_delay)
    app = create_app(gpt, settings)
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
    *,
    requests: int = 40,
    levels: Sequence[int] = (1, 20),
    llm_delay: float = 0.0,
    workdir: Path | None = None,
    embedded: bool = False,
    settings: Settings | None = None,
) -> BenchReport:
    """Start a server in a child process on a free loopback port, send `requests` requests at each concurrency
    level from this process, stop it. Client and server are separate processes, as in real use. `embedded`: the
    shipped pipeline from `settings` (the environment's by default) instead of the scripted one."""
    with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-") as scratch:
        root = Path(workdir or scratch)
        base = settings or (Settings() if embedded else Settings(selection="top"))
        settings = base.model_copy(
            update={"db": root / "bench.db", "output_dir": root / "outputs", "max_runs_per_key": max(levels)}
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        code = (
            "import sys; from hugginggpt.server.bench import serve_bench_app; "
            "serve_bench_app(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == 'embedded')"
        )
        mode = "embedded" if embedded else "scripted"
        argv = [sys.executable, "-c", code, settings.model_dump_json(), str(port), str(llm_delay), mode]
        process = subprocess.Popen(argv)
        try:
            _wait_until_up(url, process, timeout=300 if embedded else 60)
            results = asyncio.run(_measure(url, levels, requests, embedded))
        finally:
            process.terminate()
            process.wait(timeout=30)
    if not embedded:
        return BenchReport(llm_delay_s=llm_delay, levels=results)
    return BenchReport(llm_delay_s=0.0, levels=results, pipeline="shipped", slots=settings.llm_slots)
