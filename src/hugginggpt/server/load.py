"""Load run: many concurrent conversations over several API keys against a real server process on 127.0.0.1, for a
bounded time, then a check that nothing was lost and nothing crossed keys.

Each conversation uploads a file, then sends requests one after another (each naming a token of its own; every
fourth starts a run and reads its SSE events to the end, the others are chat completions) until the time is up.
Afterwards every conversation is read back with its owner's key (every request must be there as a run that ended
`done`, with its reply, and each answer must carry its own request's token) and with another key (the
conversation, each of its runs, their event streams, files and file contents must all be "not found"). The server's
RSS is sampled throughout. With the scripted LLM (default) what is measured is the server; with `embedded`, the
shipped stack (keep the counts small: a request takes tens of seconds on a laptop).

`python -m hugginggpt.server.load --conversations 50 --keys 5 --seconds 30` or `hugginggpt bench --workload load`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import BaseModel, SecretStr

from ..config import Settings
from ..experts.llm import llm_experts
from ..experts.protocol import ExpertContext, LocalExpert, Outputs
from ..experts.registry import ExpertRegistry
from ..llm.protocol import Message
from ..llm.scripted import ScriptedLLM
from ..pipeline import HuggingGPT
from ..prompts import render
from ..types import ModelCard
from .app import create_app
from .bench import EVERYDAY, _free_port, _percentile, _wait_until_up

_TOKEN = re.compile(r"\bt-\d+-\d+\b")


class LoadReport(BaseModel):
    """What one load run sent, what came back, and what the check afterwards found."""

    pipeline: str  # "scripted" or "shipped"
    conversations: int  # how many ran at once (the concurrency)
    keys: int
    seconds: float  # the time requests were started in
    requests: int  # sent
    answered: int  # 200 with an answer that carries its request's token
    errors: int  # refused, failed, or answered with another request's answer
    lost: int  # sent and answered, but not stored as a finished run with its reply
    cross_key_reads: int  # reads of another key's conversations, runs, events and files
    cross_key_leaks: int  # of those, answered with anything but 404
    files: int  # uploads and artifacts the conversations hold
    p50_ms: float
    p95_ms: float
    throughput_rps: float
    rss_start_mb: float  # the server's RSS after its warm-up request
    rss_peak_mb: float
    rss_end_mb: float
    problems: list[str] = []  # the first few things that went wrong, said plainly

    def lines(self) -> list[str]:
        return [
            f"load ({self.pipeline} LLM): {self.conversations} concurrent conversations over {self.keys} keys "
            f"for {self.seconds:g} s",
            f"  requests {self.requests}, answered {self.answered}, errors {self.errors}, lost {self.lost}",
            f"  latency p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms; {self.throughput_rps:.2f} requests/s",
            f"  cross-key reads {self.cross_key_reads}, leaks {self.cross_key_leaks}; files {self.files}",
            f"  server RSS {self.rss_start_mb:.0f} MB after warm-up, peak {self.rss_peak_mb:.0f} MB, "
            f"end {self.rss_end_mb:.0f} MB",
            *(f"  problem: {p}" for p in self.problems),
        ]


class _Recorder(LocalExpert):
    """text-to-speech for the load run: a short WAV (stdlib `wave`), so runs write files as real ones do."""

    def __init__(self) -> None:
        card = ModelCard(
            id="load/recorder", task="text-to-speech", backend="embedded", available=True, description="a short WAV"
        )
        super().__init__(card)

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        path = ctx.output_path(".wav")
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(args["text"].encode()[:800].ljust(1600, b"\0"))
        return {"audio": ctx.artifact(path, "audio")}


def _controller(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    """`say ...` -> text-to-speech; anything else -> summarization then translation. The answer repeats the
    request's token, so a client can tell its answer from another's."""
    request = next(m.content for m in reversed(messages) if m.role == "user")
    if schema is not None and "tasks" in schema.get("properties", {}):
        if request.startswith("say "):
            tasks = [{"task": "text-to-speech", "id": 0, "dep": [], "args": {"text": request[4:]}}]
        else:
            tasks = [
                {"task": "summarization", "id": 0, "dep": [], "args": {"text": request}},
                {"task": "translation", "id": 1, "dep": [0], "args": {"text": "<resource>-0", "tgt_lang": "French"}},
            ]
        return json.dumps({"tasks": tasks})
    if messages[0].role == "system" and messages[0].content == render("response_system.j2"):
        token = _TOKEN.search(request)
        return f"Here is the answer to {token.group(0) if token else 'your request'}."
    return "a short text that stands for a model's output"


def load_pipeline(settings: Settings) -> HuggingGPT:
    llm = ScriptedLLM(fallback=_controller)
    llm.calls = collections.deque(maxlen=8)  # type: ignore[assignment]  # it keeps every call for tests; not here
    return HuggingGPT(llm, ExpertRegistry([_Recorder(), *llm_experts(llm)]), settings=settings)


def serve_load_app(settings_json: str, port: int, embedded: bool = False) -> None:
    """The load run's server process: the load pipeline (or the shipped one) behind the real app."""
    settings = Settings.model_validate_json(settings_json)
    gpt = HuggingGPT.from_settings(settings) if embedded else load_pipeline(settings)
    uvicorn.run(create_app(gpt, settings), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def rss_mb(pid: int) -> float:
    """The resident set size of process `pid` in MB (Linux /proc), 0 where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


class _Conversation:
    def __init__(self, number: int, key: str) -> None:
        self.number = number
        self.key = key
        self.id: str | None = None
        self.sent = 0
        self.answered = 0
        self.run_ids: list[str] = []


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.errors += 1
        if len(self.problems) < 10:
            self.problems.append(text)


def _request_text(conversation: _Conversation, turn: int, embedded: bool) -> str:
    token = f"t-{conversation.number}-{turn}"
    if embedded:
        return f"{EVERYDAY[(conversation.number + turn) % len(EVERYDAY)]} (request {token})"
    kind = "say" if turn % 3 == 1 else "summarize"
    return f"{kind} the notes of {token}, about the week ahead"


async def _converse(
    client: httpx.AsyncClient, conversation: _Conversation, deadline: float, tally: _Tally, embedded: bool
) -> None:
    headers = {"Authorization": f"Bearer {conversation.key}"}
    upload = await client.post(
        "/v1/files", headers=headers, files={"file": (f"notes-{conversation.number}.txt", b"notes " * 40)}
    )
    if upload.status_code != 200:
        tally.problem(f"upload of conversation {conversation.number}: HTTP {upload.status_code}")
        return
    conversation.id = upload.json()["conversation_id"]
    turn = 0
    while turn == 0 or time.monotonic() < deadline:
        text = _request_text(conversation, turn, embedded)
        conversation.sent += 1
        start = time.perf_counter()
        try:  # every fourth request streams its events (POST /v1/runs), the others wait for a completion
            if turn % 4 == 3:
                run = await _streamed(client, headers, text, conversation.id)
            else:
                run = await _completed(client, headers, text, conversation.id)
        except (httpx.HTTPError, _Refused) as exc:
            cause = exc.__cause__ or exc.__context__
            waited = time.perf_counter() - start
            tally.problem(f"{text!r}: {type(exc).__name__}: {exc} ({cause!r}) after {waited:.2f} s")
            turn += 1
            continue
        tally.latencies.append(time.perf_counter() - start)
        turn += 1
        run_id, status, conversation_id, answer = run
        conversation.run_ids.append(run_id)
        tokens = set(_TOKEN.findall(answer))
        if conversation_id != conversation.id or status != "done":
            tally.problem(f"{text!r}: run {run_id} is {status} in {conversation_id}")
        elif not embedded and tokens != {f"t-{conversation.number}-{turn - 1}"}:
            tally.problem(f"{text!r} was answered with tokens {sorted(tokens)}")
        else:
            conversation.answered += 1


class _Refused(Exception):
    """The server answered a request with an error status."""


async def _completed(
    client: httpx.AsyncClient, headers: dict[str, str], text: str, conversation_id: str
) -> tuple[str, str, str, str]:
    """A chat completion: (run id, status, conversation id, answer)."""
    body = {"model": "hugginggpt", "messages": [{"role": "user", "content": text}], "conversation_id": conversation_id}
    reply = await client.post("/v1/chat/completions", json=body, headers=headers)
    if reply.status_code != 200:
        raise _Refused(f"HTTP {reply.status_code}: {reply.text[:200]}")
    data = reply.json()
    run = data["hugginggpt"]
    return run["run_id"], run["status"], run["conversation_id"], data["choices"][0]["message"]["content"]


async def _streamed(
    client: httpx.AsyncClient, headers: dict[str, str], text: str, conversation_id: str
) -> tuple[str, str, str, str]:
    """A run whose events are read as they come, to its `run.end`: (run id, status, conversation id, answer)."""
    body = {"message": text, "conversation_id": conversation_id}
    events: dict[str, dict[str, Any]] = {}
    async with client.stream("POST", "/v1/runs", json=body, headers=headers) as reply:
        if reply.status_code != 200:
            raise _Refused(f"HTTP {reply.status_code}: {(await reply.aread())[:200]!r}")
        kind = ""
        async for line in reply.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind in ("run.start", "answer.done", "run.end"):
                events[kind] = json.loads(line[6:])
    if "run.end" not in events:
        raise _Refused(f"the event stream ended without run.end (saw {sorted(events)})")
    start, end = events.get("run.start", {}), events["run.end"]
    answer = events.get("answer.done", {}).get("answer", {}).get("text", "")
    return end["run_id"], end["status"], start.get("conversation_id", ""), answer


async def _check(
    client: httpx.AsyncClient, conversations: list[_Conversation], keys: list[str], tally: _Tally
) -> tuple[int, int, int, int]:
    """Read every conversation back with its owner's key and with another one: (lost, reads, leaks, files)."""
    lost = reads = leaks = files = 0
    for conversation in conversations:
        if conversation.id is None:
            continue
        owner = {"Authorization": f"Bearer {conversation.key}"}
        view = (await client.get(f"/v1/conversations/{conversation.id}", headers=owner)).json()
        done = {r["id"] for r in view["runs"] if r["status"] == "done"}
        replies = {m["run_id"] for m in view["messages"] if m["role"] == "assistant"}
        missing = [r for r in conversation.run_ids if r not in done or r not in replies]
        lost += len(missing) + (len(conversation.run_ids) - len(set(conversation.run_ids)))
        if missing:
            tally.problems.append(f"conversation {conversation.number}: runs not stored as done: {missing[:3]}")
        unknown = [(r["request"], r["status"]) for r in view["runs"] if r["id"] not in conversation.run_ids]
        if unknown:  # stored, but their answer never reached the client
            tally.problems.append(f"conversation {conversation.number}: runs the client never heard of: {unknown[:3]}")
        files += len(view["files"])
        other = {"Authorization": f"Bearer {keys[(keys.index(conversation.key) + 1) % len(keys)]}"}
        paths = [f"/v1/conversations/{conversation.id}"]
        paths += [p for r in view["runs"] for p in (f"/v1/runs/{r['id']}", f"/v1/runs/{r['id']}/events")]
        paths += [p for f in view["files"] for p in (f"/v1/files/{f['id']}", f"/v1/files/{f['id']}/content")]
        for path in paths:
            reads += 1
            status = (await client.get(path, headers=other)).status_code
            if status != 404:
                leaks += 1
                tally.problems.append(f"{path} answered {status} to another key")
        reads += 2  # the other key's own lists must not name this conversation or its files
        listed = (await client.get("/v1/conversations", headers=other)).json()["data"]
        leaks += any(c["id"] == conversation.id for c in listed)
        listed_files = (await client.get("/v1/files", headers=other)).json()["data"]
        leaks += any(f["conversation_id"] == conversation.id for f in listed_files)
    return lost, reads, leaks, files


async def _drive(
    url: str, pid: int, keys: list[str], count: int, seconds: float, embedded: bool
) -> tuple[list[_Conversation], _Tally, float, list[float], tuple[int, int, int, int]]:
    # idle connections expire here before the server's 5 s keep-alive does: with equal timeouts a request sent on
    # a connection the server is closing that instant fails (ReadError), which is the client's race, not a loss
    limits = httpx.Limits(max_connections=count + 4, max_keepalive_connections=count + 4, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, timeout=900 if embedded else 120, limits=limits) as client:
        warm = _Conversation(-1, keys[0])
        await _converse(client, warm, 0.0, _Tally(), embedded)  # one request: imports, first-call costs
        samples = [rss_mb(pid)]
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                samples.append(rss_mb(pid))
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        conversations = [_Conversation(n, keys[n % len(keys)]) for n in range(count)]
        tally = _Tally()
        start = time.perf_counter()
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_converse(client, c, deadline, tally, embedded) for c in conversations))
        wall = time.perf_counter() - start
        stop.set()
        await sampler
        samples.append(rss_mb(pid))
        checked = await _check(client, conversations, keys, tally)
    return conversations, tally, wall, samples, checked


