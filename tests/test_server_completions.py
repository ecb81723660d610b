"""The OpenAI-compatible API, driven by the official `openai` SDK against a real server."""

from __future__ import annotations

import base64
import hashlib
import io

import httpx
import openai
import pytest
from PIL import Image

from hugginggpt.server.completions import MODEL_ID
from serverkit import Served


@pytest.fixture
def server(tmp_path):
    with Served(tmp_path) as live:
        yield live


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30) as client:
        yield client


def _ask(content):
    return [{"role": "user", "content": content}]


def test_models_lists_the_pipeline(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL_ID]
    assert client.models.retrieve(MODEL_ID).owned_by == "hugginggpt"


def test_a_completion_answers_and_attaches_the_structured_run(client, server):
    completion = client.chat.completions.create(model=MODEL_ID, messages=_ask("draw a red kite and describe it"))

    text = completion.choices[0].message.content
    assert text.startswith("Answer to [draw a red kite and describe it].")
    assert "a 96x64 red image" in text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens > 0
    run = completion.hugginggpt
    assert [t["task"] for t in run["plan"]] == ["text-to-image", "image-to-text"]
    assert [s["model_id"] for s in run["selections"]] == ["test/painter", "test/describer"]
    assert [r["status"] for r in run["results"]] == ["ok", "ok"]
    assert run["conversation_id"].startswith("conv-") and run["run_id"].startswith("run-")
    (image,) = run["artifacts"]
    assert image["media_type"] == "image/png" and image["name"].startswith("outputs/")
    body = httpx.get(server.url + image["url"]).content
    assert hashlib.sha256(body).hexdigest() == image["sha256"]
    assert Image.open(io.BytesIO(body)).size == (96, 64)


def test_no_server_path_reaches_the_client(client, server):
    completion = client.chat.completions.create(model=MODEL_ID, messages=_ask("draw a blue cup and describe it"))
    raw = completion.model_dump_json()
    assert str(server.settings.db.parent) not in raw
    assert "outputs/" in completion.choices[0].message.content


def test_streaming_sends_deltas_then_the_structured_run(client):
    stream = client.chat.completions.create(model=MODEL_ID, messages=_ask("say hello world"), stream=True)
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].hugginggpt["run_id"].startswith("run-")
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("Answer to [say hello world].")
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.hugginggpt["artifacts"][0]["media_type"] in ("audio/wav", "audio/x-wav")
    assert {c.id for c in chunks} == {chunks[0].id}


def test_streaming_can_report_usage(client):
    stream = client.chat.completions.create(
        model=MODEL_ID,
        messages=_ask("summarize the cat sat on the mat"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_a_follow_up_in_the_same_conversation_uses_its_history_and_files(client):
    first = client.chat.completions.create(model=MODEL_ID, messages=_ask("draw a yellow sun"))
    conversation = first.hugginggpt["conversation_id"]

    follow = client.chat.completions.create(
        model=MODEL_ID, messages=_ask("describe the picture"), extra_body={"conversation_id": conversation}
    )
    assert follow.hugginggpt["conversation_id"] == conversation
    (result,) = follow.hugginggpt["results"]
    assert result["status"] == "ok", result["error"]
    assert result["outputs"]["text"] == "a 96x64 yellow image"


def test_client_history_seeds_a_new_conversation(client, server):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "summarize the weather is nice"},
    ]
    completion = client.chat.completions.create(model=MODEL_ID, messages=messages)
    detail = httpx.get(f"{server.url}/v1/conversations/{completion.hugginggpt['conversation_id']}").json()
    assert [(m["role"], m["content"]) for m in detail["messages"]][:3] == [
        ("user", "hello"),
        ("assistant", "hi"),
        ("user", "summarize the weather is nice"),
    ]


def test_an_image_sent_inline_is_stored_and_used(client):
    data_url = "data:image/png;base64," + base64.b64encode(_png((40, 170, 60), (20, 10))).decode()
    content = [{"type": "text", "text": "describe this"}, {"type": "image_url", "image_url": {"url": data_url}}]

    completion = client.chat.completions.create(model=MODEL_ID, messages=_ask(content))
    (result,) = completion.hugginggpt["results"]
    assert result["status"] == "ok", result["error"]
    assert result["outputs"]["text"] == "a 20x10 green image"


def _png(color, size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_uploaded_file_named_by_id_continues_its_conversation(client, server):
    uploaded = httpx.post(f"{server.url}/v1/files", files={"file": ("red.png", _png((220, 40, 40)), "image/png")})
    uploaded = uploaded.json()
    content = [{"type": "text", "text": "describe it"}, {"type": "file", "file": {"file_id": uploaded["id"]}}]

    completion = client.chat.completions.create(model=MODEL_ID, messages=_ask(content))
    assert completion.hugginggpt["conversation_id"] == uploaded["conversation_id"]
    assert completion.hugginggpt["results"][0]["outputs"]["text"] == "a 8x8 red image"


def test_files_of_another_conversation_cannot_be_named(client, server):
    first = httpx.post(f"{server.url}/v1/files", files={"file": ("a.png", _png((0, 0, 0)), "image/png")}).json()
    second = httpx.post(f"{server.url}/v1/files", files={"file": ("b.png", _png((0, 0, 0)), "image/png")}).json()
    assert first["conversation_id"] != second["conversation_id"]
    content = [{"type": "text", "text": "describe it"}, {"type": "file", "file": {"file_id": second["id"]}}]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model=MODEL_ID, messages=_ask(content), extra_body={"conversation_id": first["conversation_id"]}
        )


def test_an_unknown_model_is_refused(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=_ask("hello"))


def test_the_last_message_must_be_the_users(client):
    with pytest.raises(openai.BadRequestError, match="last message"):
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "assistant", "content": "hi"}])


def test_a_malformed_request_gets_an_openai_style_error(server):
    response = httpx.post(f"{server.url}/v1/chat/completions", json={"model": MODEL_ID})
    assert response.status_code == 400
    assert "messages" in response.json()["error"]["message"]


def test_a_crashing_run_fails_alone(client):
    with pytest.raises(openai.InternalServerError, match="crashed on purpose"):
        client.chat.completions.create(model=MODEL_ID, messages=_ask("crash now"))
    with pytest.raises(openai.APIError, match="crashed on purpose"):
        list(client.chat.completions.create(model=MODEL_ID, messages=_ask("crash again"), stream=True))
    assert client.chat.completions.create(model=MODEL_ID, messages=_ask("say still here")).choices[0].message.content


def test_a_failing_task_is_reported_in_a_normal_answer(client):
    completion = client.chat.completions.create(model=MODEL_ID, messages=_ask("gate fail this"))
    (result,) = completion.hugginggpt["results"]
    assert result["status"] == "failed" and "refused" in result["error"]
