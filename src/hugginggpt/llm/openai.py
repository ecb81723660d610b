"""Any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp server) over httpx.

Structured output: tries `response_format` `json_schema`, then `json_object` + `schema` (llama.cpp server), then
plain text with the schema in the prompt, and remembers what this endpoint accepted.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from typing import Any

import httpx

from .protocol import Completion, DeltaCallback, LLMError, Message, Usage

# How to ask for JSON, best first. The first one this endpoint accepts is remembered.
FORMATS = ("json_schema", "json_object", "text")
_RETRY_STATUS = {429, 500, 502, 503, 504}


class OpenAICompatibleLLM:
    """Chat completions over HTTP with retries (connection errors, 429, 5xx) and streaming."""

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client_args: dict[str, Any] = {"headers": headers, "timeout": timeout, "transport": transport}
        self.format: str | None = None  # learned: which of FORMATS the endpoint accepts

    async def warm(self, prefix: Sequence[Message]) -> None:
        """Nothing to prepare: the endpoint caches prompt prefixes itself, if it does."""

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        on_delta: DeltaCallback | None = None,
    ) -> Completion:
        formats = [None] if json_schema is None else ([self.format] if self.format else list(FORMATS))
        last_error: LLMError | None = None
        for fmt in formats:
            body = self._body(messages, json_schema, fmt, max_tokens, temperature, stream=on_delta is not None)
            try:
                completion = await self._post(body, on_delta)
            except _Rejected as exc:
                last_error = LLMError(f"{self.base_url} rejected the request: {exc}")
                if fmt is None or fmt == "text":
                    raise last_error from None
                continue
            if fmt is not None:
                self.format = fmt
            return completion
        raise last_error or LLMError("no request format worked")

    def _body(
        self,
        messages: Sequence[Message],
        schema: dict[str, Any] | None,
        fmt: str | None,
        max_tokens: int | None,
        temperature: float,
        stream: bool,
    ) -> dict[str, Any]:
        payload = [m.model_dump() for m in messages]
        body: dict[str, Any] = {"model": self.model, "messages": payload, "temperature": temperature, "stream": stream}
        if max_tokens:
            body["max_tokens"] = max_tokens
        if fmt == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": True},
            }
        elif fmt == "json_object":
            body["response_format"] = {"type": "json_object", "schema": schema}
        elif fmt == "text":
            hint = f"Reply with JSON only, matching this JSON schema: {json.dumps(schema)}"
            if payload and payload[0]["role"] == "system":
                payload[0] = {"role": "system", "content": payload[0]["content"] + "\n\n" + hint}
            else:
                payload.insert(0, {"role": "system", "content": hint})
        return body

    async def _post(self, body: dict[str, Any], on_delta: DeltaCallback | None) -> Completion:
        url = f"{self.base_url}/chat/completions"
        attempt = 0
        while True:
            try:
                async with httpx.AsyncClient(**self._client_args) as client:
                    if on_delta is None:
                        response = await client.post(url, json=body)
                        self._check(response)
                        return _completion(response.json())
                    async with client.stream("POST", url, json=body) as response:
                        if response.status_code >= 400:
                            await response.aread()
                        self._check(response)
                        return await _read_stream(response, on_delta)
            except _Retry as exc:
                reason, wait = str(exc), exc.wait
            except httpx.TimeoutException:
                raise LLMError(f"the LLM at {self.base_url} did not answer within {self.timeout:g} s") from None
            except httpx.TransportError as exc:
                reason, wait = f"cannot connect ({type(exc).__name__}: {exc})", None
            if attempt >= self.retries:
                raise LLMError(
                    f"the LLM at {self.base_url} is unreachable: {reason}. "
                    "Check HUGGINGGPT_LLM_BASE_URL and that the server is running."
                )
            attempt += 1
            await asyncio.sleep(
                wait if wait is not None else self.backoff * 2 ** (attempt - 1) * (1 + random.random() / 4)
            )

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = response.text[:300]
        if status in _RETRY_STATUS:
            retry_after = response.headers.get("retry-after")
            wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            raise _Retry(f"HTTP {status}: {detail}", min(wait, 30.0) if wait is not None else None)
        if status in (401, 403):
            raise LLMError(
                f"the LLM at {self.base_url} refused the API key (HTTP {status}); set HUGGINGGPT_LLM_API_KEY"
            )
        if status == 404:
            raise LLMError(
                f"{self.base_url}/chat/completions or model {self.model!r} not found (HTTP 404); "
                "check HUGGINGGPT_LLM_BASE_URL (it usually ends in /v1) and HUGGINGGPT_LLM_MODEL"
            )
        raise _Rejected(f"HTTP {status}: {detail}")


class _Retry(Exception):
    def __init__(self, message: str, wait: float | None) -> None:
        super().__init__(message)
        self.wait = wait


class _Rejected(Exception):
    """A 4xx the endpoint may not give for a simpler request (e.g. an unsupported response_format)."""


def _usage(data: dict[str, Any] | None) -> Usage:
    data = data or {}
    return Usage(prompt_tokens=data.get("prompt_tokens") or 0, completion_tokens=data.get("completion_tokens") or 0)


def _completion(data: dict[str, Any]) -> Completion:
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise LLMError(f"unexpected reply from the LLM endpoint: {json.dumps(data)[:200]}") from None
    return Completion(text=text, usage=_usage(data.get("usage")), finish_reason=choice.get("finish_reason"))


async def _read_stream(response: httpx.Response, on_delta: DeltaCallback) -> Completion:
    parts: list[str] = []
    finish: str | None = None
    usage = Usage()
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            continue
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                parts.append(delta)
                on_delta(delta)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    text = "".join(parts)
    if not usage.completion_tokens:
        usage.completion_tokens = len(parts)
    return Completion(text=text, usage=usage, finish_reason=finish)