def run_load(
    *,
    conversations: int = 50,
    keys: int = 5,
    seconds: float = 30.0,
    embedded: bool = False,
    settings: Settings | None = None,
    workdir: Path | None = None,
) -> LoadReport:
    """Start a server process with `keys` API keys on a free loopback port, run `conversations` conversations at
    once for `seconds` (each sends at least one request), check, stop the server."""
    api_keys = [f"sk-load-{n}" for n in range(keys)]
    with tempfile.TemporaryDirectory(prefix="hugginggpt-load-") as scratch:
        root = Path(workdir or scratch)
        base = settings or (Settings() if embedded else Settings(selection="top"))
        settings = base.model_copy(
            update={
                "db": root / "load.db",
                "output_dir": root / "outputs",
                "files_dir": None,
                "api_keys": SecretStr(",".join(api_keys)),
                "max_runs_per_key": max(1, -(-conversations // keys)),
            }
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        code = (
            "import sys; from hugginggpt.server.load import serve_load_app; "
            "serve_load_app(sys.argv[1], int(sys.argv[2]), sys.argv[3] == 'embedded')"
        )
        mode = "embedded" if embedded else "scripted"
        process = subprocess.Popen([sys.executable, "-c", code, _settings_json(settings), str(port), mode])
        try:
            _wait_until_up(url, process, timeout=300 if embedded else 60)
            return asyncio.run(measure(url, process.pid, api_keys, conversations, seconds, embedded))
        finally:
            process.terminate()
            process.wait(timeout=30)


async def measure(
    url: str, pid: int, keys: list[str], conversations: int, seconds: float, embedded: bool = False
) -> LoadReport:
    """The load run against a server already up at `url` (process `pid`, whose RSS is sampled) that knows `keys`."""
    talks, tally, wall, samples, checked = await _drive(url, pid, keys, conversations, seconds, embedded)
    lost, reads, leaks, files = checked
    latencies = tally.latencies or [0.0]
    sent = sum(c.sent for c in talks)
    return LoadReport(
        pipeline="shipped" if embedded else "scripted",
        conversations=conversations,
        keys=len(keys),
        seconds=seconds,
        requests=sent,
        answered=sum(c.answered for c in talks),
        errors=tally.errors,
        lost=lost,
        cross_key_reads=reads,
        cross_key_leaks=leaks,
        files=files,
        p50_ms=round(_percentile(latencies, 50) * 1000, 1),
        p95_ms=round(_percentile(latencies, 95) * 1000, 1),
        throughput_rps=round(sent / wall, 2) if wall else 0.0,
        rss_start_mb=round(samples[0], 1),
        rss_peak_mb=round(max(samples), 1),
        rss_end_mb=round(samples[-1], 1),
        problems=tally.problems[:10],
    )


def _settings_json(settings: Settings) -> str:
    """The settings for the child process, secrets (the API keys) in plain text: a JSON dump would mask them."""
    values = json.loads(settings.model_dump_json())
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values[name] = value.get_secret_value()
    return json.dumps(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hugginggpt.server.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=50, help="conversations at once (the concurrency)")
    parser.add_argument("--keys", type=int, default=5, help="API keys the conversations are spread over")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long new requests are started")
    parser.add_argument("--embedded", action="store_true", help="the shipped stack instead of the scripted LLM")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = run_load(conversations=args.conversations, keys=args.keys, seconds=args.seconds, embedded=args.embedded)
    print(report.model_dump_json() if args.json else "\n".join(report.lines()))
    return 0 if report.errors == report.lost == report.cross_key_leaks == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
