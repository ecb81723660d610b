"""The pool of loaded models: the least recently used idle model goes first, busy models stay, one load per model."""

from __future__ import annotations

import threading

import pytest

from hugginggpt.errors import ExpertError
from hugginggpt.experts.pool import MB, ModelPool


def test_least_recently_used_idle_models_are_unloaded_first() -> None:
    pool = ModelPool(ram_bytes=10 * MB)
    for key in ("a", "b", "c"):
        pool.release(pool.acquire(key, "cpu", 3 * MB, lambda: ("runner", None)))
    pool.release(pool.acquire("a", "cpu", 3 * MB, lambda: ("runner", None)))  # a is now the most recent
    pool.release(pool.acquire("d", "cpu", 3 * MB, lambda: ("runner", None)))
    assert pool.loaded() == ["c", "a", "d"]  # b went
    report = pool.report()
    assert (report.loads, report.unloads, report.hits) == (4, 1, 1)
    assert report.used_mb == {"cpu": 9.0} and report.budgets_mb == {"cpu": 10.0}
    assert pool.unload("c") and pool.loaded() == ["a", "d"]


def test_a_busy_model_is_not_unloaded_until_released() -> None:
    pool = ModelPool(ram_bytes=10 * MB)
    first = pool.acquire("a", "cpu", 6 * MB, lambda: ("runner-a", None))
    got: list[str] = []
    waiting = threading.Thread(target=lambda: got.append(pool.acquire("b", "cpu", 6 * MB, lambda: ("b", None)).key))
    waiting.start()
    waiting.join(timeout=0.3)
    assert waiting.is_alive() and got == [] and pool.loaded() == ["a"]  # b waits: a is busy and both do not fit
    pool.release(first)
    waiting.join(timeout=10)
    assert got == ["b"] and pool.loaded() == ["b"]


def test_a_model_asked_for_twice_at_once_is_loaded_once() -> None:
    pool = ModelPool(ram_bytes=10 * MB)
    started, go = threading.Event(), threading.Event()
    calls = []

    def slow_load():
        calls.append(1)
        started.set()
        go.wait(10)
        return "runner", None

    slots = []
    first = threading.Thread(target=lambda: slots.append(pool.acquire("m", "cpu", MB, slow_load)))
    first.start()
    started.wait(10)
    second = threading.Thread(target=lambda: slots.append(pool.acquire("m", "cpu", MB, slow_load)))
    second.start()
    go.set()
    first.join(10)
    second.join(10)
    assert len(calls) == 1 and len(slots) == 2 and slots[0] is slots[1]
    assert (pool.loads, pool.hits) == (1, 1)


def test_a_failed_load_leaves_the_pool_usable() -> None:
    pool = ModelPool(ram_bytes=10 * MB)

    def broken():
        raise ExpertError("bad weights")

    with pytest.raises(ExpertError, match="bad weights"):
        pool.acquire("m", "cpu", 9 * MB, broken)
    slot = pool.acquire("n", "cpu", 9 * MB, lambda: ("ok", None))
    assert slot.runner == "ok" and pool.loaded() == ["n"]
