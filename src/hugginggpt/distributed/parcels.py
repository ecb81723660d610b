"""Files through the Ray object store, so a task on one node can use a file made on another.

The controller sends each media argument of a job as a `Parcel`: a reference into the object store where the
file's bytes are, put there once per content (`Shelf`, by sha256). An actor writes the parcels it gets into its own
folder, runs its expert there and returns its output files' bytes as a second return value of the call, an object
the controller owns (it outlives the actor); the controller writes them into the request's store, as the local
executor does, and shelves them, so the next task that needs one gets the same object, not a new upload.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import ray

from ..artifacts import ArtifactStore, LocalArtifacts, slug
from ..types import Artifact

SHELF_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Parcel:
    """One file in the object store: `ref` holds its bytes, or (with `key`) a dict of files' bytes by key."""

    ref: ray.ObjectRef
    artifact: Artifact
    key: str | None = None


class Shelf:
    """The object-store references of files by content (sha256), held by the controller so their objects live;
    the least recently used are let go beyond `max_bytes` (a later job puts such a file again)."""

    def __init__(self, max_bytes: int = SHELF_BYTES) -> None:
        self.max_bytes = max_bytes
        self._held: OrderedDict[str, tuple[ray.ObjectRef, str | None, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def parcel(self, artifact: Artifact, store: ArtifactStore) -> Parcel:
        """The parcel of `artifact`: the shelved object of its content, or its bytes (from `store`) put now."""
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
    """In an actor: the parcel's file written into `store`'s folder, under its own name."""
    data = await parcel.ref
    if parcel.key is not None:
        data = data[parcel.key]
    source = Path(parcel.artifact.path)
    path = store.root / f"{slug(source.stem)}-{parcel.artifact.sha256[:8]}{source.suffix}"
    store.root.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
