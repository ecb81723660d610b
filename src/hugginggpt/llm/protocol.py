"""The controller-LLM protocol every backend implements, its message types, and a usage meter."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from ..errors import LLMError, OutputTruncated
from ..types import LLMCall

__all__ = [
    "LLM",
    "Completion",
    "DeltaCallback",
    "LLMError",
    "Message",
    "OutputTruncated",
    "Usage",
    "UsageMeter",
    "warm",
]


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None  # of the prompt, served from a KV cache instead of read (where the backend says)


class Completion(BaseModel):
    """A finished reply: its text, token usage and why generation stopped."""

    text: str
    usage: Usage = Usage()
    finish_reason: str | None = None


DeltaCallback = Callable[[str], None]


@runtime_checkable
class LLM(Protocol):
    """A chat model. `json_schema` constrains the reply where the backend can; `on_delta` gets text as it streams.

    Optional: `accepts_grammar = True` with a `grammar: str | None` keyword on `complete` (a GBNF grammar that binds
    the reply instead of `json_schema`, as llama.cpp takes it); callers pass `grammar` only to backends with it.
    Optional: `async def warm(prefix: Sequence[Message]) -> Any`, called (through `warm` below) with the fixed start
    of later prompts before the first of them, so a backend can get it ready (the embedded one restores its saved
    KV state). Backends without it need nothing.
    """

    name: str

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        on_delta: DeltaCallback | None = None,
    ) -> Completion: ...


async def warm(llm: LLM, prefix: Sequence[Message]) -> Any:
    """Let `llm` prepare the fixed prompt start `prefix` if it can (its `warm` method); None for backends without."""
    method = getattr(llm, "warm", None)
    if method is None:
        return None
    return await method(prefix)


class UsageMeter:
    """Counts and times the LLM calls of one request, per stage."""

    def __init__(self) -> None:
        self.calls: list[LLMCall] = []

    def bind(self, llm: LLM, stage: str) -> LLM:
        return _MeteredLLM(llm, stage, self)


class _MeteredLLM:
    def __init__(self, inner: LLM, stage: str, meter: UsageMeter) -> None:
        self.inner = inner
        self.stage = stage
        self.meter = meter
        self.name = inner.name

    async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
        start = time.perf_counter()
        call = LLMCall(stage=self.stage)
        self.meter.calls.append(call)
        try:
            completion = await self.inner.complete(messages, **kwargs)
        except BaseException:
            call.ok = False
            raise
        finally:
            call.seconds = round(time.perf_counter() - start, 3)
        call.prompt_tokens = completion.usage.prompt_tokens
        call.completion_tokens = completion.usage.completion_tokens
        call.cached_tokens = completion.usage.cached_tokens
        return completion
