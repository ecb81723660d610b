"""`hugginggpt serve` killed with SIGKILL in the middle of runs and started again on the same SQLite file and files
folder: the runs it was doing are marked interrupted, conversations, files and earlier results are all there, and a
new request works. A real server process, a real SQLite file, the real piper voice; the controller LLM is a local
endpoint speaking OpenAI's API (the only stand-in: a real one needs the network)."""

from __future__ import annotations

import hashlib
import io
import threading
import wave

import httpx
import pytest

from faultkit import Controller, ServeProcess, clean_env
from serverkit import sse_events, wait_for

KEY_A, KEY_B = "sk-restart-a", "sk-restart-b"

pytestmark = pytest.mark.slow


def _wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(b"\0\1" * 800)
    return out.getvalue()


def _chat(client: httpx.Client, key: str, text: str, conversation_id: str | None = None) -> dict:
    body = {"model": "hugginggpt", "messages": [{"role": "user", "content": text}], "conversation_id": conversation_id}
    reply = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.text
    return reply.json()


def _follow(url: str, key: str, body: dict, seen: list) -> None:
    """Start a run with POST /v1/runs and read its stream until it ends or the server dies."""
    try:
        with httpx.stream(
            "POST", f"{url}/v1/runs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as reply:
            frame: list[str] = []
            for line in reply.iter_lines():  # each event as it comes, so the test sees the run start
                frame.append(line)
                if line == "":
                    seen.extend(sse_events(frame))
                    frame = []
    except httpx.HTTPError:
        pass  # the server was killed under it


def test_a_server_killed_mid_run_restarts_with_everything_but_those_runs(tmp_path):
    data = tmp_path / "data"
    with Controller() as llm:
        env = clean_env(
            HUGGINGGPT_LLM_BASE_URL=llm.url,
            HUGGINGGPT_LLM_RETRIES="0",
            HUGGINGGPT_DB=str(data / "server.db"),
            HUGGINGGPT_OUTPUT_DIR=str(tmp_path / "outputs"),
            HUGGINGGPT_API_KEYS=f"{KEY_A},{KEY_B}",
        )
        first = ServeProcess(env, tmp_path / "serve.log").start()
        try:
            a = httpx.Client(base_url=first.url, timeout=120, headers={"Authorization": f"Bearer {KEY_A}"})
            b = httpx.Client(base_url=first.url, timeout=120, headers={"Authorization": f"Bearer {KEY_B}"})
            # before: key A uploads a file and a run makes a WAV; key B has a conversation of its own
            upload = a.post("/v1/files", files={"file": ("note.wav", _wav(), "audio/wav")}).json()
            conversation = upload["conversation_id"]
            spoken = _chat(a, KEY_A, "say good morning to everyone", conversation)
            assert spoken["hugginggpt"]["status"] == "done", spoken
            [artifact] = spoken["hugginggpt"]["artifacts"]
            spoken_run = spoken["hugginggpt"]["run_id"]
            spoken_view = a.get(f"/v1/runs/{spoken_run}").json()
            theirs = _chat(b, KEY_B, "summarize the weather is fine today")["hugginggpt"]["conversation_id"]
            files_before = {f["id"]: f["sha256"] for f in a.get("/v1/files").json()["data"]}
            assert len(files_before) == 2

            # three runs in flight, in key A's conversation and two new ones, when the server is killed
            seen: list[list] = [[], [], []]
            bodies = [
                ({"message": "slow the first text", "conversation_id": conversation}, KEY_A),
                ({"message": "slow the second text"}, KEY_A),
                ({"message": "slow the third text"}, KEY_B),
            ]
            threads = [
                threading.Thread(target=_follow, args=(first.url, key, body, seen[n]), daemon=True)
                for n, (body, key) in enumerate(bodies)
            ]
            for thread in threads:
                thread.start()
            wait_for(lambda: llm.held == 3 and all(s for s in seen), "three runs planning", timeout=60)
        finally:
            first.kill()
        for thread in threads:
            thread.join(timeout=30)
        run_ids = [s[0][1]["run_id"] for s in seen]
        assert all(s[-1][0] != "run.end" for s in seen)  # none of them ended before the kill
        llm.release.set()

        with ServeProcess(env, tmp_path / "serve.log") as second:
            a = httpx.Client(base_url=second.url, timeout=120, headers={"Authorization": f"Bearer {KEY_A}"})
            b = httpx.Client(base_url=second.url, timeout=120, headers={"Authorization": f"Bearer {KEY_B}"})
            # the killed runs: interrupted, saying why, to their own key only
            for run_id, (_, key) in zip(run_ids, bodies, strict=True):
                owner, other = (a, b) if key == KEY_A else (b, a)
                run = owner.get(f"/v1/runs/{run_id}").json()
                assert run["status"] == "interrupted" and "server stopped" in run["error"], run
                assert other.get(f"/v1/runs/{run_id}").status_code == 404
                replay = sse_events(owner.get(f"/v1/runs/{run_id}/events").text.splitlines())
                assert replay[-1][0] == "run.end" and replay[-1][1]["status"] == "interrupted"
                # a client resuming past the events kept (it saw more before the kill) still gets the end
                resumed = owner.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "40"}).text
                assert [kind for kind, _ in sse_events(resumed.splitlines())] == ["run.end"]
            # key A's conversation: both requests, both replies, both runs, both files with their bytes
            view = a.get(f"/v1/conversations/{conversation}").json()
            assert [m["role"] for m in view["messages"]] == ["user", "assistant"] * 2
            assert "did not finish" in view["messages"][3]["content"]
            assert [r["status"] for r in view["runs"]] == ["done", "interrupted"]
            assert a.get(f"/v1/runs/{spoken_run}").json() == spoken_view
            assert view["runs"][0]["answer"]["results"][0]["status"] == "ok"
            assert {f["id"]: f["sha256"] for f in view["files"]} == files_before
            for file_id, digest in files_before.items():
                content = a.get(f"/v1/files/{file_id}/content")
                assert content.status_code == 200 and hashlib.sha256(content.content).hexdigest() == digest
            assert artifact["file_id"] in files_before
            assert len(a.get("/v1/conversations").json()["data"]) == 2
            assert b.get(f"/v1/conversations/{theirs}").json()["runs"][0]["status"] == "done"
            assert b.get(f"/v1/conversations/{conversation}").status_code == 404
            # and new requests work, in the old conversation (with its history) and in a new one
            again = _chat(a, KEY_A, "say good evening", conversation)
            assert again["hugginggpt"]["status"] == "done" and len(again["hugginggpt"]["artifacts"]) == 1
            assert _chat(b, KEY_B, "summarize one more text")["hugginggpt"]["status"] == "done"
            after = a.get(f"/v1/conversations/{conversation}").json()
            assert [r["status"] for r in after["runs"]] == ["done", "interrupted", "done"]


def test_serve_keeps_an_idle_connection_open_longer_than_clients_keep_theirs(tmp_path):
    """Clients (httpx, the OpenAI SDK) drop an idle connection after 5 s; the server must not drop it first, or a
    request sent as it closes is lost. One connection: a request, 6 s idle, another request (http.client reads each
    whole response and never reconnects on its own, so a closed connection fails the second request)."""
    import http.client
    import time

    with Controller() as llm:
        env = clean_env(HUGGINGGPT_LLM_BASE_URL=llm.url, HUGGINGGPT_DB=str(tmp_path / "server.db"))
        server = ServeProcess(env, tmp_path / "serve.log").start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            statuses = []
            for pause in (0, 6):
                time.sleep(pause)
                conn.request("GET", "/healthz")
                reply = conn.getresponse()
                reply.read()
                statuses.append(reply.status)
            conn.close()
            assert statuses == [200, 200]
        finally:
            server.stop()
