"""The pool of loaded models: within a byte budget per device, least recently used unloaded first."""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..errors import ExpertError

MB = 1 << 20


def module_bytes(module: Any) -> int:
    """Bytes of a torch module's parameters and buffers, as loaded (dtype-aware)."""
    if module is None or not hasattr(module, "parameters"):
        return 0
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class PoolSlot:
    """One loaded model in the pool: what runs it, the torch module (for size and unloading), and its use."""

    key: str
    device: str
    runner: Any
    module: Any
    nbytes: int
    users: int = 0
    last_used: float = 0.0
    uses: int = 0


class PoolEntry(BaseModel):
    """A loaded model, as the memory report shows it."""

    key: str
    device: str
    mb: float
    busy: bool
    uses: int
    idle_s: float


class PoolReport(BaseModel):
    """What the pool holds, per device budget, and how often it loaded and unloaded."""

    budgets_mb: dict[str, float]
    used_mb: dict[str, float]
    loaded: list[PoolEntry]
    loads: int
    unloads: int
    hits: int


class ModelPool:
    """Loaded models within a byte budget per device, least recently used unloaded first.

    `acquire` returns a slot marked busy (never unloaded while busy) and loads it when absent, after making room;
    `release` marks it idle again. A model larger than its device's whole budget is refused with ExpertError.
    Thread-safe: loads run in worker threads; one model is loaded once even when asked for twice at once.
    """

    def __init__(self, ram_bytes: int, gpu_bytes: int | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.ram_bytes = ram_bytes
        self.gpu_bytes = gpu_bytes
        self._clock = clock
        self._slots: OrderedDict[str, PoolSlot] = OrderedDict()
        self._loading: dict[str, tuple[str, int]] = {}
        self._cond = threading.Condition()
        self.loads = 0
        self.unloads = 0
        self.hits = 0

    def budget(self, device: str) -> int:
        if device == "cpu":
            return self.ram_bytes
        if self.gpu_bytes is not None:
            return self.gpu_bytes
        import torch

        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory * 0.9)

    def used(self, device: str) -> int:
        loaded = sum(s.nbytes for s in self._slots.values() if s.device == device)
        return loaded + sum(n for d, n in self._loading.values() if d == device)

    def loaded(self) -> list[str]:
        with self._cond:
            return list(self._slots)

    def is_loaded(self, key: str) -> bool:
        with self._cond:
            return key in self._slots

    def acquire(self, key: str, device: str, estimate: int, load: Callable[[], tuple[Any, Any]]) -> PoolSlot:
        """The loaded slot for `key`, marked busy; `load()` -> (runner, torch module) runs when it is absent."""
        budget = self.budget(device)
        if estimate > budget:
            raise ExpertError(_too_big(key, estimate, budget, device))
        with self._cond:
            while True:
                slot = self._slots.get(key)
                if slot is not None:
                    self._use(slot)
                    self.hits += 1
                    return slot
                if key in self._loading:
                    self._cond.wait()
                    continue
                if self._make_room(device, estimate, budget):
                    break
                self._cond.wait()  # models in use on this device hold the memory; wait for one to be released
            self._loading[key] = (device, estimate)
        try:
            runner, module = load()
        except BaseException:
            with self._cond:
                del self._loading[key]
                self._cond.notify_all()
            raise
        nbytes = module_bytes(module) or estimate
        with self._cond:
            del self._loading[key]
            self._cond.notify_all()
            if nbytes > budget:
                del runner, module
                _free_memory(device)
                raise ExpertError(_too_big(key, nbytes, budget, device))
            slot = PoolSlot(key=key, device=device, runner=runner, module=module, nbytes=nbytes)
            self._slots[key] = slot
            self.loads += 1
            self._use(slot)
            self._make_room(device, 0, budget)
            return slot

    def release(self, slot: PoolSlot) -> None:
        with self._cond:
            slot.users -= 1
            slot.last_used = self._clock()
            self._cond.notify_all()

    def unload(self, key: str) -> bool:
        """Unload one idle model now. Returns False when it is not loaded or is busy."""
        with self._cond:
            slot = self._slots.get(key)
            if slot is None or slot.users:
                return False
            self._evict(slot)
            return True

    def clear(self) -> None:
        with self._cond:
            for slot in [s for s in self._slots.values() if not s.users]:
                self._evict(slot)

    def report(self) -> PoolReport:
        with self._cond:
            now = self._clock()
            devices = sorted({"cpu", *(s.device for s in self._slots.values())})
            return PoolReport(
                budgets_mb={d: round(self.budget(d) / MB, 3) for d in devices},
                used_mb={d: round(self.used(d) / MB, 3) for d in devices},
                loaded=[
                    PoolEntry(
                        key=s.key,
                        device=s.device,
                        mb=round(s.nbytes / MB, 3),
                        busy=s.users > 0,
                        uses=s.uses,
                        idle_s=round(now - s.last_used, 3) if not s.users else 0.0,
                    )
                    for s in self._slots.values()
                ],
                loads=self.loads,
                unloads=self.unloads,
                hits=self.hits,
            )

    def _use(self, slot: PoolSlot) -> None:
        slot.users += 1
        slot.uses += 1
        slot.last_used = self._clock()
        self._slots.move_to_end(slot.key)

    def _make_room(self, device: str, need: int, budget: int) -> bool:
        """Unload idle models on `device`, least recently used first, until `need` more bytes fit. Lock held."""
        for slot in [s for s in self._slots.values() if s.device == device and not s.users]:
            if self.used(device) + need <= budget:
                break
            self._evict(slot)
        return self.used(device) + need <= budget

    def _evict(self, slot: PoolSlot) -> None:
        del self._slots[slot.key]
        slot.runner = slot.module = None
        self.unloads += 1
        _free_memory(slot.device)


def _too_big(key: str, nbytes: int, budget: int, device: str) -> str:
    return (
        f"{key} needs about {nbytes / MB:.0f} MB, more than the whole {budget / MB:.0f} MB budget on {device}; "
        "raise HUGGINGGPT_TRANSFORMERS_MEMORY_MB (or _GPU_MEMORY_MB) or place it on another device"
    )


def _free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
