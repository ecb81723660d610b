"""Files through the Ray object store (or a shared folder), so a task on one node can use a file made on another.

The controller sends each media argument of a job as a `Parcel`: a reference into the object store where the
file's bytes are, put there once per content (`Shelf`, by sha256). An actor writes the parcels it gets into its own
folder, runs its expert there and returns its output files' bytes as a second return value of the call, an object
the controller owns (it outlives the actor); the controller writes them into the request's store, as the local
executor does, and shelves them, so the next task that needs one gets the same object, not a new upload.

With a shared folder (one every node sees at the same path), files go through it instead, named by content: the
controller copies an input there once, an actor reads it in place and copies its outputs there, the controller
copies them into the request's store.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import ray

from ..artifacts import ArtifactStore, LocalArtifacts, slug
from ..types import Artifact

SHELF_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Parcel:
    """One file for an actor: in the object store (`ref` holds its bytes, or with `key` a dict of files' bytes by
    key), or in the shared folder at `path`."""

    artifact: Artifact
    ref: ray.ObjectRef | None = None
    key: str | None = None
    path: str | None = None


def shared_path(folder: Path, artifact: Artifact) -> Path:
    """Where a file lies in the shared folder: named by its content, so it is copied there once."""
    return Path(folder) / f"{artifact.sha256}{Path(artifact.path).suffix}"


def share(source: Path, target: Path) -> None:
    """Copy a file to `target` in the shared folder, unless it is there: written aside, then renamed, so a reader on
    another node never sees half of it."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    shutil.copyfile(source, aside)
    os.replace(aside, target)


class Shelf:
    """The object-store references of files by content (sha256), held by the controller so their objects live;
    the least recently used are let go beyond `max_bytes` (a later job puts such a file again)."""

    def __init__(self, max_bytes: int = SHELF_BYTES, shared: Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.shared = Path(shared) if shared is not None else None
        self._held: OrderedDict[str, tuple[ray.ObjectRef, str | None, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def parcel(self, artifact: Artifact, store: ArtifactStore) -> Parcel:
        """The parcel of `artifact`: the shelved object of its content, or its bytes (from `store`) put now; with a
        shared folder, its copy there."""
        if self.shared is not None:
            target = shared_path(self.shared, artifact)
            share(store.open(artifact), target)
            return Parcel(artifact=artifact, path=str(target))
        with self._lock:
            held = self._held.get(artifact.sha256)
            if held is not None:
                self._held.move_to_end(artifact.sha256)
                return Parcel(ref=held[0], artifact=artifact, key=held[1])
        data = store.open(artifact).read_bytes()
        ref = ray.put(data)
        self.keep(artifact.sha256, ref, None, len(data))
        return Parcel(ref=ref, artifact=artifact)

    def keep(self, sha256: str, ref: ray.ObjectRef, key: str | None, size: int) -> None:
        with self._lock:
            if sha256 in self._held:
                self._bytes -= self._held.pop(sha256)[2]
            self._held[sha256] = (ref, key, size)
            self._bytes += size
            while len(self._held) > 1 and self._bytes > self.max_bytes:
                self._bytes -= self._held.popitem(last=False)[1][2]

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._held

    def __len__(self) -> int:
        return len(self._held)


async def unpack(parcel: Parcel, store: LocalArtifacts) -> Path:
    """In an actor: the parcel's file written into `store`'s folder, under its own name (in the shared folder, the
    file there)."""
    if parcel.path is not None:
        return Path(parcel.path)
    assert parcel.ref is not None
    data = await parcel.ref
    if parcel.key is not None:
        data = data[parcel.key]
    source = Path(parcel.artifact.path)
    path = store.root / f"{slug(source.stem)}-{parcel.artifact.sha256[:8]}{source.suffix}"
    store.root.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
