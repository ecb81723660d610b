import json

import pytest

from helpers import OpenAIServer, Reply
from hugginggpt.errors import LLMError
from hugginggpt.llm.openai import OpenAICompatibleLLM
from hugginggpt.llm.protocol import Message

MESSAGES = [Message(role="system", content="be brief"), Message(role="user", content="hi")]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


async def test_plain_completion_sends_model_key_and_reads_usage():
    with OpenAIServer(lambda body: Reply("hello there")) as server:
        llm = OpenAICompatibleLLM(server.url, "my-model", "sk-test")
        completion = await llm.complete(MESSAGES, max_tokens=50)
    assert completion.text == "hello there" and completion.finish_reason == "stop"
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 7
    body = server.requests[0]
    assert body["model"] == "my-model" and body["max_tokens"] == 50 and body["stream"] is False
    assert body["messages"] == [m.model_dump() for m in MESSAGES]
    headers = {k.lower(): v for k, v in server.headers[0].items()}
    assert headers["authorization"] == "Bearer sk-test"


async def test_streaming_delivers_deltas_in_order():
    deltas = []
    with OpenAIServer(lambda body: Reply("a streamed reply of some length")) as server:
        completion = await OpenAICompatibleLLM(server.url).complete(MESSAGES, on_delta=deltas.append)
    assert len(deltas) > 3 and "".join(deltas) == completion.text == "a streamed reply of some length"
    assert server.requests[0]["stream"] is True and completion.finish_reason == "stop"


async def test_json_schema_is_sent_as_response_format():
    with OpenAIServer(lambda body: Reply('{"a": 1}')) as server:
        llm = OpenAICompatibleLLM(server.url)
        await llm.complete(MESSAGES, json_schema=SCHEMA)
    fmt = server.requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == SCHEMA
    assert llm.format == "json_schema"


async def test_falls_back_to_json_object_then_text_and_remembers():
    def handler(body):
        kind = (body.get("response_format") or {}).get("type")
        if kind == "json_schema":
            return Reply(status=400, body={"error": "response_format json_schema unsupported"})
        if kind == "json_object":
            return Reply(status=422, body={"error": "unknown field schema"})
        return Reply('Here: {"a": 1}')

    with OpenAIServer(handler) as server:
        llm = OpenAICompatibleLLM(server.url)
        first = await llm.complete(MESSAGES, json_schema=SCHEMA)
        second = await llm.complete(MESSAGES, json_schema=SCHEMA)
    assert first.text == second.text == 'Here: {"a": 1}'
    assert llm.format == "text"
    kinds = [(r.get("response_format") or {}).get("type") for r in server.requests]
    assert kinds == ["json_schema", "json_object", None, None]  # the second call goes straight to what worked
    assert json.dumps(SCHEMA) in server.requests[2]["messages"][0]["content"]


async def test_json_object_with_schema_is_what_llama_cpp_server_wants():
    def handler(body):
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object" and fmt.get("schema") == SCHEMA:
            return Reply('{"a": 2}')
        return Reply(status=400, body={"error": "bad response_format"})

    with OpenAIServer(handler) as server:
        llm = OpenAICompatibleLLM(server.url)
        assert (await llm.complete(MESSAGES, json_schema=SCHEMA)).text == '{"a": 2}'
    assert llm.format == "json_object"


async def test_retries_5xx_and_429_then_succeeds():
    replies = [Reply(status=503), Reply(status=429, headers={"retry-after": "0"}), Reply("finally")]
    with OpenAIServer(lambda body: replies.pop(0)) as server:
        completion = await OpenAICompatibleLLM(server.url).complete(MESSAGES)
    assert completion.text == "finally" and len(server.requests) == 3


async def test_gives_up_after_retries_with_a_clear_error():
    with OpenAIServer(lambda body: Reply(status=500)) as server, pytest.raises(LLMError, match="unreachable: HTTP 500"):
        await OpenAICompatibleLLM(server.url, retries=2).complete(MESSAGES)
    assert len(server.requests) == 3


async def test_unreachable_endpoint_is_a_clear_error():
    with OpenAIServer(lambda body: Reply("x")) as server:
        url = server.url
    with pytest.raises(LLMError, match="unreachable: cannot connect.*HUGGINGGPT_LLM_BASE_URL"):
        await OpenAICompatibleLLM(url, retries=1).complete(MESSAGES)


