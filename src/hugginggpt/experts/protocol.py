"""The Expert protocol: a model that runs one task type on resolved arguments and returns typed outputs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..artifacts import ArtifactStore
from ..errors import ExpertError
from ..types import Artifact, Modality, ModelCard, OutputValue

Outputs = dict[str, OutputValue]


@dataclass
class ExpertContext:
    """What an expert may use besides its arguments: where to write its files (the request's artifact store, a
    `Workspace` here), and which task it serves."""

    workspace: ArtifactStore
    task_id: int
    task: str

    def output_path(self, suffix: str) -> Path:
        return self.workspace.new_path(self.task_id, self.task, suffix)

    def artifact(self, path: Path, modality: Modality, media_type: str | None = None) -> Artifact:
        return self.workspace.put(Path(path), modality, media_type)


@runtime_checkable
class Expert(Protocol):
    """One model serving one task type. `args` are resolved: media arguments are local file paths, text is text.

    `run` returns outputs keyed by modality (`text`, `image`, `audio`, `video`) or `json`; files are Artifacts.
    """

    card: ModelCard

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs: ...


class LocalExpert:
    """Base for experts whose model code blocks: loads lazily on first use, runs in a worker thread, one call at a
    time per model (experts that share a model share its lock)."""

    card: ModelCard

    def __init__(self, card: ModelCard, lock: threading.Lock | None = None) -> None:
        self.card = card
        # a thread lock, taken in the worker thread: an asyncio.Lock would be bound to the first event loop that
        # waits on it and fail in the next one (`hugginggpt chat` runs each turn in a new loop)
        self._lock = lock or threading.Lock()
        self._loaded = False

    def load(self) -> None:
        """Load the model. Called once, in a worker thread, before the first `predict`."""

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        raise NotImplementedError

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def lock(self) -> threading.Lock:
        """The lock of this expert's model; experts sharing a model share it."""
        return self._lock

    def prepare(self) -> None:
        """Load the model now, in the calling thread, unless it is loaded already (to warm up or time it)."""
        with self._lock:
            self._ensure_loaded()

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()
            self._loaded = True

    def _call(self, args: dict[str, str], ctx: ExpertContext, abandoned: threading.Event) -> Outputs:
        with held(self._lock, abandoned):
            self._ensure_loaded()
            return self.predict(args, ctx)

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        abandoned = threading.Event()
        try:
            return await asyncio.to_thread(self._call, args, ctx, abandoned)
        finally:
            abandoned.set()  # the caller stopped waiting (a timeout, a cancelled run): a call still queued leaves


_WAKE_S = 0.1


@contextmanager
def held(lock: threading.Lock, abandoned: threading.Event) -> Iterator[None]:
    """Hold a model's lock for one call, unless its caller gives up first. A running thread cannot be stopped, so a
    model that hangs past its timeout keeps its lock; the calls queued behind it leave once their callers stop
    waiting (freeing their worker threads) and never run later for a request that is gone."""
    while not abandoned.is_set():
        if lock.acquire(timeout=_WAKE_S):
            if not abandoned.is_set():
                break
            lock.release()
    else:
        raise ExpertError("the call was given up while it waited for its model")
    try:
        yield
    finally:
        lock.release()
