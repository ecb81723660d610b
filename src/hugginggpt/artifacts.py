"""Artifact stores: where a request's files are kept, and the references (Artifacts) that name them.

A reference is an `Artifact`, plain data (JSON or pickle) that travels with a job to another process or machine
and back with its result. `sha256` addresses the content, which is what a store that is not a folder (an object
store) keys it by; `path` is where the file lies on the machine that put it, which is the local store's key.
An expert writes an output to `new_path(...)` and `put`s it; whoever runs a job `open`s each reference it is given
for a local file. The local store is the request's folder: `Workspace` is one, with the request's input folders.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import WorkspaceError
from .types import Artifact, Modality

_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/mpeg": ".mp3",
}


def media_type_of(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(Path(path).name)
    return guessed or "application/octet-stream"


def suffix_for(media_type: str) -> str:
    """The usual file suffix of a media type (`image/png` -> `.png`), or "" when there is none."""
    return _EXTENSIONS.get(media_type) or mimetypes.guess_extension(media_type) or ""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "file"


@runtime_checkable
class ArtifactStore(Protocol):
    """Keeps one request's artifacts and hands out references to them."""

    def new_path(self, task_id: int, task: str, suffix: str) -> Path:
        """A fresh local path for an output of task `task_id` to be written to, then `put`."""
        ...

    def put(self, source: bytes | Path, modality: Modality, media_type: str | None = None) -> Artifact:
        """Keep bytes or a local file (media type guessed from the file name when not given); its reference."""
        ...

    def open(self, ref: Artifact) -> Path:
        """A local file with the content of `ref`, fetched first when it is kept elsewhere. WorkspaceError when
        this store cannot give it."""
        ...


class LocalArtifacts:
    """A request's artifacts in one local folder, `root`. A file already inside `root` or one of `readable` (the
    request's input folders) is referenced where it lies, others are copied in; only files there can be opened."""

    def __init__(self, root: Path, readable: Sequence[Path] = ()) -> None:
        self.root = Path(root)
        self.readable = [Path(r) for r in readable]
        self._known: dict[tuple[str, int, int, str, str], Artifact] = {}  # files referenced in place, by stat

    def new_path(self, task_id: int, task: str, suffix: str) -> Path:
        """E.g. outputs/<request>/0-object-detection-1a2b3c.png."""
        return self._fresh(f"{task_id}-{task}", suffix if suffix.startswith(".") else f".{suffix}")

    def put(self, source: bytes | Path, modality: Modality, media_type: str | None = None) -> Artifact:
        if isinstance(source, bytes):
            path = self._fresh("artifact", suffix_for(media_type or ""))
            path.write_bytes(source)
        else:
            path = Path(source)
            if not self._holds(path):
                copy = self._fresh(path.stem, path.suffix)
                shutil.copyfile(path, copy)
                path = copy
        media_type = media_type or media_type_of(path)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, modality, media_type)
        if key not in self._known:  # an input that several tasks read is hashed once
            self._known[key] = Artifact(
                path=str(path), media_type=media_type, sha256=sha256_of(path), modality=modality, size=stat.st_size
            )
        return self._known[key]

    def open(self, ref: Artifact) -> Path:
        path = Path(ref.path)
        if not self._holds(path):
            raise WorkspaceError(f"{path.name} is not a file of this request")
        if not path.is_file():
            raise WorkspaceError(f"{path.name} is no longer there")
        return path

    def _holds(self, path: Path) -> bool:
        resolved = path.resolve()
        return any(resolved.is_relative_to(folder.resolve()) for folder in (self.root, *self.readable))

    def _fresh(self, stem: str, suffix: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f"{slug(stem)}-{uuid.uuid4().hex[:6]}{suffix}"