async def test_slow_endpoint_times_out():
    with (
        OpenAIServer(lambda body: Reply("late", delay=1.0)) as server,
        pytest.raises(LLMError, match="did not answer within 0.2 s"),
    ):
        await OpenAICompatibleLLM(server.url, timeout=0.2).complete(MESSAGES)


async def test_auth_and_not_found_errors_say_what_to_fix():
    with (
        OpenAIServer(lambda body: Reply(status=401)) as server,
        pytest.raises(LLMError, match="HUGGINGGPT_LLM_API_KEY"),
    ):
        await OpenAICompatibleLLM(server.url).complete(MESSAGES)
    with OpenAIServer(lambda body: Reply("x")) as server, pytest.raises(LLMError, match="not found.*ends in /v1"):
        await OpenAICompatibleLLM(server.url.removesuffix("/v1")).complete(MESSAGES)


async def test_malformed_reply_is_an_llm_error():
    with (
        OpenAIServer(lambda body: Reply(body={"unexpected": True})) as server,
        pytest.raises(LLMError, match="unexpected reply"),
    ):
        await OpenAICompatibleLLM(server.url).complete(MESSAGES)


async def test_length_finish_reason_is_reported():
    with OpenAIServer(lambda body: Reply('{"a": ', finish_reason="length")) as server:
        completion = await OpenAICompatibleLLM(server.url).complete(MESSAGES, json_schema=SCHEMA)
    assert completion.finish_reason == "length"


async def test_no_key_sends_no_authorization_and_never_the_environments(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-for-api.openai.com")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-x")
    with OpenAIServer(lambda body: Reply("ok")) as server:
        await OpenAICompatibleLLM(server.url).complete(MESSAGES)
        await OpenAICompatibleLLM(server.url).complete(MESSAGES, on_delta=lambda text: None)
    for sent in server.headers:
        names = {k.lower() for k in sent}
        assert "authorization" not in names and "openai-organization" not in names


async def test_streaming_asks_for_usage_and_reads_it():
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}
    replies = [Reply("abcdefghij", usage=usage), Reply("abcdefghij")]
    with OpenAIServer(lambda body: replies.pop(0)) as server:
        llm = OpenAICompatibleLLM(server.url)
        completion = await llm.complete(MESSAGES, on_delta=lambda text: None)
        without = await llm.complete(MESSAGES, on_delta=lambda text: None)
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    assert completion.text == "abcdefghij" and completion.finish_reason == "stop"
    assert completion.usage.prompt_tokens == 5 and completion.usage.completion_tokens == 3
    assert completion.usage.cached_tokens == 4  # the endpoint's prompt_tokens_details
    assert without.usage.completion_tokens == 2 and without.usage.cached_tokens is None  # none reported


async def test_stream_broken_after_deltas_fails_without_resending_them():
    """Issue 17: text already given to on_delta is never given again; the call fails saying how much got through."""
    deltas = []
    with (
        OpenAIServer(lambda body: Reply("0123456789abcdefghij", break_after=2)) as server,
        pytest.raises(LLMError, match="stream from the LLM at .* broke after 10 characters"),
    ):
        await OpenAICompatibleLLM(server.url, retries=3).complete(MESSAGES, on_delta=deltas.append)
    assert deltas == ["01234", "56789"] and len(server.requests) == 1


async def test_stream_broken_before_any_delta_is_retried():
    replies = [Reply("never sent", break_after=0), Reply("the whole reply")]
    deltas = []
    with OpenAIServer(lambda body: replies.pop(0)) as server:
        completion = await OpenAICompatibleLLM(server.url).complete(MESSAGES, on_delta=deltas.append)
    assert "".join(deltas) == completion.text == "the whole reply" and len(server.requests) == 2


async def test_stream_that_keeps_breaking_before_any_delta_gives_up():
    with (
        OpenAIServer(lambda body: Reply("never sent", break_after=0)) as server,
        pytest.raises(LLMError, match="broke after 0 characters"),
    ):
        await OpenAICompatibleLLM(server.url, retries=1).complete(MESSAGES, on_delta=lambda text: None)
    assert len(server.requests) == 2
