"""SQLite persistence for the server: conversations, messages, runs (plan, results, events) and file metadata."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from ..errors import HuggingGPTError

T = TypeVar("T")

RunStatus = Literal["running", "done", "failed", "cancelled", "interrupted"]
FileKind = Literal["upload", "artifact"]
INTERRUPTED = "the server stopped during this run"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_key ON conversations (key_id, updated_at);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    run_id TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, id);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    key_id TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    answer TEXT,
    events TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS runs_by_conversation ON runs (conversation_id, created_at);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    key_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    filename TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    run_id TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_conversation ON files (conversation_id, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS files_by_name ON files (conversation_id, name);
"""


_RUN_COLUMNS_WITHOUT_EVENTS = "id, conversation_id, key_id, request, status, answer, error, created_at, finished_at"


class DiskFull(HuggingGPTError):
    """The disk under the database is full: nothing could be written (the transaction was rolled back)."""


class ConversationRow(BaseModel):
    id: str
    key_id: str
    title: str
    created_at: float
    updated_at: float


class MessageRow(BaseModel):
    id: int
    conversation_id: str
    role: str
    content: str
    run_id: str | None
    created_at: float


class RunRow(BaseModel):
    id: str
    conversation_id: str
    key_id: str
    request: str
    status: RunStatus
    answer: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    error: str | None = None
    created_at: float
    finished_at: float | None = None


class FileRow(BaseModel):
    """A file of a conversation. `name` is its path relative to the conversation folder (e.g. `uploads/cat.png`)."""

    id: str
    conversation_id: str
    key_id: str
    kind: FileKind
    name: str
    filename: str
    media_type: str
    size: int
    sha256: str
    run_id: str | None
    created_at: float


