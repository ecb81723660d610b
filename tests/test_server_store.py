"""The server's SQLite store: WAL mode, per-key reads, runs with their messages, and recovery after a crash."""

from __future__ import annotations

import sqlite3
import time

import pytest

from hugginggpt.server.store import FileRow, Store


@pytest.fixture
async def store(tmp_path):
    store = Store(tmp_path / "data" / "h.db")
    await store.open()
    yield store
    await store.close()


def _file(file_id: str, conversation: str, key: str, name: str) -> FileRow:
    return FileRow(
        id=file_id,
        conversation_id=conversation,
        key_id=key,
        kind="upload",
        name=name,
        filename=name.rsplit("/", 1)[-1],
        media_type="image/png",
        size=3,
        sha256="0" * 64,
        run_id=None,
        created_at=time.time(),
    )


async def test_the_file_is_created_in_wal_mode(store, tmp_path):
    assert (tmp_path / "data" / "h.db").is_file()
    assert await store._call(store.journal_mode) == "wal"
    with sqlite3.connect(tmp_path / "data" / "h.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_key_reads_only_its_own_conversations_files_and_runs(store):
    await store.create_conversation("c1", "key-a")
    await store.create_conversation("c2", "key-b")
    await store.add_file(_file("f1", "c1", "key-a", "uploads/a.png"))
    await store.start_run("r1", "c1", "key-a", "draw a cat")

    assert [c.id for c in await store.conversations("key-a")] == ["c1"]
    assert await store.conversation("c1", "key-b") is None
    assert await store.file("f1", "key-b") is None
    assert await store.run("r1", "key-b") is None
    assert (await store.file("f1", "key-a")).name == "uploads/a.png"
    assert (await store.run("r1", "key-a")).status == "running"


async def test_a_run_records_its_request_and_reply_as_messages(store):
    await store.create_conversation("c1", "key-a")
    await store.start_run("r1", "c1", "key-a", "draw a cat\nplease")
    answer = {"text": "Here is a cat.", "plan": [{"id": 0, "task": "text-to-image", "dep": [], "args": {}}]}
    events = [{"seq": 0, "type": "run.start", "data": {}}]
    await store.finish_run("r1", "done", answer=answer, events=events, error=None, reply="Here is a cat.")

    messages = await store.messages("c1")
    assert [(m.role, m.content, m.run_id) for m in messages] == [
        ("user", "draw a cat\nplease", "r1"),
        ("assistant", "Here is a cat.", "r1"),
    ]
    run = await store.run("r1", "key-a")
    assert run.status == "done" and run.answer == answer and run.events == events
    assert (await store.conversation("c1", "key-a")).title == "draw a cat"
    listed = await store.runs("c1")
    assert listed[0].events is None and listed[0].answer == answer
    assert (await store.runs("c1", with_events=True))[0].events == events


async def test_runs_left_running_by_a_stopped_process_are_marked_interrupted(tmp_path):
    first = Store(tmp_path / "h.db")
    await first.open()
    await first.create_conversation("c1", "key-a")
    await first.start_run("r1", "c1", "key-a", "draw a cat")
    await first.close()

    second = Store(tmp_path / "h.db")
    await second.open()
    try:
        run = await second.run("r1", "key-a")
        assert run.status == "interrupted"
        assert "stopped" in run.error
    finally:
        await second.close()


async def test_deleting_a_conversation_deletes_its_rows(store):
    await store.create_conversation("c1", "key-a")
    await store.add_file(_file("f1", "c1", "key-a", "uploads/a.png"))
    await store.start_run("r1", "c1", "key-a", "hello")
    assert not await store.delete_conversation("c1", "key-b")
    assert await store.delete_conversation("c1", "key-a")
    assert await store.file("f1", "key-a") is None
    assert await store.run("r1", "key-a") is None
    assert await store.messages("c1") == []


async def test_two_files_of_a_conversation_cannot_share_a_name(store):
    await store.create_conversation("c1", "key-a")
    await store.add_file(_file("f1", "c1", "key-a", "uploads/a.png"))
    with pytest.raises(sqlite3.IntegrityError):
        await store.add_file(_file("f2", "c1", "key-a", "uploads/a.png"))
