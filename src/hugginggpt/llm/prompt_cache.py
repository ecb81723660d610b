"""Saved KV states of fixed prompt prefixes: one file per (model, runtime, prefix), kept in the user cache.

The embedded backend processes a fixed prefix (the planner's system prompt and demos) once, has llama.cpp save the
slot's KV state into this folder, and later processes restore it instead of processing the prefix again. The key
covers everything the state depends on: the model file's sha256, the llama.cpp build and KV settings, and the exact
rendered prefix text, so a changed prompt or model never restores a stale state.

llama.cpp aborts the whole process on a truncated state file and silently restores garbage from a corrupted one, so
every state file has a JSON record beside it with its size and sha256, written last; a state is only restored after
it matches its record. Files are written under temporary names and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
from pathlib import Path

from pydantic import BaseModel, ValidationError

FORMAT = 1
KEEP = 4  # states kept per folder, most recently used first: a few prompts (task tables) at ~30-60 MB each
_STALE_TEMP_SECONDS = 3600
_HASH_CHUNK = 8 << 20

log = logging.getLogger("hugginggpt.llm")


class StateRecord(BaseModel):
    """What the JSON file beside a saved state says about it."""

    format: int
    key: str
    model: str
    runtime: str
    tokens: int
    size: int
    sha256: str


def prefix_key(*, model: str, runtime: str, prompt: str) -> str:
    """The name of the state of `prompt` (the rendered prefix text) processed by `model` on `runtime`."""
    data = json.dumps({"format": FORMAT, "model": model, "runtime": runtime, "prompt": prompt}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class PromptCache:
    """The folder of saved prefix states (llama.cpp's `slot_save_path`); names inside it are what llama.cpp gets."""

    def __init__(self, folder: Path, keep: int = KEEP) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def state_name(self, key: str) -> str:
        return f"{key}.bin"

    def _record_path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def temp_name(self, key: str) -> str:
        """A fresh temporary file name for llama.cpp to save a state of `key` into (unique per writer)."""
        return f".{key}.{os.getpid()}.{secrets.token_hex(4)}.tmp"

    def lookup(self, key: str, *, model: str, runtime: str) -> StateRecord | None:
        """The record of the intact saved state of `key`, or None. A state that does not match its record (truncated,
        corrupted, from another model or runtime) is deleted, so it is rebuilt."""
        state = self.folder / self.state_name(key)
        record_path = self._record_path(key)
        if not state.exists() and not record_path.exists():
            return None
        problem = None
        try:
            record = StateRecord.model_validate_json(record_path.read_bytes())
        except (OSError, ValueError, ValidationError) as exc:
            record, problem = None, f"its record is unreadable ({type(exc).__name__})"
        if record is not None:
            expected = (FORMAT, key, model, runtime)
            try:
                size = state.stat().st_size
            except OSError:
                size = -1
            if (record.format, record.key, record.model, record.runtime) != expected:
                problem = "it was made by another model, runtime or prompt"
            elif size != record.size:
                problem = f"it has {size} bytes, not the {record.size} recorded (truncated?)"
            elif file_sha256(state) != record.sha256:
                problem = "its checksum does not match (corrupted?)"
        if problem is not None:
            log.warning("prompt cache: ignoring the saved prefix state %s: %s; it will be rebuilt", state, problem)
            self.remove(key)
            return None
        assert record is not None
        with contextlib.suppress(OSError):
            os.utime(state)  # most recently used: kept longest
        return record

    def commit(self, key: str, temp_name: str, *, model: str, runtime: str, tokens: int) -> StateRecord:
        """Move the state llama.cpp saved as `temp_name` into place and write its record (both atomically).
        Raises OSError (e.g. a full disk) after removing what it wrote."""
        temp = self.folder / temp_name
        record_temp = self.folder / f".{key}.{os.getpid()}.{secrets.token_hex(4)}.json.tmp"
        try:
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            record = StateRecord(
                format=FORMAT,
                key=key,
                model=model,
                runtime=runtime,
                tokens=tokens,
                size=temp.stat().st_size,
                sha256=file_sha256(temp),
            )
            with open(record_temp, "w", encoding="utf-8") as handle:
                handle.write(record.model_dump_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.folder / self.state_name(key))
            os.replace(record_temp, self._record_path(key))
        except OSError:
            self.discard(temp_name)
            record_temp.unlink(missing_ok=True)
            raise
        self.prune(current=key)
        return record

    def discard(self, temp_name: str) -> None:
        with contextlib.suppress(OSError):
            (self.folder / temp_name).unlink(missing_ok=True)

    def remove(self, key: str) -> None:
        for path in (self.folder / self.state_name(key), self._record_path(key)):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def prune(self, current: str | None = None) -> None:
        """Keep the `keep` most recently used states (and `current`); remove temporary files left by dead writers."""
        now = time.time()
        try:
            entries = list(self.folder.iterdir())
        except OSError:
            return
        states = []
        for path in entries:
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if path.name.endswith(".tmp"):
                if now - mtime > _STALE_TEMP_SECONDS:
                    path.unlink(missing_ok=True)
            elif path.suffix == ".bin" and path.stem != current:
                states.append((mtime, path.stem))
        states.sort(reverse=True)
        for _, key in states[max(self.keep - (current is not None), 0) :]:
            self.remove(key)
