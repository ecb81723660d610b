"""The JARVIS-compatible endpoints with JARVIS's request bodies: /hugginggpt, /tasks and /results."""

from __future__ import annotations

import httpx
import pytest

from serverkit import Served


@pytest.fixture
def server(tmp_path):
    with Served(tmp_path) as live:
        yield live


def _body(*contents: str) -> dict:
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
    # JARVIS clients also send their own LLM settings; they are accepted and ignored.
    return {"messages": messages, "api_key": "sk-ignored", "api_type": "openai", "api_endpoint": "https://x"}


def test_hugginggpt_answers_with_a_message(server):
    response = httpx.post(f"{server.url}/hugginggpt", json=_body("draw a green hill and describe it"), timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["message"]
    assert body["message"].startswith("Answer to [draw a green hill and describe it].")
    assert "a 96x64 green image" in body["message"]


def test_tasks_returns_the_validated_plan(server):
    response = httpx.post(f"{server.url}/tasks", json=_body("draw a red boat and describe it"), timeout=30)
    assert response.json() == [
        {"id": 0, "task": "text-to-image", "dep": [], "args": {"text": "a red boat"}},
        {"id": 1, "task": "image-to-text", "dep": [0], "args": {"image": "<resource>-0"}},
    ]
    assert httpx.post(f"{server.url}/tasks", json=_body("hello there"), timeout=30).json() == []


def test_results_are_keyed_by_task_id(server):
    response = httpx.post(f"{server.url}/results", json=_body("draw a blue lake and describe it"), timeout=30)
    results = response.json()
    assert sorted(results) == ["0", "1"]
    first, second = results["0"], results["1"]
    assert first["task"]["task"] == "text-to-image"
    assert first["choose model result"]["id"] == "test/painter"
    assert first["inference result"]["image"]["url"].startswith("/v1/files/")
    assert second["inference result"] == {"text": "a 96x64 blue image"}
    assert second["status"] == "ok"


def test_earlier_messages_are_the_context(server):
    history = _body(
        "draw a yellow star", "Here it is. Files: outputs/r1/0-text-to-image-aaaaaa.png", "describe the picture"
    )
    plan = httpx.post(f"{server.url}/tasks", json=history, timeout=30).json()
    assert plan[0]["args"] == {"image": "outputs/r1/0-text-to-image-aaaaaa.png"}


def test_bad_bodies_are_refused(server):
    assert httpx.post(f"{server.url}/hugginggpt", json={"messages": []}).status_code == 400
    assert httpx.post(f"{server.url}/tasks", json={"msgs": "x"}).status_code == 400
    last_assistant = {"messages": [{"role": "assistant", "content": "hi"}]}
    assert httpx.post(f"{server.url}/results", json=last_assistant).status_code == 400
