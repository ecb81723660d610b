"""Runs on a live server: many at once on one expert pool, isolation of slow and failing runs, cancellation when
the client hangs up, per-key limits, and the SSE event stream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading

import httpx
import openai
import pytest

from hugginggpt.server.completions import MODEL_ID
from serverkit import COLORS, Served, sse_events, wait_for


@pytest.fixture
def server(tmp_path):
    with Served(tmp_path, max_runs_per_key=25) as live:
        yield live


def _status(server, run_id, headers=None):
    return httpx.get(f"{server.url}/v1/runs/{run_id}", headers=headers).json()["status"]


def _start_blocked_run(server, headers=None):
    """POST /v1/runs with a request the gate holds; returns (response, run id) once the expert is running."""
    client = httpx.Client(base_url=server.url, timeout=30, headers=headers)
    response = client.send(client.build_request("POST", "/v1/runs", json={"message": "gate block here"}), stream=True)
    assert response.status_code == 200, response.read()
    lines = response.iter_lines()
    run_id, kind = None, None
    for line in lines:
        if line.startswith("data: ") and run_id is None:
            run_id = json.loads(line[6:])["run_id"]
        if line.startswith("event: "):
            kind = line[7:]
        if line == "" and kind == "task.start":
            break
    assert server.gate.entered.wait(10)
    return client, response, lines, run_id


async def test_twenty_parallel_requests_are_all_answered_and_none_mixed_up(server):
    requests = []
    for number in range(20):
        color = list(COLORS)[number % len(COLORS)]
        kind = number % 3
        if kind == 0:
            requests.append((f"draw a {color} thing-{number} and describe it", f"a 96x64 {color} image"))
        elif kind == 1:
            requests.append((f"say word-{number} twice", f"word-{number} twice"))
        else:
            requests.append((f"summarize text-{number} is long", f"summary: text-{number} is long"))

    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60) as client:
        completions = await asyncio.gather(
            *(
                client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": r}])
                for r, _ in requests
            )
        )
    conversations = set()
    artifact_names = set()
    for (request, expected), completion in zip(requests, completions, strict=True):
        text = completion.choices[0].message.content
        assert text.startswith(f"Answer to [{request}].")
        assert expected in text, (request, text)
        run = completion.hugginggpt
        assert all(r["status"] == "ok" for r in run["results"]), run["results"]
        conversations.add(run["conversation_id"])
        for artifact in run["artifacts"]:
            artifact_names.add((run["conversation_id"], artifact["name"]))
            body = httpx.get(server.url + artifact["url"]).content
            assert hashlib.sha256(body).hexdigest() == artifact["sha256"]
    assert len(conversations) == 20
    assert len(artifact_names) == 14  # 7 drawings and 7 recordings, each in its own conversation


def test_a_slow_run_does_not_block_another(server):
    client, response, lines, run_id = _start_blocked_run(server)
    try:
        other = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": MODEL_ID, "messages": [{"role": "user", "content": "draw a red ball"}]},
            timeout=30,
        )
        assert other.status_code == 200
        assert other.json()["hugginggpt"]["results"][0]["status"] == "ok"
        assert _status(server, run_id) == "running"
        server.gate.opened.set()
        rest = sse_events(lines)
        assert rest[-1] == ("run.end", {"run_id": run_id, "status": "done", "error": None})
    finally:
        response.close()
        client.close()


def test_hanging_up_a_run_stream_cancels_the_run(server):
    client, response, _, run_id = _start_blocked_run(server)
    response.close()
    client.close()
    assert server.gate.cancelled.wait(10)
    wait_for(lambda: _status(server, run_id) == "cancelled", "the run to be cancelled")


def test_hanging_up_a_plain_completion_cancels_the_run(server):
    body = json.dumps({"model": MODEL_ID, "messages": [{"role": "user", "content": "gate block plain"}]}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        assert server.gate.entered.wait(10)
    assert server.gate.cancelled.wait(10)
    conversations = httpx.get(f"{server.url}/v1/conversations").json()["data"]
    detail = httpx.get(f"{server.url}/v1/conversations/{conversations[0]['id']}").json()
    wait_for(
        lambda: _status(server, detail["runs"][0]["id"]) == "cancelled", "the plain completion's run to be cancelled"
    )


def test_closing_an_sdk_stream_cancels_the_run(server):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "gate block sdk"}], stream=True
        )
        first = next(iter(stream))
        run_id = first.hugginggpt["run_id"]
        assert server.gate.entered.wait(10)
        stream.close()
    assert server.gate.cancelled.wait(10)
    wait_for(lambda: _status(server, run_id) == "cancelled", "the SDK stream's run to be cancelled")


def test_a_follower_sees_every_event_and_a_finished_run_replays(server):
    client, response, lines, run_id = _start_blocked_run(server)
    try:
        seen, past = [], []

        def follow(into, headers=None):
            with httpx.stream("GET", f"{server.url}/v1/runs/{run_id}/events", headers=headers, timeout=30) as events:
                into.extend(sse_events(events.iter_lines()))

        follower = threading.Thread(target=follow, args=(seen,))
        follower.start()
        # one that resumes past every event the run will have still gets its end
        beyond = threading.Thread(target=follow, args=(past, {"Last-Event-ID": "999"}))
        beyond.start()
        server.gate.opened.set()
        owner_events = sse_events(lines)
        follower.join(20)
        beyond.join(20)
        assert [kind for kind, _ in past] == ["run.end"]
        assert [kind for kind, _ in seen][:3] == ["run.start", "plan.task", "selection"]
        assert seen[-1][0] == "run.end"
        assert seen[-len(owner_events) :] == owner_events

        replay = httpx.get(f"{server.url}/v1/runs/{run_id}/events", timeout=30)
        assert sse_events(replay.text.splitlines()) == seen
        resumed = httpx.get(f"{server.url}/v1/runs/{run_id}/events", headers={"Last-Event-ID": "2"}, timeout=30)
        assert sse_events(resumed.text.splitlines()) == seen[3:]
        resumed = httpx.get(f"{server.url}/v1/runs/{run_id}/events", headers={"Last-Event-ID": "999"}, timeout=30)
        assert sse_events(resumed.text.splitlines()) == seen[-1:]
    finally:
        response.close()
        client.close()


def test_a_run_can_be_cancelled_by_id(server):
    client, response, _, run_id = _start_blocked_run(server)
    try:
        cancelled = httpx.delete(f"{server.url}/v1/runs/{run_id}", timeout=30).json()
        assert cancelled["status"] == "cancelled"
        assert server.gate.cancelled.is_set()
    finally:
        response.close()
        client.close()


def test_the_run_stream_carries_plan_selection_task_and_answer_events(server):
    response = httpx.post(f"{server.url}/v1/runs", json={"message": "draw a green leaf and describe it"}, timeout=30)
    events = sse_events(response.text.splitlines())
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "run.start" and kinds[-1] == "run.end"
    for kind in ("plan.task", "selection", "task.start", "task.end", "answer.token", "answer.done"):
        assert kind in kinds
    ends = [data for kind, data in events if kind == "task.end"]
    assert [e["status"] for e in ends] == ["ok", "ok"]
    image = ends[0]["outputs"]["image"]
    assert image["url"].startswith("/v1/files/") and "path" not in image
    answer = next(data["answer"] for kind, data in events if kind == "answer.done")
    streamed = "".join(data["text"] for kind, data in events if kind == "answer.token")
    assert streamed == answer["text"]


def test_a_key_over_its_run_limit_gets_429_and_other_keys_do_not(tmp_path):
    headers_a = {"Authorization": "Bearer key-one"}
    with Served(tmp_path, api_keys="key-one,key-two", max_runs_per_key=1) as server:
        client, response, lines, _ = _start_blocked_run(server, headers_a)
        try:
            with (
                openai.OpenAI(base_url=f"{server.url}/v1", api_key="key-one", max_retries=0) as sdk,
                pytest.raises(openai.RateLimitError, match="runs in progress"),
            ):
                sdk.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "say hi"}])
            with openai.OpenAI(base_url=f"{server.url}/v1", api_key="key-two", max_retries=0) as sdk:
                answer = sdk.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "say hi"}])
                assert answer.choices[0].message.content.startswith("Answer to [say hi]")
            tasks = httpx.post(
                f"{server.url}/tasks", json={"messages": [{"role": "user", "content": "say hi"}]}, headers=headers_a
            )
            assert tasks.status_code == 429
            server.gate.opened.set()
            assert sse_events(lines)[-1][1]["status"] == "done"
            with openai.OpenAI(base_url=f"{server.url}/v1", api_key="key-one", max_retries=0) as sdk:
                assert sdk.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "say ok"}])
        finally:
            response.close()
            client.close()


def test_a_quiet_run_stream_sends_keep_alives(server, monkeypatch):
    from hugginggpt.server import api

    monkeypatch.setattr(api, "KEEPALIVE_SECONDS", 0.05)
    client, response, lines, _ = _start_blocked_run(server)
    try:
        for line in lines:
            if line == ": keep-alive":
                break
        server.gate.opened.set()
        assert sse_events(lines)[-1][1]["status"] == "done"
    finally:
        response.close()
        client.close()


async def test_a_run_cancelled_before_its_first_step_still_records_its_end(tmp_path):
    from hugginggpt.server.auth import KeyLimiter
    from hugginggpt.server.files import Spaces
    from hugginggpt.server.runs import RunManager
    from hugginggpt.server.store import Store
    from serverkit import make_pipeline, settings_for

    settings = settings_for(tmp_path)
    store = Store(settings.db)
    await store.open()
    try:
        limiter = KeyLimiter(1)
        manager = RunManager(make_pipeline(settings), store, Spaces(tmp_path / "files"), limiter)
        await store.create_conversation("conv-" + "0" * 24, "k")
        run = await manager.start("conv-" + "0" * 24, "k", "say hi")
        run.cancel()
        await asyncio.wait_for(run.wait(), 10)
        assert run.status == "cancelled" and limiter.running("k") == 0
        assert manager.live(run.id, "k") is None
        for _ in range(100):
            if (await store.run(run.id, "k")).status == "cancelled":
                break
            await asyncio.sleep(0.02)
        assert (await store.run(run.id, "k")).status == "cancelled"
    finally:
        await store.close()


def test_later_turns_see_the_direct_answer_and_the_files_not_the_rendered_account():
    from types import SimpleNamespace

    from hugginggpt.account import SEPARATOR
    from hugginggpt.server.runs import _assistant_text

    image = {"name": "0-text-to-image-1a2b3c.png", "file_id": "f1"}
    answer = {"text": "Here is a red square." + SEPARATOR + "- task 0 …", "results": [{"outputs": {"image": image}}]}
    run = SimpleNamespace(answer=answer, error=None, status="done")
    assert _assistant_text(run) == "Here is a red square.\nFiles: 0-text-to-image-1a2b3c.png"
