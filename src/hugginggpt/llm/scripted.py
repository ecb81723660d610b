"""A deterministic LLM for tests and demos: replies come from a script, not a model."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

from .protocol import Completion, DeltaCallback, LLMError, Message, Usage

Reply = str | Exception | Callable[[Sequence[Message], dict[str, Any] | None], str]


_TOKENS = re.compile(r"\w+|[^\w\s]")
# the reply cut into tokens, each with the whitespace before it (the last piece keeps any trailing whitespace)
_TOKEN_PIECES = re.compile(r"\s*(?:\w+|[^\w\s])\s*\Z|\s*(?:\w+|[^\w\s])|\s+\Z")


def _count_tokens(text: str) -> int:
    return len(_TOKENS.findall(text))


def _shared_start(a: str, b: str) -> int:
    """How many characters `a` and `b` have in common at their start."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _flatten(messages: Sequence[Message]) -> str:
    return "".join(f"<{m.role}>{m.content}</{m.role}>" for m in messages)


class ScriptedLLM:
    """Answers each call with the next scripted reply.

    A reply is a string, an exception to raise, or a function of (messages, json_schema) returning a string; a
    function with a `grammar` parameter also gets the call's grammar. With `accepts_grammar=True` the LLM takes
    `complete(grammar=...)` as the embedded one does (`grammars` records each call's, None where there was none).
    With `fallback` set, it answers every call after the script runs out; otherwise that is an error.
    Every call is recorded in `calls` as (messages, json_schema). With `tokens_per_second` set, a reply takes the
    time a model generating at that rate would: its tokens come out one by one on that schedule (streamed to
    `on_delta` as they are due, or all at the end without it). With `prompt_tokens_per_second` set, a call first
    reads its prompt at that rate, except the longest start it shares with an earlier prompt or a `warm` prefix
    (as llama.cpp reuses a slot's cached prefix).
    """

    name = "scripted"

    def __init__(
        self,
        *replies: Reply,
        fallback: Reply | None = None,
        delay: float = 0.0,
        chunk: int = 8,
        tokens_per_second: float | None = None,
        prompt_tokens_per_second: float | None = None,
        accepts_grammar: bool = False,
    ) -> None:
        for rate in (tokens_per_second, prompt_tokens_per_second):
            if rate is not None and rate <= 0:
                raise ValueError("token rates must be positive")
        self._replies = list(replies)
        self._rate = tokens_per_second
        self._read_rate = prompt_tokens_per_second
        self._read: list[str] = []  # every prompt read so far (and warmed prefixes), flattened
        self.prompt_seconds = 0.0  # time spent reading prompts, all calls
        self._fallback = fallback
        self._delay = delay
        self._chunk = chunk
        self.calls: list[tuple[list[Message], dict[str, Any] | None]] = []
        self.accepts_grammar = accepts_grammar
        self.grammars: list[str | None] = []

    async def warm(self, prefix: Sequence[Message]) -> None:
        """Count `prefix` as read (a prompt cache restored it): later prompts that start with it skip reading it."""
        flat = _flatten(prefix)
        if flat not in self._read:  # kept once, however many runs warm it (a server warms it every run)
            self._read.append(flat)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        on_delta: DeltaCallback | None = None,
        grammar: str | None = None,
    ) -> Completion:
        if grammar is not None and not self.accepts_grammar:
            raise LLMError("this scripted LLM takes no grammar (accepts_grammar=False)")
        self.calls.append((list(messages), json_schema))
        self.grammars.append(grammar)
        if self._replies:
            reply = self._replies.pop(0)
        elif self._fallback is not None:
            reply = self._fallback
        else:
            raise LLMError(f"scripted LLM has no reply left for call {len(self.calls)}")
        if self._delay:
            await asyncio.sleep(self._delay)
        if self._read_rate is not None:
            await self._read_prompt(messages)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, str):
            text = reply
        elif "grammar" in inspect.signature(reply).parameters:
            text = reply(messages, json_schema, grammar=grammar)
        else:
            text = reply(messages, json_schema)
        if self._rate is not None:
            await self._generate(text, on_delta)
        elif on_delta is not None:
            for start in range(0, len(text), self._chunk):
                on_delta(text[start : start + self._chunk])
                await asyncio.sleep(0)
        prompt = sum(_count_tokens(m.content) for m in messages)
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=prompt, completion_tokens=_count_tokens(text)),
            finish_reason="stop",
        )

    async def _read_prompt(self, messages: Sequence[Message]) -> None:
        """Wait as long as reading the part of the prompt no earlier prompt started with takes."""
        assert self._read_rate is not None
        text = _flatten(messages)
        cached = max((_shared_start(text, seen) for seen in self._read), default=0)
        self._read.append(text)
        seconds = _count_tokens(text[cached:]) / self._read_rate
        self.prompt_seconds += seconds
        await asyncio.sleep(seconds)

    async def _generate(self, text: str, on_delta: DeltaCallback | None) -> None:
        """Emit `text` token by token at the set rate; each token is due at start + n / rate (no drift)."""
        assert self._rate is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        pieces = _TOKEN_PIECES.findall(text)
        for n, piece in enumerate(pieces, 1):
            wait = start + n / self._rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if on_delta is not None:
                on_delta(piece)
