"""The HTTP API fuzzed from its own OpenAPI schema (Schemathesis) against a live server on 127.0.0.1 with the
scripted controller: valid and invalid requests to every operation; no 5xx, and every error a JSON error body."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from hugginggpt.server.app import create_app
from serverkit import Served, make_pipeline, settings_for


def _published_schema() -> dict:
    """The OpenAPI document the app publishes, read at collection time (Schemathesis parametrizes from it; the
    test below checks the live server serves the same document). Building the app opens no files."""
    conf = settings_for(Path(tempfile.gettempdir()) / "hugginggpt-fuzz-schema")
    return create_app(make_pipeline(conf), conf).openapi()


SCHEMA = _published_schema()
# Examples per operation: modest on two cores; FUZZ_EXAMPLES=200 for a deeper run.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
schema = schemathesis.openapi.from_dict(SCHEMA)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with Served(tmp_path_factory.mktemp("fuzz"), max_upload_bytes=20_000, max_runs_per_key=64) as server:
        yield server


def errors_are_json(ctx, response, case) -> None:
    """Every 4xx/5xx answer is `{"error": {"message": ..., "type": ...}}`, as OpenAI clients expect."""
    if response.status_code < 400:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} with a non-JSON body: {response.content[:200]!r}") from None
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{response.status_code} without an error object: {body!r:.200}"
    assert isinstance(error.get("message"), str) and error["message"].strip(), body
    assert isinstance(error.get("type"), str), body


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_without_server_errors_and_with_json_errors(case, live):
    case.call_and_validate(base_url=live.url, checks=[not_a_server_error, errors_are_json], timeout=30)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server with API keys (so no Host check): the fuzzer sends one key, a wrong one, or none."""
    with Served(tmp_path_factory.mktemp("keyed"), api_keys="key-one,key-two", max_upload_bytes=20_000) as server:
        yield server


AUTHORIZATIONS = [{"Authorization": "Bearer key-one"}, {"Authorization": "Bearer wrong"}, {}, {"Authorization": "x"}]


@schema.parametrize()
@settings(max_examples=max(EXAMPLES // 2, 4), deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_with_keys_answers_401s_and_the_rest_as_json(case, keyed):
    headers = AUTHORIZATIONS[len(str(case.path_parameters)) % len(AUTHORIZATIONS)]
    case.call_and_validate(
        base_url=keyed.url, headers=headers, checks=[not_a_server_error, errors_are_json], timeout=30
    )


def test_the_schema_covers_the_api_including_uploads(live):
    """What the fuzzer gets to see: every route of the API, and the upload's multipart body."""
    document = httpx.get(f"{live.url}/openapi.json").json()
    assert document == json.loads(json.dumps(SCHEMA))
    paths = document["paths"]
    for route in ("/v1/chat/completions", "/v1/files", "/v1/files/{file_id}/content", "/v1/runs", "/hugginggpt"):
        assert route in paths, route
    upload = paths["/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["file"]["format"] == "binary" and upload["required"] == ["file"]


def _check_error_body(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"].strip()


anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
b64 = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
data_urls = st.one_of(
    b64.map(lambda d: f"data:image/png;base64,{d}"),
    st.text(max_size=30).map(lambda t: "data:" + t),
    st.sampled_from(["data:;base64,", "data:image/png;base64,%%%", "http://127.0.0.1/x.png", "file:///etc/passwd"]),
)
# The parts of an OpenAI user message, right and wrong: the schema calls them objects, so the fuzzer above only
# tries arbitrary keys; these try the shapes clients send, with any value in any place.
content_parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=40) | anything}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": data_urls | anything}) | anything}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("input_audio"),
            "input_audio": st.fixed_dictionaries({"data": b64 | anything, "format": st.text(max_size=8) | anything})
            | anything,
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("file"),
            "file": st.fixed_dictionaries(
                {},
                optional={
                    "file_id": st.text(max_size=30) | anything,
                    "file_data": data_urls | b64 | anything,
                    "filename": st.sampled_from(["../../x.png", "/etc/passwd", "a\x00b.txt", "..", "ok.txt"]),
                },
            )
            | anything,
        }
    ),
    st.dictionaries(st.sampled_from(["type", "text", "file"]), anything, max_size=3),
)


@settings(max_examples=EXAMPLES * 6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(content_parts, min_size=1, max_size=3))
def test_chat_content_parts_of_any_shape_get_an_answer_or_a_json_error(live, parts):
    body = {"model": "hugginggpt", "messages": [{"role": "user", "content": parts}]}
    _check_error_body(httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=30))


@pytest.mark.parametrize("value", ["²", "٣", "9" * 5000, "-1", "1e3", "07", ""])
def test_any_last_event_id_header_is_read_or_ignored(live, value):
    run = httpx.post(f"{live.url}/v1/runs", json={"message": "summarize hello"}, timeout=30)
    assert run.status_code == 200
    run_id = next(line for line in run.text.splitlines() if line.startswith("data: "))
    run_id = json.loads(run_id[6:])["run_id"]
    response = httpx.get(f"{live.url}/v1/runs/{run_id}/events", headers={"Last-Event-ID": value.encode()}, timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert "event: run.end" in response.text


RAW_BODIES = [
    (
        "nested 100,000 deep",
        "/v1/chat/completions",
        b'{"model": "hugginggpt", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ),
    ("not UTF-8", "/v1/runs", b'{"message": "\xff\xfe summarize"}'),
    ("lone surrogate, run", "/v1/runs", b'{"message": "summarize \\ud800"}'),
    (
        "lone surrogate, chat",
        "/v1/chat/completions",
        b'{"model": "hugginggpt", "messages": [{"role": "user", "content": "summarize \\udfff"}]}',
    ),
    (
        "lone surrogate, chat part",
        "/v1/chat/completions",
        b'{"model": "hugginggpt", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "\\ud800"}}]}]}',
    ),
    (
        "lone surrogate, JARVIS history",
        "/hugginggpt",
        b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "\\ud800"}, {"role": "user", "content": "summarize b"}]}',
    ),
    ("lone surrogate, key", "/results", b'{"messages": [{"role": "user", "content": "summarize b"}], "\\udc00": 1}'),
    ("lone surrogate, title", "/v1/conversations", b'{"title": "\\ud83d"}'),
    ("a 5,000-digit number", "/v1/runs", b'{"message": "hi", "files": [' + b"1" * 5000 + b"]}"),
    (
        "NaN",
        "/v1/chat/completions",
        b'{"model": "hugginggpt", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    ),
    ("truncated", "/tasks", b'{"messages": [{"role": "user", "content": "summ'),
    ("not an object", "/v1/chat/completions", b'"just a string"'),
    ("empty", "/v1/runs", b""),
]


@pytest.mark.parametrize(("what", "route", "body"), RAW_BODIES, ids=[r[0] for r in RAW_BODIES])
def test_malformed_bodies_get_a_json_error_not_a_crash(live, what, route, body):
    response = httpx.post(f"{live.url}{route}", content=body, headers={"Content-Type": "application/json"}, timeout=30)
    _check_error_body(response)
    assert httpx.get(f"{live.url}/healthz").status_code == 200


def test_a_bug_behind_a_route_still_answers_a_json_error(live):
    """The scripted controller raises a plain RuntimeError on "crash": no route expects that, so the app-wide
    handler answers (a 500, but as an error object, never Starlette's plain-text page)."""
    response = httpx.post(f"{live.url}/tasks", json={"messages": [{"role": "user", "content": "crash now"}]})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "message": "internal server error",
        "type": "server_error",
        "param": None,
        "code": "internal",
    }
