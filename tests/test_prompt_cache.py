"""The prompt cache's files (keys, records, atomic writes, bad files), the planner's fixed prefix, and where the
pipeline warms it. The embedded model itself saving and restoring states is in test_llm_embedded.py."""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hugginggpt.config import Settings
from hugginggpt.experts.registry import ExpertRegistry
from hugginggpt.llm.openai import OpenAICompatibleLLM
from hugginggpt.llm.prompt_cache import FORMAT, PromptCache, StateRecord, file_sha256, prefix_key
from hugginggpt.llm.protocol import LLM, Completion, Message, warm
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import HuggingGPT
from hugginggpt.planning import Planner
from hugginggpt.response import response_prefix
from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable

MODEL, RUNTIME = "a" * 64, '{"xllamacpp": "test"}'


def _saved(cache: PromptCache, key: str, data: bytes, **record: Any) -> Path:
    """A state as llama.cpp leaves it under a temporary name, committed into the cache."""
    temp = cache.temp_name(key)
    (cache.folder / temp).write_bytes(data)
    cache.commit(key, temp, model=record.get("model", MODEL), runtime=record.get("runtime", RUNTIME), tokens=7)
    return cache.folder / cache.state_name(key)


@pytest.fixture
def cache(tmp_path: Path) -> PromptCache:
    return PromptCache(tmp_path / "prompt-cache")


@pytest.fixture(autouse=True)
def _folder(cache: PromptCache) -> None:
    cache.folder.mkdir(parents=True)


# --- keys and files ---------------------------------------------------------------------------------------------------


def test_the_key_changes_with_the_model_the_runtime_and_every_character_of_the_prompt():
    key = prefix_key(model=MODEL, runtime=RUNTIME, prompt="<system>plan</system>")
    assert key == prefix_key(model=MODEL, runtime=RUNTIME, prompt="<system>plan</system>")
    assert key != prefix_key(model="b" * 64, runtime=RUNTIME, prompt="<system>plan</system>")
    assert key != prefix_key(model=MODEL, runtime='{"xllamacpp": "other"}', prompt="<system>plan</system>")
    assert key != prefix_key(model=MODEL, runtime=RUNTIME, prompt="<system>plan </system>")


def test_a_committed_state_is_found_with_its_record_and_no_temporary_file_is_left(cache):
    state = _saved(cache, "k1", b"kv-state" * 1000)

    record = cache.lookup("k1", model=MODEL, runtime=RUNTIME)
    assert record == StateRecord(
        format=FORMAT,
        key="k1",
        model=MODEL,
        runtime=RUNTIME,
        tokens=7,
        size=8000,
        sha256=file_sha256(state),
    )
    assert sorted(p.name for p in cache.folder.iterdir()) == ["k1.bin", "k1.json"]


def test_nothing_saved_is_not_found(cache):
    assert cache.lookup("missing", model=MODEL, runtime=RUNTIME) is None


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "no record", "bad record", "no state"])
def test_a_damaged_state_is_ignored_with_a_warning_and_removed_so_it_is_rebuilt(cache, caplog, damage):
    state = _saved(cache, "k1", os.urandom(4096))
    record = cache.folder / "k1.json"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:1000])
    elif damage == "corrupted":  # same size, one byte changed: llama.cpp would restore garbage
        data = bytearray(state.read_bytes())
        data[2000] ^= 0xFF
        state.write_bytes(bytes(data))
    elif damage == "no record":
        record.unlink()
    elif damage == "bad record":
        record.write_text('{"format": 1, "key": "k1", "size": ')
    else:
        state.unlink()

    with caplog.at_level(logging.WARNING, logger="hugginggpt.llm"):
        assert cache.lookup("k1", model=MODEL, runtime=RUNTIME) is None
    assert "rebuilt" in caplog.text
    assert list(cache.folder.iterdir()) == []


@pytest.mark.parametrize("field", ["model", "runtime", "key"])
def test_a_state_from_another_model_runtime_or_prompt_is_not_used(cache, field):
    state = _saved(cache, "k1", os.urandom(512))
    record = json.loads((cache.folder / "k1.json").read_text())
    record[field] = "something else"
    (cache.folder / "k1.json").write_text(json.dumps(record))
    assert state.exists()

    assert cache.lookup("k1", model=MODEL, runtime=RUNTIME) is None
    assert not state.exists()


