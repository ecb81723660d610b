"""Any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp server) through the `openai` SDK.

The SDK retries the request (connection errors, 408, 409, 429, 5xx, with jittered exponential backoff and
`Retry-After`) `retries` times. `timeout` bounds the whole request, retries included: a hung endpoint fails after
that long, not after `retries + 1` timeouts. A stream that breaks after its response began is not retried once any
text reached `on_delta` (that text cannot be taken back, and a new reply need not start with it): it fails with the
number of characters delivered. One that breaks before any text is retried like a failed request.

Structured output: tries `response_format` `json_schema`, then `json_object` + `schema` (llama.cpp server), then
plain text with the schema in the prompt, and remembers what this endpoint accepted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import openai

from .protocol import Completion, DeltaCallback, LLMError, Message, Usage

# How to ask for JSON, best first. The first one this endpoint accepts is remembered.
FORMATS = ("json_schema", "json_object", "text")
# Statuses the SDK retries; when they remain after the retries, the endpoint counts as unreachable.
_RETRIED_STATUS = {408, 409, 429}


class OpenAICompatibleLLM:
    """Chat completions over HTTP (the `openai` SDK's `AsyncOpenAI`), plain or streamed."""

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        retries: int = 3,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model
        self.timeout = timeout
        self.retries = retries
        self.api_key = api_key
        # Never the SDK's defaults from OPENAI_* variables: they are for api.openai.com, not for this endpoint.
        self._headers: dict[str, Any] = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}
        if not api_key:
            self._headers["Authorization"] = openai.Omit()
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
            body = self._body(messages, json_schema, fmt, max_tokens, temperature)
            try:
                completion = await (self._plain(body) if on_delta is None else self._streamed(body, on_delta))
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
    ) -> dict[str, Any]:
        payload = [m.model_dump() for m in messages]
        body: dict[str, Any] = {"model": self.model, "messages": payload, "temperature": temperature}
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

    def _client(self) -> openai.AsyncOpenAI:
        # A client per call, closed after it: an SDK client holds connections of the event loop it first ran in.
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "unused",
            timeout=self.timeout,
            max_retries=self.retries,
        )

    async def _create(self, client: openai.AsyncOpenAI, body: dict[str, Any], **stream: Any) -> Any:
        """The request, with the SDK's retries, all within `timeout`; SDK errors become LLMError or _Rejected."""
        try:
            async with asyncio.timeout(self.timeout):
                return await client.chat.completions.create(**body, **stream, extra_headers=self._headers)
        except TimeoutError:
            raise self._timed_out() from None
        except openai.APIError as exc:
            raise self._error(exc) from None

    async def _plain(self, body: dict[str, Any]) -> Completion:
        async with self._client() as client:
            response = await self._create(client, body, stream=False)
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise LLMError(f"unexpected reply from the LLM endpoint: {_dump(response)[:200]}") from None
        return Completion(text=text, usage=_usage(response.usage), finish_reason=choice.finish_reason)

    async def _streamed(self, body: dict[str, Any], on_delta: DeltaCallback) -> Completion:
        options = {"stream": True, "stream_options": {"include_usage": True}}
        attempt = 0
        while True:
            parts: list[str] = []
            finish: str | None = None
            usage = Usage()
            broken: Exception | None = None
            async with self._client() as client, await self._create(client, body, **options) as stream:
                while True:
                    try:
                        chunk = await anext(stream)
                    except StopAsyncIteration:
                        break
                    except Exception as exc:  # the SDK's errors or, in older SDKs, the HTTP library's
                        broken = exc
                        break
                    if chunk.usage:
                        usage = _usage(chunk.usage)
                    for choice in chunk.choices or []:
                        delta = choice.delta.content if choice.delta else None
                        if delta:
                            parts.append(delta)
                            on_delta(delta)
                        if choice.finish_reason:
                            finish = choice.finish_reason
            if broken is None:
                break
            # Deltas already delivered cannot be re-sent; with none delivered, asking again is safe.
            if parts or attempt >= self.retries or not _is_transport_error(broken):
                delivered = sum(map(len, parts))
                raise LLMError(
                    f"the stream from the LLM at {self.base_url} broke after {delivered} characters: "
                    f"{self._reason(broken)}"
                ) from None
            attempt += 1
            await asyncio.sleep(0.5 * attempt)
        if not usage.completion_tokens:
            usage.completion_tokens = len(parts)
        return Completion(text="".join(parts), usage=usage, finish_reason=finish)

    def _timed_out(self) -> LLMError:
        return LLMError(f"the LLM at {self.base_url} did not answer within {self.timeout:g} s")

    def _reason(self, exc: BaseException) -> str:
        if _is_timeout(exc):
            return f"no data for {self.timeout:g} s"
        cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) and exc.__cause__ else exc
        return f"{type(cause).__name__}: {cause}"

    def _error(self, exc: openai.APIError) -> Exception:
        if isinstance(exc, openai.APITimeoutError):
            return self._timed_out()
        if isinstance(exc, openai.APIConnectionError):
            return self._unreachable(f"cannot connect ({self._reason(exc)})")
        if not isinstance(exc, openai.APIStatusError):
            return LLMError(f"unexpected reply from the LLM endpoint: {exc}")
        status = exc.status_code
        detail = exc.response.text[:300]
        if status in _RETRIED_STATUS or status >= 500:
            return self._unreachable(f"HTTP {status}: {detail}")
        if status in (401, 403):
            return LLMError(
                f"the LLM at {self.base_url} refused the API key (HTTP {status}); set HUGGINGGPT_LLM_API_KEY"
            )
        if status == 404:
            return LLMError(
                f"{self.base_url}/chat/completions or model {self.model!r} not found (HTTP 404); "
                "check HUGGINGGPT_LLM_BASE_URL (it usually ends in /v1) and HUGGINGGPT_LLM_MODEL"
            )
        return _Rejected(f"HTTP {status}: {detail}")

    def _unreachable(self, reason: str) -> LLMError:
        return LLMError(
            f"the LLM at {self.base_url} is unreachable: {reason}. "
            "Check HUGGINGGPT_LLM_BASE_URL and that the server is running."
        )


class _Rejected(Exception):
    """A 4xx the endpoint may not give for a simpler request (e.g. an unsupported response_format)."""


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, openai.APITimeoutError | TimeoutError) or "Timeout" in type(exc).__name__


def _is_transport_error(exc: BaseException) -> bool:
    """The connection failed (not a timeout, not an error the endpoint sent in the stream)."""
    if _is_timeout(exc):
        return False
    if isinstance(exc, openai.APIConnectionError):
        return True
    # Older SDKs let the HTTP library's errors (httpx.TransportError and its subclasses) out of a stream.
    return any(cls.__name__ == "TransportError" for cls in type(exc).__mro__)


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        prompt_tokens=getattr(usage, "prompt_tokens", None) or 0,
        completion_tokens=getattr(usage, "completion_tokens", None) or 0,
        cached_tokens=getattr(details, "cached_tokens", None),
    )


def _dump(response: Any) -> str:
    try:
        return json.dumps(response.model_dump(exclude_unset=True), default=str)
    except Exception:
        return repr(response)