class Store:
    """The server's SQLite file (WAL mode). Every call runs on one dedicated thread, so database work never waits
    behind expert models in the shared thread pool, and the connection is used by one thread only.

    Every read that a client can trigger is filtered by the caller's key id: a row of another key is "not found".
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hugginggpt-db")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Create the file and tables if needed; mark runs a previous process left unfinished as interrupted."""
        await self._call(self._open)

    async def close(self) -> None:
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except sqlite3.OperationalError as exc:
            if "full" not in str(exc):
                raise
            raise DiskFull(f"the server's disk is full: its database cannot be written ({exc})") from exc

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        self._db = db
        with self._transaction():
            for row in db.execute("SELECT id, conversation_id, request FROM runs WHERE status = 'running'").fetchall():
                self._interrupt(db, row["id"], row["conversation_id"], row["request"])

    def _interrupt(self, db: sqlite3.Connection, run_id: str, conversation_id: str, request: str) -> None:
        """End a run a killed process left running as a finished run ends: its status and error, the events a
        follower needs (a start and an end), and the reply later turns see, so the history still alternates."""
        start = {"run_id": run_id, "conversation_id": conversation_id, "request": request}
        end = {"run_id": run_id, "status": "interrupted", "error": INTERRUPTED}
        events = [{"seq": 0, "type": "run.start", "data": start}, {"seq": 1, "type": "run.end", "data": end}]
        db.execute(
            "UPDATE runs SET status = 'interrupted', error = ?, events = ?, finished_at = ? WHERE id = ?",
            (INTERRUPTED, json.dumps(events), time.time(), run_id),
        )
        self._insert_message(db, conversation_id, "assistant", f"(this request did not finish: {INTERRUPTED})", run_id)

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    # conversations

    async def create_conversation(self, conversation_id: str, key_id: str, title: str = "") -> ConversationRow:
        now = time.time()
        row = ConversationRow(id=conversation_id, key_id=key_id, title=title, created_at=now, updated_at=now)
        await self._call(
            self._execute,
            "INSERT INTO conversations (id, key_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (row.id, row.key_id, row.title, row.created_at, row.updated_at),
        )
        return row

    async def conversation(self, conversation_id: str, key_id: str) -> ConversationRow | None:
        rows = await self._call(
            self._query, "SELECT * FROM conversations WHERE id = ? AND key_id = ?", (conversation_id, key_id)
        )
        return ConversationRow(**rows[0]) if rows else None

    async def conversations(self, key_id: str, limit: int = 100) -> list[ConversationRow]:
        rows = await self._call(
            self._query,
            "SELECT * FROM conversations WHERE key_id = ? ORDER BY updated_at DESC LIMIT ?",
            (key_id, limit),
        )
        return [ConversationRow(**r) for r in rows]

    async def delete_conversation(self, conversation_id: str, key_id: str) -> bool:
        count = await self._call(
            self._execute, "DELETE FROM conversations WHERE id = ? AND key_id = ?", (conversation_id, key_id)
        )
        return count > 0

    # messages

    async def add_message(self, conversation_id: str, role: str, content: str, run_id: str | None = None) -> None:
        await self._call(self._add_message, conversation_id, role, content, run_id)

    def _add_message(self, conversation_id: str, role: str, content: str, run_id: str | None) -> None:
        with self._transaction() as db:
            self._insert_message(db, conversation_id, role, content, run_id)

    @staticmethod
    def _insert_message(db: sqlite3.Connection, conversation_id: str, role: str, content: str, run_id: str | None):
        now = time.time()
        db.execute(
            "INSERT INTO messages (conversation_id, role, content, run_id, created_at) VALUES (?, ?, ?, ?, ?)",
            (conversation_id, role, content, run_id, now),
        )
        title = content.strip().splitlines()[0][:80] if role == "user" and content.strip() else ""
        db.execute(
            "UPDATE conversations SET updated_at = ?, title = CASE WHEN title = '' THEN ? ELSE title END WHERE id = ?",
            (now, title, conversation_id),
        )

    async def messages(self, conversation_id: str) -> list[MessageRow]:
        rows = await self._call(
            self._query, "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )
        return [MessageRow(**r) for r in rows]

    # runs

    async def start_run(self, run_id: str, conversation_id: str, key_id: str, request: str) -> None:
        """Record a run and its request (as the conversation's next user message) in one transaction."""
        await self._call(self._start_run, run_id, conversation_id, key_id, request)

    def _start_run(self, run_id: str, conversation_id: str, key_id: str, request: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO runs (id, conversation_id, key_id, request, status, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, conversation_id, key_id, request, "running", time.time()),
            )
            self._insert_message(db, conversation_id, "user", request, run_id)

    async def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        answer: dict[str, Any] | None,
        events: list[dict[str, Any]],
        error: str | None,
        reply: str,
    ) -> None:
        """Record how a run ended and its reply (the conversation's next assistant message) in one transaction."""
        await self._call(self._finish_run, run_id, status, answer, events, error, reply)

    def _finish_run(
        self,
        run_id: str,
        status: RunStatus,
        answer: dict[str, Any] | None,
        events: list[dict[str, Any]],
        error: str | None,
        reply: str,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status = ?, answer = ?, events = ?, error = ?, finished_at = ? WHERE id = ?",
                (
                    status,
                    None if answer is None else json.dumps(answer),
                    json.dumps(events),
                    error,
                    time.time(),
                    run_id,
                ),
            )
            row = db.execute("SELECT conversation_id FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None:
                self._insert_message(db, row[0], "assistant", reply, run_id)

    async def run(self, run_id: str, key_id: str) -> RunRow | None:
        rows = await self._call(self._query, "SELECT * FROM runs WHERE id = ? AND key_id = ?", (run_id, key_id))
        return _run_row(rows[0]) if rows else None

    async def runs(self, conversation_id: str, *, with_events: bool = False) -> list[RunRow]:
        columns = "*" if with_events else _RUN_COLUMNS_WITHOUT_EVENTS
        rows = await self._call(
            self._query,
            f"SELECT {columns} FROM runs WHERE conversation_id = ? ORDER BY created_at",
            (conversation_id,),
        )
        return [_run_row(r) for r in rows]

    # files

    async def add_file(self, row: FileRow) -> None:
        await self._call(
            self._execute,
            "INSERT INTO files (id, conversation_id, key_id, kind, name, filename, media_type, size, sha256, run_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.conversation_id,
                row.key_id,
                row.kind,
                row.name,
                row.filename,
                row.media_type,
                row.size,
                row.sha256,
                row.run_id,
                row.created_at,
            ),
        )

    async def file(self, file_id: str, key_id: str) -> FileRow | None:
        rows = await self._call(self._query, "SELECT * FROM files WHERE id = ? AND key_id = ?", (file_id, key_id))
        return FileRow(**rows[0]) if rows else None

    async def files(self, conversation_id: str) -> list[FileRow]:
        rows = await self._call(
            self._query, "SELECT * FROM files WHERE conversation_id = ? ORDER BY created_at", (conversation_id,)
        )
        return [FileRow(**r) for r in rows]

    async def files_of_key(self, key_id: str, limit: int = 1000) -> list[FileRow]:
        rows = await self._call(
            self._query, "SELECT * FROM files WHERE key_id = ? ORDER BY created_at DESC LIMIT ?", (key_id, limit)
        )
        return [FileRow(**r) for r in rows]

    # plumbing (runs on the store's thread)

    def _execute(self, sql: str, params: tuple[Any, ...]) -> int:
        with self._transaction() as db:
            return db.execute(sql, params).rowcount

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [dict(row) for row in self._conn.execute(sql, params).fetchall()]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.db.execute("COMMIT")
        finally:
            # after an error, or a COMMIT that failed (a full disk), end the transaction unless SQLite already did,
            # so the next one can begin
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")


def _run_row(row: dict[str, Any]) -> RunRow:
    values = dict(row)
    for key in ("answer", "events"):
        if values.get(key) is not None:
            values[key] = json.loads(values[key])
    return RunRow(**values)