def test_a_full_disk_while_committing_leaves_neither_a_state_nor_a_temporary_file(cache, monkeypatch):
    _saved(cache, "old", b"x" * 100)
    temp = cache.temp_name("k1")
    (cache.folder / temp).write_bytes(b"state" * 100)
    real_open = open

    def full_disk_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if str(path).endswith(".json.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(OSError, match="No space left"):
        cache.commit("k1", temp, model=MODEL, runtime=RUNTIME, tokens=5)
    monkeypatch.undo()

    assert sorted(p.name for p in cache.folder.iterdir()) == ["old.bin", "old.json"]  # the earlier state is intact
    assert cache.lookup("k1", model=MODEL, runtime=RUNTIME) is None


def test_a_state_is_replaced_by_rename_so_readers_see_the_old_or_the_new_file_whole(cache, monkeypatch):
    _saved(cache, "k1", b"old" * 100)
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        renames.append((Path(src).name, Path(dst).name))
        assert Path(dst).name != "k1.bin" or (cache.folder / "k1.bin").read_bytes() == b"old" * 100
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    _saved(cache, "k1", b"new" * 100)

    assert [dst for _, dst in renames] == ["k1.bin", "k1.json"]  # the record last: it vouches for a complete state
    assert all(src.startswith(".k1.") and src.endswith(".tmp") for src, _ in renames)
    assert cache.lookup("k1", model=MODEL, runtime=RUNTIME).size == 300


def test_only_the_most_recently_used_states_are_kept(tmp_path):
    cache = PromptCache(tmp_path / "pc")
    cache.folder.mkdir()
    for number, key in enumerate(["k1", "k2", "k3"]):
        state = _saved(cache, key, b"s" * 10)
        os.utime(state, (1000 + number, 1000 + number))
    cache.lookup("k1", model=MODEL, runtime=RUNTIME)  # used now: the newest
    cache.keep = 2
    stale = cache.folder / ".k9.123.abcd.tmp"
    stale.write_bytes(b"left by a writer that died")
    os.utime(stale, (0, 0))

    _saved(cache, "k4", b"s" * 10)

    assert sorted(p.name for p in cache.folder.iterdir()) == ["k1.bin", "k1.json", "k4.bin", "k4.json"]


# --- the planner's fixed prefix and the pipeline ----------------------------------------------------------------------


def _planner() -> Planner:
    return Planner(ScriptedLLM(), TaskTable(DEFAULT_TASK_TYPES))


@pytest.mark.parametrize(
    "history",
    [
        [],
        [
            Message(role="user", content="Describe a.jpg"),
            Message(role="assistant", content="A dog on grass. Files: a.jpg"),
        ],
    ],
    ids=["no history", "history"],
)
@pytest.mark.parametrize("request_text", ["What objects are in a.jpg?", "Translate 'hello' into French."])
def test_every_planning_prompt_starts_with_the_fixed_prefix(history, request_text):
    planner = _planner()
    prefix = planner.prefix()
    assert prefix[0].role == "system"
    assert len(prefix) > 3  # the system prompt and demos: the long part
    assert planner.messages(request_text, history)[: len(prefix)] == prefix
    assert request_text not in "".join(m.content for m in prefix)


class _Recording:
    """A scripted LLM that records the order of warm and complete calls."""

    name = "recording"

    def __init__(self, reply: str) -> None:
        self.inner = ScriptedLLM(fallback=reply)
        self.events: list[tuple[str, int]] = []

    async def warm(self, prefix: Sequence[Message]) -> None:
        self.events.append(("warm", len(prefix)))

    async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
        self.events.append(("complete", len(messages)))
        return await self.inner.complete(messages, **kwargs)


async def test_the_pipeline_warms_the_planning_prefix_before_the_first_planning_call(tmp_path):
    llm = _Recording('{"tasks": []}')
    gpt = HuggingGPT(llm, ExpertRegistry([]), settings=Settings(output_dir=tmp_path))
    prefix = len(gpt.planner.prefix())

    await gpt.plan("Hello!")
    await gpt.run("Hello again!")

    assert llm.events[0] == ("warm", prefix)
    assert llm.events[1][0] == "complete"
    warms = [i for i, (kind, _) in enumerate(llm.events) if kind == "warm"]
    # plan() warms the planning prompt; each run() asks for it and the answer's system prompt (the backend does
    # the work once), before its first call
    assert [llm.events[i] for i in warms[1:]] == [("warm", prefix), ("warm", len(response_prefix()))]
    assert llm.events[warms[-1] + 1][0] == "complete"


async def test_backends_without_a_prefix_cache_need_nothing():
    class Bare:
        name = "bare"

        async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
            return Completion(text="")

    assert isinstance(Bare(), LLM)
    assert await warm(Bare(), [Message(role="system", content="x")]) is None
    assert await warm(ScriptedLLM(), [Message(role="system", content="x")]) is None
    assert await warm(OpenAICompatibleLLM("http://127.0.0.1:9/v1"), [Message(role="system", content="x")]) is None


def test_the_prompt_cache_setting(monkeypatch):
    assert Settings().llm_prompt_cache is True
    monkeypatch.setenv("HUGGINGGPT_LLM_PROMPT_CACHE", "false")
    assert Settings().llm_prompt_cache is False
