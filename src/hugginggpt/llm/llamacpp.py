"""The loaded llama.cpp model behind the embedded LLM: its slots, its worker threads, the gate a warm-up takes alone,
and getting a fixed prompt prefix's KV state into the slots from the prompt cache."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from ..errors import LLMError, ModelFileError
from .model_file import BUNDLED_SHA256, bundled_model_path, check_gguf, model_sha256
from .prompt_cache import PromptCache, prefix_key
from .protocol import Usage
from .slot_routing import SavedPrefix, SlotTable
from .slot_states import (
    SlotError,
    error_message,
    prefix_prompt,
    process_prefix,
    restore_slot,
    restore_slots,
    save_slot,
)

PROMPT_CACHE_MIB = 512  # host memory for saved prompt prefixes (llama.cpp keeps the KV state of earlier prompts)
_SLOT_TIMEOUT = 120.0  # seconds for one slot save or restore on the loopback listener

log = logging.getLogger("hugginggpt.llm")


class Timings(BaseModel):
    """llama.cpp's own measurements of one call."""

    cached_tokens: int = 0
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    generated_tokens: int = 0
    generation_seconds: float = 0.0

    @property
    def prompt_per_second(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else 0.0

    @property
    def generation_per_second(self) -> float:
        return self.generated_tokens / self.generation_seconds if self.generation_seconds else 0.0


class Warmup(BaseModel):
    """What `EmbeddedLLM.warm` did with a fixed prompt prefix.

    restored: its saved KV state was loaded from the prompt cache; saved: it was processed and its state saved;
    processed: it was processed but not saved (prompt cache off, or saving failed: see `detail`); ready: already
    done in this process; failed: it could not be processed (`detail`), the next call processes it as usual.
    """

    status: Literal["restored", "saved", "processed", "ready", "failed"]
    tokens: int = 0
    seconds: float = 0.0
    path: str | None = None
    detail: str = ""


class _Gate:
    """Calls share the model, up to the slot count at once; a warm-up has it alone: it waits for the calls in flight,
    and calls that come after it wait for it (it restores KV states into every slot)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls = 0
        self._alone = False
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._alone or self._waiting:
                self._cond.wait()
            self._calls += 1
        try:
            yield
        finally:
            with self._cond:
                self._calls -= 1
                self._cond.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._alone or self._calls:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()


class Runtime:
    """One loaded model with `slots` slots and as many worker threads. Up to `slots` calls run at once, and llama.cpp
    decodes them in the same batch (continuous batching); later calls wait in order for a worker. Each slot has its
    own KV cache of `context` tokens (llama.cpp's n_ctx is their total). The model loads on the first call.

    With `prompt_cache_dir` set, `warm` restores a fixed prompt prefix's KV state saved there by an earlier process
    into every slot, or processes the prefix and saves its state for the next one.
    """

    def __init__(
        self,
        model_path: Path | None,
        context: int,
        threads: int,
        models_dir: Path | None,
        prompt_cache_dir: Path | None = None,
        slots: int = 1,
    ) -> None:
        if slots < 1:
            raise ValueError(f"the embedded LLM needs at least one slot, not {slots}")
        self.model_path = model_path
        self.context = context
        self.threads = threads
        self.models_dir = models_dir
        self.slots = slots
        self.executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="hugginggpt-llm")
        self.gate = _Gate()
        self._load_lock = threading.Lock()
        self.load_seconds: float | None = None
        self.api_key = secrets.token_urlsafe(32)
        self.prompt_cache = PromptCache(prompt_cache_dir) if prompt_cache_dir is not None else None
        self.warmed: set[str] = set()  # digests of the prefixes warmed in this process
        self.slot_table = SlotTable(slots)  # which slot each call runs in, so saved prefixes stay in slots
        self._server: Any = None
        self._model_id: str | None = None
        self._runtime_id = ""

    def server(self) -> Any:
        if self._server is None:
            with self._load_lock:  # the first calls of several workers: one loads, the others wait for it
                if self._server is None:
                    start = time.perf_counter()
                    path = self.model_path or bundled_model_path(self.models_dir)
                    slot_dir = self._slot_dir()
                    server, self._runtime_id = _load_server(
                        check_gguf(path),
                        self.context,
                        self.threads,
                        api_key=self.api_key,
                        slot_dir=slot_dir,
                        slots=self.slots,
                    )
                    self.load_seconds = time.perf_counter() - start
                    self._server = server
        return self._server

    def _slot_dir(self) -> Path | None:
        if self.prompt_cache is None:
            return None
        try:
            self.prompt_cache.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("prompt cache off: cannot create %s (%s)", self.prompt_cache.folder, exc)
            self.prompt_cache = None
            return None
        return self.prompt_cache.folder

    def model_id(self) -> str:
        """The model file's sha256: checked at assembly for the bundled model, else recorded per (path, size, mtime)."""
        if self._model_id is None:
            if self.model_path is None:
                self._model_id = BUNDLED_SHA256  # bundled_model_path() only returns a verified file
            else:
                folder = self.prompt_cache.folder if self.prompt_cache is not None else None
                self._model_id = model_sha256(self.model_path, folder)
        return self._model_id

    def warm(self, messages: list[dict[str, str]], digest: str, rebuild: bool = False) -> Warmup:
        """Get the KV state of the prefix `messages` into the model's slots: restored from the prompt cache, or
        processed (and saved there). Problems with the cache are warnings: the prefix is then processed as usual."""
        start = time.perf_counter()
        server = self.server()
        with self.gate.alone():
            if digest in self.warmed and not rebuild:
                return Warmup(status="ready")
            address = server.listening_address
            if not address:
                return Warmup(status="failed", detail="llama.cpp has no loopback listener")
            headers = {"Authorization": f"Bearer {self.api_key}"}
            with httpx.Client(base_url=address, headers=headers, timeout=_SLOT_TIMEOUT) as client:
                try:
                    prompt = prefix_prompt(client, messages)
                except SlotError as exc:
                    return Warmup(status="failed", detail=str(exc))
                warmup = self._warm(server, client, prompt, rebuild, messages, digest)
        if warmup.status != "failed":
            self.warmed.add(digest)
        warmup.seconds = round(time.perf_counter() - start, 3)
        return warmup

    def _warm(
        self, server: Any, client: httpx.Client, prompt: str, rebuild: bool, messages: list[dict[str, str]], digest: str
    ) -> Warmup:
        cache = self.prompt_cache
        place = self.slot_table.place(digest)  # None: every slot; else that slot only
        first = place or 0
        if cache is None:
            try:
                return Warmup(status="processed", tokens=process_prefix(server, prompt, first))
            except SlotError as exc:
                return Warmup(status="failed", detail=str(exc))
        model, runtime = self.model_id(), self._runtime_id
        key = prefix_key(model=model, runtime=runtime, prompt=prompt)
        path = str(cache.folder / cache.state_name(key))
        slots = None if place is None else [place]
        if rebuild:
            cache.remove(key)
        record = cache.lookup(key, model=model, runtime=runtime)
        if record is not None:
            try:
                if place is None:
                    restore_slots(client, cache.state_name(key), record)
                else:
                    restore_slot(client, cache.state_name(key), record, place)
                self.slot_table.remember(digest, SavedPrefix(messages, cache.state_name(key), record), slots)
                return Warmup(status="restored", tokens=record.tokens, path=path)
            except SlotError as exc:
                log.warning("prompt cache: llama.cpp could not restore %s (%s); it will be rebuilt", path, exc)
                cache.remove(key)
        try:
            processed = process_prefix(server, prompt, first)
        except SlotError as exc:
            return Warmup(status="failed", detail=str(exc))
        temp = cache.temp_name(key)
        try:
            tokens = save_slot(client, temp, first)
            saved = cache.commit(key, temp, model=model, runtime=runtime, tokens=tokens)
        except (OSError, SlotError) as exc:
            cache.discard(temp)
            detail = f"the prompt prefix state was not saved to {cache.folder}: {exc}"
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                detail += " (the disk is full)"
            log.warning("prompt cache: %s; later processes will process the prefix again", detail)
            return Warmup(status="processed", tokens=processed, detail=detail)
        prefix = SavedPrefix(messages, cache.state_name(key), saved)
        if place is not None:
            self.slot_table.remember(digest, prefix, slots)
            return Warmup(status="saved", tokens=tokens, path=path)
        try:  # slot 0 processed it; the other slots get it from the file just saved
            restore_slots(client, cache.state_name(key), saved, skip=(0,))
            self.slot_table.remember(digest, prefix)
        except SlotError as exc:
            detail = f"only slot 0 has the prefix, the others process it on first use: {exc}"
            log.warning("prompt cache: %s", detail)
            return Warmup(status="saved", tokens=tokens, path=path, detail=detail)
        return Warmup(status="saved", tokens=tokens, path=path)

    def load(self) -> None:
        self.server()

    def _restore(self, server: Any, slot: int, digest: str) -> None:
        """Put a saved prefix's state back into `slot`; on failure llama.cpp processes the prefix as usual."""
        saved = self.slot_table.saved(digest)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        try:
            with httpx.Client(base_url=server.listening_address, headers=headers, timeout=_SLOT_TIMEOUT) as client:
                restore_slot(client, saved.state, saved.record, slot)
        except (SlotError, httpx.HTTPError) as exc:
            log.warning("prompt cache: slot %d did not get the prefix back (%s); it is processed again", slot, exc)

    def generate(
        self, request: dict[str, Any], on_text: Callable[[str], None], stop: threading.Event
    ) -> tuple[str, Usage, str | None, Timings]:
        """Run one streamed chat completion; `stop` ends it at the next token."""
        parts: list[str] = []
        finish: list[str | None] = [None]
        usage = [Usage()]
        timings = [Timings()]
        errors: list[str] = []

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if "error" in chunk:
                errors.append(error_message(chunk["error"]))
                return True
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    parts.append(text)
                    on_text(text)
                if choice.get("finish_reason"):
                    finish[0] = choice["finish_reason"]
            if chunk.get("usage"):
                usage[0] = Usage(
                    prompt_tokens=chunk["usage"].get("prompt_tokens") or 0,
                    completion_tokens=chunk["usage"].get("completion_tokens") or 0,
                )
            if chunk.get("timings"):
                timings[0] = _timings(chunk["timings"])
            return stop.is_set()

        server = self.server()
        with self.gate.shared():
            if stop.is_set():  # cancelled while it waited: it never takes a slot
                return "", Usage(), "cancelled", Timings()
            digest = self.slot_table.prefix_of(request["messages"])
            slot, restore = self.slot_table.acquire(digest)
            holds = None
            try:
                if restore and digest is not None:
                    self._restore(server, slot, digest)
                server.handle_chat_completions({**request, "id_slot": slot}, on_chunk)
                holds = digest
            except (ValueError, RuntimeError) as exc:
                raise LLMError(f"the embedded LLM rejected the request: {exc}") from None
            finally:
                self.slot_table.release(slot, holds)
        if errors:
            raise LLMError(f"the embedded LLM failed: {errors[0]}")
        if stop.is_set() and finish[0] is None:
            finish[0] = "cancelled"
        return "".join(parts), usage[0], finish[0], timings[0]


def _timings(data: dict[str, Any]) -> Timings:
    return Timings(
        cached_tokens=int(data.get("cache_n") or 0),
        prompt_tokens=int(data.get("prompt_n") or 0),
        prompt_seconds=float(data.get("prompt_ms") or 0.0) / 1000,
        generated_tokens=int(data.get("predicted_n") or 0),
        generation_seconds=float(data.get("predicted_ms") or 0.0) / 1000,
    )


def _load_server(
    path: Path, context: int, threads: int, *, api_key: str, slot_dir: Path | None = None, slots: int = 1
) -> tuple[Any, str]:
    """The loaded llama.cpp server with `slots` slots of `context` tokens each, and what its saved KV states depend
    on besides the model and prompt."""
    # llama.cpp's OpenMP threads spin while they wait; with experts or other work on the same few cores that made
    # generation 10-40 times slower here. Read when the OpenMP runtime loads; the user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        import xllamacpp
    except ImportError:
        raise LLMError(
            "the embedded LLM needs the xllamacpp package: pip install xllamacpp "
            "(or set HUGGINGGPT_LLM_BASE_URL to an OpenAI-compatible server)"
        ) from None
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    # n_ctx is the total of all slots. Not unified: each slot has its own KV cache of `context` tokens, attends only
    # to its own cells, and keeps its own copy of the fixed prompt prefix between calls; memory is slots x context.
    params.n_ctx = context * slots
    params.n_parallel = slots
    params.kv_unified = False
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.cache_ram_mib = PROMPT_CACHE_MIB
    params.warmup = False
    params.verbosity = 0
    if slot_dir is not None:
        params.slot_save_path = f"{slot_dir}{os.sep}"  # llama.cpp appends file names to it as they are
    # The in-process server also listens on a loopback port; only holders of this random key may use it.
    params.api_keys = [api_key]
    runtime = json.dumps(
        {
            "xllamacpp": getattr(xllamacpp, "__version__", "?"),
            "cache_type": [int(params.cache_type_k), int(params.cache_type_v)],
            "flash_attn": int(params.flash_attn_type),
            "swa_full": bool(params.swa_full),
            "kv_unified": bool(params.kv_unified),
            # llama.cpp refuses a state saved with another number of KV streams (one per slot when not unified)
            "kv_streams": 1 if params.kv_unified else slots,
        },
        sort_keys=True,
    )
    try:
        return xllamacpp.Server(params), runtime
    except (RuntimeError, ValueError) as exc:
        raise ModelFileError(
            f"llama.cpp could not load {path} ({exc}); the file may be truncated, or a model type this llama.cpp "
            f"does not know, or need more than the available memory with {slots} slot(s) of {context} tokens "
            "(HUGGINGGPT_LLM_SLOTS, HUGGINGGPT_LLM_CONTEXT)"
        ) from None


@functools.cache
def shared_runtime(
    model_path: Path | None,
    context: int,
    threads: int,
    models_dir: Path | None,
    prompt_cache_dir: Path | None = None,
    slots: int = 1,
) -> Runtime:
    """The process's one runtime per (model, settings): every pipeline built in a process shares the loaded model."""
    return Runtime(model_path, context, threads, models_dir, prompt_cache_dir, slots)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
