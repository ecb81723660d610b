"""LocalExpert: lazy load once, one call at a time per model, and a shared lock that works across event loops."""

from __future__ import annotations

import asyncio
import threading
import time

from hugginggpt.experts.protocol import ExpertContext, LocalExpert
from hugginggpt.types import ModelCard
from hugginggpt.workspace import Workspace


class _Counting(LocalExpert):
    """Counts loads and the most calls that were ever inside `predict` at once (over all experts sharing `gauge`)."""

    def __init__(self, card, gauge, lock=None):
        super().__init__(card, lock)
        self.gauge = gauge
        self.loads = 0

    def load(self):
        self.loads += 1

    def predict(self, args, ctx):
        with self.gauge["guard"]:
            self.gauge["inside"] += 1
            self.gauge["most"] = max(self.gauge["most"], self.gauge["inside"])
        time.sleep(0.02)
        with self.gauge["guard"]:
            self.gauge["inside"] -= 1
        return {"text": args["text"]}


def _gauge():
    return {"guard": threading.Lock(), "inside": 0, "most": 0}


def _ctx(tmp_path):
    return ExpertContext(workspace=Workspace(tmp_path, [tmp_path]), task_id=0, task="t")


def test_experts_sharing_a_lock_run_one_at_a_time_in_every_event_loop(tmp_path):
    gauge, lock = _gauge(), threading.Lock()
    first = _Counting(ModelCard(id="m", task="a"), gauge, lock)
    second = _Counting(ModelCard(id="m", task="b"), gauge, lock)

    async def turn():
        calls = [expert.run({"text": str(n)}, _ctx(tmp_path)) for n in range(3) for expert in (first, second)]
        return await asyncio.gather(*calls)

    for _ in range(2):  # a new event loop per turn, as `hugginggpt chat` runs them
        outputs = asyncio.run(turn())
        assert [o["text"] for o in outputs] == ["0", "0", "1", "1", "2", "2"]
    assert gauge["most"] == 1
    assert (first.loads, second.loads) == (1, 1)


class _Meeting(LocalExpert):
    """Waits in `predict` until another expert is inside its own `predict` too (or the barrier times out)."""

    def __init__(self, card, barrier):
        super().__init__(card)
        self.barrier = barrier

    def predict(self, args, ctx):
        self.barrier.wait()
        return {"text": "met"}


def test_experts_with_their_own_locks_run_side_by_side(tmp_path):
    barrier = threading.Barrier(2, timeout=30)
    experts = [_Meeting(ModelCard(id=f"m{n}", task="a"), barrier) for n in range(2)]

    async def both():
        return await asyncio.gather(*(e.run({"text": "x"}, _ctx(tmp_path)) for e in experts))

    assert asyncio.run(both()) == [{"text": "met"}, {"text": "met"}]
    assert not barrier.broken


def test_prepare_loads_once(tmp_path):
    expert = _Counting(ModelCard(id="m", task="a"), _gauge())
    assert not expert.loaded
    expert.prepare()
    expert.prepare()
    asyncio.run(expert.run({"text": "x"}, _ctx(tmp_path)))
    assert expert.loaded and expert.loads == 1
