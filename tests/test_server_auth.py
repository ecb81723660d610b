"""API keys: Bearer auth, each key seeing only its own conversations, files and runs, and the bind-address rule."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest

from hugginggpt.server.auth import ApiKeys, BindRefused, KeyLimiter, check_bind, is_loopback, key_id, parse_keys
from hugginggpt.server.completions import MODEL_ID
from serverkit import Served

ALPHA = {"Authorization": "Bearer alpha-secret"}
BETA = {"Authorization": "Bearer beta-secret"}


def test_keys_are_parsed_from_a_comma_or_space_separated_setting():
    assert parse_keys(" a1, b2 ,,c3\nd4 ") == ["a1", "b2", "c3", "d4"]
    assert parse_keys(None) == []


def test_a_key_is_identified_by_a_hash_never_by_itself():
    keys = ApiKeys(["alpha-secret", "beta-secret"])
    assert keys.required
    assert keys.identify("alpha-secret") == key_id("alpha-secret")
    assert "alpha" not in key_id("alpha-secret")
    assert keys.identify("alpha-secre") is None
    assert not ApiKeys().required


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_addresses_need_no_keys(host):
    assert is_loopback(host)
    check_bind(host, ApiKeys())


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_other_addresses_need_keys_or_insecure(host):
    with pytest.raises(BindRefused, match="HUGGINGGPT_API_KEYS"):
        check_bind(host, ApiKeys())
    check_bind(host, ApiKeys(["k"]))
    check_bind(host, ApiKeys(), insecure=True)


def test_the_limiter_counts_runs_per_key():
    limiter = KeyLimiter(2)
    assert limiter.try_acquire("a") and limiter.try_acquire("a")
    assert not limiter.try_acquire("a")
    assert limiter.try_acquire("b")
    limiter.release("a")
    assert limiter.try_acquire("a")
    assert limiter.running("a") == 2


def test_serve_refuses_a_public_address_without_keys():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUGGINGGPT_")}
    done = subprocess.run(
        [sys.executable, "-m", "hugginggpt.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0 without API keys" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def server(tmp_path):
    with Served(tmp_path, api_keys="alpha-secret,beta-secret") as live:
        yield live


def test_requests_without_a_valid_key_get_401(server):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YWxwaGE="}, {"Authorization": ""}):
        response = httpx.get(f"{server.url}/v1/conversations", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["type"] == "authentication_error"
    for method, path in [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/runs"),
        ("POST", "/v1/files"),
        ("GET", "/v1/models"),
        ("POST", "/hugginggpt"),
        ("POST", "/tasks"),
        ("POST", "/results"),
    ]:
        assert httpx.request(method, server.url + path, json={}).status_code == 401, path
    with (
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.models.list()


def test_the_page_and_health_check_are_public(server):
    assert httpx.get(server.url + "/").status_code == 200
    assert httpx.get(server.url + "/healthz").json()["auth"] == "bearer"


def test_a_key_cannot_reach_another_keys_conversation_files_or_runs(server):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="alpha-secret", max_retries=0) as alpha:
        completion = alpha.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "draw a red apple"}]
        )
    run = completion.hugginggpt
    conversation, run_id = run["conversation_id"], run["run_id"]
    (image,) = run["artifacts"]
    upload = httpx.post(
        f"{server.url}/v1/files",
        headers=ALPHA,
        data={"conversation_id": conversation},
        files={"file": ("a.txt", b"hi")},
    ).json()

    assert httpx.get(server.url + image["url"], headers=ALPHA).status_code == 200
    for method, path in [
        ("GET", f"/v1/conversations/{conversation}"),
        ("DELETE", f"/v1/conversations/{conversation}"),
        ("GET", f"/v1/files/{image['file_id']}"),
        ("GET", image["url"]),
        ("GET", f"/v1/files/{upload['id']}/content"),
        ("GET", f"/v1/files?conversation_id={conversation}"),
        ("GET", f"/v1/runs/{run_id}"),
        ("GET", f"/v1/runs/{run_id}/events"),
        ("DELETE", f"/v1/runs/{run_id}"),
    ]:
        response = httpx.request(method, server.url + path, headers=BETA)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{server.url}/v1/conversations", headers=BETA).json()["data"] == []
    assert httpx.get(f"{server.url}/v1/files", headers=BETA).json()["data"] == []

    with (
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="beta-secret", max_retries=0) as beta,
        pytest.raises(openai.NotFoundError),
    ):
        beta.chat.completions.create(
            model=MODEL_ID,
            messages=[{"role": "user", "content": "describe the picture"}],
            extra_body={"conversation_id": conversation},
        )
    upload_into = httpx.post(
        f"{server.url}/v1/files", headers=BETA, data={"conversation_id": conversation}, files={"file": ("b.txt", b"x")}
    )
    assert upload_into.status_code == 404
    runs_into = httpx.post(
        f"{server.url}/v1/runs", headers=BETA, json={"message": "say hi", "conversation_id": conversation}
    )
    assert runs_into.status_code == 404
    # ... and the owner still has everything.
    detail = httpx.get(f"{server.url}/v1/conversations/{conversation}", headers=ALPHA).json()
    assert len(detail["runs"]) == 1 and len(detail["files"]) == 2
