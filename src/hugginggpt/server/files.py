"""Each conversation's own folder (uploads and outputs), safe upload names, and the public view of server paths.

Clients never name file-system paths: they get file ids and URLs. A conversation's runs read inputs only from its
own folder and write outputs only there, so isolation between conversations (and keys) holds by construction.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO

from ..types import Artifact
from ..workspace import media_type_of, sha256_of
from .store import FileKind, FileRow

_CONVERSATION_ID = re.compile(r"^conv-[0-9a-f]{24}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_ARTIFACT_KEYS = {"path", "media_type", "sha256", "modality"}
# Served inline; anything else is sent as a download with a generic type, so an uploaded page cannot run here.
INLINE_TYPES = re.compile(
    r"^(image/(png|jpeg|gif|webp|bmp)|audio/[\w.+-]+|video/[\w.+-]+|text/plain|application/json)$"
)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def file_url(file_id: str) -> str:
    return f"/v1/files/{file_id}/content"


def safe_filename(name: str) -> str:
    """The last component of a client's file name, reduced to letters, digits, `_`, `-` and `.`."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = _UNSAFE.sub("-", base).strip(".-")
    if len(base) > 80:
        stem, dot, suffix = base.rpartition(".")
        base = (stem[: 79 - len(suffix)] + dot + suffix) if dot and len(suffix) <= 10 else base[:80]
    return base or "upload"


class Spaces:
    """Conversation folders under one root: `<root>/<conversation id>/uploads` and `.../outputs`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def folder(self, conversation_id: str) -> Path:
        if not _CONVERSATION_ID.match(conversation_id):
            raise ValueError(f"not a conversation id: {conversation_id!r}")
        return self.root / conversation_id

    def uploads(self, conversation_id: str) -> Path:
        return self.folder(conversation_id) / "uploads"

    def outputs(self, conversation_id: str) -> Path:
        return self.folder(conversation_id) / "outputs"

    def inputs(self, conversation_id: str) -> list[Path]:
        """Where a run of this conversation may read files: `cat.png` finds an upload, `outputs/...` an earlier
        artifact, `uploads/cat.png` the upload again."""
        for path in (self.uploads(conversation_id), self.outputs(conversation_id)):
            path.mkdir(parents=True, exist_ok=True)
        return [self.uploads(conversation_id), self.folder(conversation_id)]

    def save_upload(self, conversation_id: str, filename: str, source: BinaryIO) -> Path:
        """Copy an upload into the conversation's uploads under a safe, unused name. A copy that fails (a full
        disk) leaves no part behind."""
        folder = self.uploads(conversation_id)
        folder.mkdir(parents=True, exist_ok=True)
        name = safe_filename(filename)
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            stem, suffix = name, ""
        for attempt in range(1, 1000):
            candidate = name if attempt == 1 else f"{stem}-{attempt}{dot}{suffix}"
            try:
                target = (folder / candidate).open("xb")
            except FileExistsError:
                continue
            try:
                with target:
                    shutil.copyfileobj(source, target)
            except BaseException:
                (folder / candidate).unlink(missing_ok=True)
                raise
            return folder / candidate
        raise FileExistsError(f"too many uploads named {name}")

    def locate(self, conversation_id: str, name: str) -> Path | None:
        """The file a stored name points to, only if it is (after resolving links) inside the conversation."""
        folder = self.folder(conversation_id).resolve()
        path = (folder / name).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            return None
        return path

    def relative_name(self, conversation_id: str, path: Path) -> str | None:
        folder = self.folder(conversation_id).resolve()
        resolved = Path(path).resolve()
        return resolved.relative_to(folder).as_posix() if resolved.is_relative_to(folder) else None

    def delete(self, conversation_id: str) -> None:
        shutil.rmtree(self.folder(conversation_id), ignore_errors=True)

    def file_row(
        self,
        conversation_id: str,
        key_id: str,
        kind: FileKind,
        path: Path,
        *,
        run_id: str | None = None,
        artifact: Artifact | None = None,
    ) -> FileRow:
        name = self.relative_name(conversation_id, path)
        if name is None:
            raise ValueError(f"{path} is outside conversation {conversation_id}")
        return FileRow(
            id=new_id("file"),
            conversation_id=conversation_id,
            key_id=key_id,
            kind=kind,
            name=name,
            filename=Path(name).name,
            media_type=artifact.media_type if artifact else media_type_of(path),
            size=artifact.size if artifact else path.stat().st_size,
            sha256=artifact.sha256 if artifact else sha256_of(path),
            run_id=run_id,
            created_at=time.time(),
        )


def public_file(row: FileRow, modality: str | None = None) -> dict[str, Any]:
    """How a client sees a file: an id, its name inside the conversation, and a URL; never a server path."""
    view: dict[str, Any] = {
        "file_id": row.id,
        "name": row.name,
        "filename": row.filename,
        "url": file_url(row.id),
        "media_type": row.media_type,
        "size": row.size,
        "sha256": row.sha256,
    }
    if modality is not None:
        view["modality"] = modality
    return view


def is_artifact(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() >= _ARTIFACT_KEYS


class PublicView:
    """Rewrites a run's events and answer for clients: artifacts become file ids and URLs, and the conversation
    folder is cut from every path (`/srv/.../conv-1/outputs/r/0.png` -> `outputs/r/0.png`)."""

    def __init__(self, folder: Path, artifacts: dict[str, FileRow]) -> None:
        forms = {str(folder), str(folder.resolve())}
        # Longest first, and `<folder>/` before `<folder>` itself.
        self._patterns = sorted([(f"{f}/", "") for f in forms] + [(f, ".") for f in forms], key=lambda p: -len(p[0]))
        self.artifacts = artifacts  # server path -> registered file
        self._pending = ""

    def text(self, value: str) -> str:
        for pattern, replacement in self._patterns:
            value = value.replace(pattern, replacement)
        return value

    def feed(self, delta: str) -> str:
        """Rewrite streamed text: returns what is safe to send now, holding back a tail that may be the start of
        a server path split across deltas. Call `flush()` at the end."""
        raw, self._pending = self._pending + delta, ""
        starts = {pattern[0] for pattern, _ in self._patterns}
        out: list[str] = []
        done = 0
        at = 0
        while at < len(raw):
            if raw[at] not in starts:
                at += 1
                continue
            rest = raw[at:]
            full = next(((p, r) for p, r in self._patterns if rest.startswith(p)), None)
            if any(len(rest) < len(p) and p.startswith(rest) for p, _ in self._patterns):
                # Only the start of a path so far (or a match a longer path may extend): wait for more text.
                self._pending = rest
                break
            if full is None:
                at += 1
                continue
            out.append(raw[done:at] + full[1])
            at += len(full[0])
            done = at
        end = len(raw) - len(self._pending)
        out.append(raw[done:end])
        return "".join(out)

    def flush(self) -> str:
        rest, self._pending = self.text(self._pending), ""
        return rest

    def __call__(self, value: Any) -> Any:
        if is_artifact(value):
            row = self.artifacts.get(value["path"])
            if row is not None:
                return public_file(row, value.get("modality"))
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value
