"""The SSE wire format of the server's streams (sse-starlette), byte for byte where clients depend on it: LF-only
frames (the web page splits on a blank line of two LFs), `data: {json}` chunks ending in `data: [DONE]` for the
OpenAI-compatible stream, `id:`/`event:`/`data:` frames for the run streams, resumable with `after` and
Last-Event-ID, and `: keep-alive` comments."""

from __future__ import annotations

import json

import httpx
import pytest

from hugginggpt.server.completions import MODEL_ID
from serverkit import Served


@pytest.fixture
def server(tmp_path):
    with Served(tmp_path) as live:
        yield live


def _frames(body: bytes) -> list[list[str]]:
    assert b"\r" not in body
    assert body.endswith(b"\n\n")
    return [frame.split("\n") for frame in body.decode().removesuffix("\n\n").split("\n\n")]


def test_the_completion_stream_is_data_json_frames_then_done(server):
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "say café crème"}], "stream": True}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    frames = [f for f in _frames(response.content) if not f[0].startswith(":")]
    assert frames[-1] == ["data: [DONE]"]
    chunks = []
    for frame in frames[:-1]:
        assert len(frame) == 1 and frame[0].startswith("data: {")
        chunks.append(json.loads(frame[0][6:]))
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "café crème" in text
    assert "café".encode() in response.content  # JSON keeps non-ASCII as UTF-8, not \u escapes


def test_run_frames_carry_id_event_and_data_and_resume_after_an_id(server):
    response = httpx.post(f"{server.url}/v1/runs", json={"message": "say hello"}, timeout=30)
    frames = [f for f in _frames(response.content) if not f[0].startswith(":")]
    events = []
    for seq, frame in enumerate(frames):
        fields = dict(line.split(": ", 1) for line in frame)
        assert set(fields) == {"id", "event", "data"} and fields["id"] == str(seq)
        events.append((fields["event"], json.loads(fields["data"])))
    assert events[0][0] == "run.start" and events[-1][0] == "run.end"
    run_id = events[0][1]["run_id"]

    url = f"{server.url}/v1/runs/{run_id}/events"
    replay = httpx.get(url, timeout=30)
    assert replay.content == response.content
    after = httpx.get(url, params={"after": 1}, timeout=30)
    by_header = httpx.get(url, headers={"Last-Event-ID": "1"}, timeout=30)
    assert after.content == by_header.content
    resumed = [dict(line.split(": ", 1) for line in frame)["id"] for frame in _frames(after.content)]
    assert resumed == [str(seq) for seq in range(2, len(frames))]


def test_a_quiet_completion_stream_sends_keep_alive_comment_frames(server, monkeypatch):
    from hugginggpt.server import api

    monkeypatch.setattr(api, "KEEPALIVE_SECONDS", 0.05)
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "gate block here"}], "stream": True}
    raw = b""
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=30) as response:
        chunks = response.iter_raw()
        for chunk in chunks:
            raw += chunk
            if raw.count(b": keep-alive\n\n") >= 2:
                break
        server.gate.opened.set()
        raw += b"".join(chunks)
    frames = _frames(raw)
    assert [f for f in frames if f[0].startswith(":")] == [[": keep-alive"]] * raw.count(b": keep-alive")
    assert frames[-1] == ["data: [DONE]"]
