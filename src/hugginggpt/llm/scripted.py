"""A deterministic LLM for tests and demos: replies come from a script, not a model."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any

from .protocol import Completion, DeltaCallback, LLMError, Message, Usage

Reply = str | Exception | Callable[[Sequence[Message], dict[str, Any] | None], str]


def _count_tokens(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


class ScriptedLLM:
    """Answers each call with the next scripted reply.

    A reply is a string, an exception to raise, or a function of (messages, json_schema) returning a string.
    With `fallback` set, it answers every call after the script runs out; otherwise that is an error.
    Every call is recorded in `calls` as (messages, json_schema).
    """

    name = "scripted"

    def __init__(self, *replies: Reply, fallback: Reply | None = None, delay: float = 0.0, chunk: int = 8) -> None:
        self._replies = list(replies)
        self._fallback = fallback
        self._delay = delay
        self._chunk = chunk
        self.calls: list[tuple[list[Message], dict[str, Any] | None]] = []

    async def warm(self, prefix: Sequence[Message]) -> None:
        """Nothing to prepare: replies come from the script."""

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        on_delta: DeltaCallback | None = None,
    ) -> Completion:
        self.calls.append((list(messages), json_schema))
        if self._replies:
            reply = self._replies.pop(0)
        elif self._fallback is not None:
            reply = self._fallback
        else:
            raise LLMError(f"scripted LLM has no reply left for call {len(self.calls)}")
        if self._delay:
            await asyncio.sleep(self._delay)
        if isinstance(reply, Exception):
            raise reply
        text = reply if isinstance(reply, str) else reply(messages, json_schema)
        if on_delta is not None:
            for start in range(0, len(text), self._chunk):
                on_delta(text[start : start + self._chunk])
                await asyncio.sleep(0)
        prompt = sum(_count_tokens(m.content) for m in messages)
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=prompt, completion_tokens=_count_tokens(text)),
            finish_reason="stop",
        )
