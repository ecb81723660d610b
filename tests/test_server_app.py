"""The app as a whole: a restart keeps history and files, the page and docs are served, and settings wire up."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import openai
from PIL import Image

from hugginggpt.config import Settings
from hugginggpt.server.app import default_files_dir
from hugginggpt.server.completions import MODEL_ID
from localserver import free_port
from serverkit import Served, sse_events


def _png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), color).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_restart_keeps_history_files_and_lets_an_old_conversation_go_on(tmp_path, monkeypatch):
    db = tmp_path / "state" / "history.db"
    monkeypatch.setenv("HUGGINGGPT_DB", str(db))

    with Served(tmp_path) as first:
        assert first.settings.db == db
        with openai.OpenAI(base_url=f"{first.url}/v1", api_key="x", max_retries=0) as client:
            drawn = client.chat.completions.create(
                model=MODEL_ID, messages=[{"role": "user", "content": "draw a blue square"}]
            )
        conversation = drawn.hugginggpt["conversation_id"]
        run_id = drawn.hugginggpt["run_id"]
        (image,) = drawn.hugginggpt["artifacts"]
        upload = httpx.post(
            f"{first.url}/v1/files",
            data={"conversation_id": conversation},
            files={"file": ("pond.png", _png((40, 170, 60)), "image/png")},
        ).json()
        events_before = sse_events(httpx.get(f"{first.url}/v1/runs/{run_id}/events").text.splitlines())

    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert default_files_dir(db).is_dir()

    with Served(tmp_path) as second:
        listed = httpx.get(f"{second.url}/v1/conversations").json()["data"]
        assert [(c["id"], c["title"]) for c in listed] == [(conversation, "draw a blue square")]
        detail = httpx.get(f"{second.url}/v1/conversations/{conversation}").json()
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
        assert detail["messages"][1]["content"].endswith(f"Files: {image['name']}")
        assert detail["runs"][0]["answer"]["plan"][0]["task"] == "text-to-image"
        assert {f["name"] for f in detail["files"]} == {image["name"], upload["name"]}
        assert httpx.get(second.url + image["url"]).content[:8] == b"\x89PNG\r\n\x1a\n"
        replayed = sse_events(httpx.get(f"{second.url}/v1/runs/{run_id}/events").text.splitlines())
        assert replayed == events_before

        with openai.OpenAI(base_url=f"{second.url}/v1", api_key="x", max_retries=0) as client:
            follow = client.chat.completions.create(
                model=MODEL_ID,
                messages=[{"role": "user", "content": "describe the picture"}],
                extra_body={"conversation_id": conversation},
            )
            (result,) = follow.hugginggpt["results"]
            assert result["status"] == "ok", result["error"]
            assert result["outputs"]["text"] == "a 96x64 blue image"
            pond = client.chat.completions.create(
                model=MODEL_ID,
                messages=[{"role": "user", "content": "describe pond.png"}],
                extra_body={"conversation_id": conversation},
            )
            assert pond.hugginggpt["results"][0]["outputs"]["text"] == "a 12x12 green image"


def test_the_page_is_served_with_a_strict_policy(tmp_path):
    with Served(tmp_path) as server:
        page = httpx.get(server.url + "/")
        assert page.status_code == 200 and "<title>HuggingGPT</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert httpx.get(server.url + "/static/app.js").status_code == 200
        assert httpx.get(server.url + "/healthz").json()["auth"] == "none"
        schema = httpx.get(server.url + "/openapi.json").json()
        for path in ("/v1/chat/completions", "/v1/models", "/v1/files", "/v1/runs", "/hugginggpt", "/tasks"):
            assert path in schema["paths"]


def test_unknown_routes_get_a_json_error(tmp_path):
    with Served(tmp_path) as server:
        response = httpx.get(server.url + "/v1/nothing")
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"


def test_server_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HUGGINGGPT_DB", str(tmp_path / "x.db"))
    monkeypatch.setenv("HUGGINGGPT_API_KEYS", "k1,k2")
    monkeypatch.setenv("HUGGINGGPT_MAX_RUNS_PER_KEY", "7")
    monkeypatch.setenv("HUGGINGGPT_MAX_UPLOAD_BYTES", "1234")
    settings = Settings()
    assert settings.db == tmp_path / "x.db"
    assert settings.api_keys.get_secret_value() == "k1,k2"
    assert "k1" not in repr(settings)
    assert (settings.max_runs_per_key, settings.max_upload_bytes) == (7, 1234)
    assert default_files_dir(settings.db) == tmp_path / "x-files"


def test_without_keys_only_loopback_host_names_are_answered(tmp_path):
    with Served(tmp_path) as server:
        assert httpx.get(server.url + "/healthz", headers={"Host": "localhost"}).status_code == 200
        rebound = httpx.get(server.url + "/v1/conversations", headers={"Host": "attacker.example"})
        assert rebound.status_code == 400


def test_with_keys_any_host_name_is_answered(tmp_path):
    with Served(tmp_path, api_keys="k") as server:
        assert httpx.get(server.url + "/healthz", headers={"Host": "hugginggpt.example"}).status_code == 200


def test_the_serve_command_starts_a_server_and_stops_on_interrupt(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUGGINGGPT_")}
    # The LLM endpoint is never called: the page and the health check need no LLM.
    env |= {"HUGGINGGPT_LLM_BASE_URL": "http://127.0.0.1:9/v1", "HUGGINGGPT_OUTPUT_DIR": str(tmp_path / "out")}
    command = [sys.executable, "-m", "hugginggpt.cli", "serve", "--port", str(port), "--db", str(tmp_path / "s.db")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "hugginggpt serve did not come up"
                time.sleep(0.1)
        assert health.json()["auth"] == "none"
        assert "HuggingGPT" in httpx.get(f"http://127.0.0.1:{port}/").text
        assert (tmp_path / "s.db").is_file()
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode in (0, 130), output
    assert "Traceback" not in output
