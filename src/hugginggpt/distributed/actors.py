"""Expert actors: `ExpertHost` is the body of the Ray actor that keeps one expert model, `ActorPools` the actors of
one controller process, a pool per model, made when first needed and released when idle."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from ..artifacts import LocalArtifacts
from ..experts.protocol import ExpertContext
from ..experts.registry import ExpertRegistry
from ..jobs import Job, JobResult
from ..types import Artifact, ModelCard, Resources
from .cluster import ACTOR_PREFIX
from .parcels import Parcel, share, shared_path, unpack

BuildExperts = Callable[[], ExpertRegistry]


class ExpertHost:
    """One expert model in a Ray actor. `build` (a picklable function of no arguments, run in the actor) makes the
    registry the model's expert is found in; the model loads on the first job and stays for the next ones.

    Calls are asyncio tasks on the actor's loop, so `ray.cancel` reaches the expert as a cancellation; an expert
    that blocks (a `LocalExpert`) still runs one call at a time on its own lock."""

    def __init__(self, build: BuildExperts, task: str, model_id: str, backend: str | None) -> None:
        self.expert = build().find(task, model_id, backend)
        self.task, self.model_id = task, model_id
        self.root = Path(tempfile.mkdtemp(prefix="hugginggpt-actor-"))
        self.jobs = 0
        self.running = 0
        self.last_done = time.monotonic()

    async def run(
        self, job: Job, parcels: dict[str, Parcel], shared: str | None = None
    ) -> tuple[JobResult, dict[str, bytes]]:
        """Run `job` with its media arguments from `parcels`; its result, and its output files' bytes by sha256 (with
        a `shared` folder, none: the files are copied there)."""
        store = LocalArtifacts(self.root / f"job-{job.task_id}-{uuid.uuid4().hex[:8]}")
        self.running += 1
        try:
            args = {key: value for key, value in job.args.items() if not isinstance(value, Artifact)}
            for key, parcel in parcels.items():
                args[key] = str(await unpack(parcel, store))
            outputs = await self.expert.run(args, ExpertContext(workspace=store, task_id=job.task_id, task=job.task))
            outputs = outputs if isinstance(outputs, dict) else {}
            made = [v for v in outputs.values() if isinstance(v, Artifact)]
            for artifact in made if shared is not None else ():
                share(Path(artifact.path), shared_path(Path(shared), artifact))
            files = {} if shared is not None else {a.sha256: Path(a.path).read_bytes() for a in made}
            return JobResult(task_id=job.task_id, outputs=outputs), files
        finally:
            self.running -= 1
            self.jobs += 1
            self.last_done = time.monotonic()
            shutil.rmtree(store.root, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """Where this actor runs and what it holds (an `ActorStatus`)."""
        context = ray.get_runtime_context()
        loaded = getattr(self.expert, "loaded", None)
        return {
            "name": context.get_actor_name() or "",
            "task": self.task,
            "model_id": self.model_id,
            "node_id": context.get_node_id(),
            "node_address": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "rss_mib": round(_rss_mib(), 1),
            "loaded": loaded if isinstance(loaded, bool) else None,
            "jobs": self.jobs,
            "running": self.running,
            "idle_s": None if self.running else round(time.monotonic() - self.last_done, 1),
        }


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def actor_options(card: ModelCard, resources: Resources | None, max_restarts: int) -> dict[str, Any]:
    """The Ray options of a model's actor: what its card (or the `ray_resources` setting, over it) asks for; Ray
    restarts it up to `max_restarts` times and runs the call it was on once more."""
    asked = resources or card.resources or Resources()
    options: dict[str, Any] = {"max_restarts": max_restarts, "max_task_retries": 1}
    if asked.num_cpus is not None:
        options["num_cpus"] = asked.num_cpus
    if asked.num_gpus is not None:
        options["num_gpus"] = asked.num_gpus
    if asked.memory_mb is not None:
        options["memory"] = asked.memory_mb * 2**20
    return options


@dataclass
class PooledActor:
    """An actor of a pool and what the controller knows of it."""

    key: tuple[str, str, str | None]
    name: str
    handle: Any
    busy: int = 0
    last_used: float = field(default_factory=time.monotonic)


class ActorPools:
    """The expert actors of this process: a pool per (task, model, backend), at most `size` actors each, made on
    first use (an idle one is reused, a busy pool grows to `size`, then calls share the least busy actor) and
    killed after `idle_seconds` without a call. Every request of the process shares them."""

    def __init__(
        self,
        build: BuildExperts,
        *,
        size: int = 1,
        idle_seconds: float = 300.0,
        max_restarts: int = 3,
        resources: Mapping[str, Resources] | None = None,
    ) -> None:
        self.build = build
        self.size = size
        self.idle_seconds = idle_seconds
        self.max_restarts = max_restarts
        self.resources = dict(resources or {})
        self._pools: dict[tuple[str, str, str | None], list[PooledActor]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self._host = ray.remote(ExpertHost)

    def acquire(self, card: ModelCard, backend: str | None) -> PooledActor:
        """An actor for the card's model, counted busy until `release`."""
        key = (card.task, card.id, backend)
        with self._lock:
            pool = self._pools.setdefault(key, [])
            actor = min(pool, key=lambda a: a.busy, default=None)
            if actor is None or (actor.busy and len(pool) < self.size):
                actor = self._start(card, key)
                pool.append(actor)
            actor.busy += 1
            actor.last_used = time.monotonic()
        self._watch()
        return actor

    def release(self, actor: PooledActor) -> None:
        with self._lock:
            actor.busy -= 1
            actor.last_used = time.monotonic()

    def discard(self, actor: PooledActor) -> None:
        """Forget an actor that died for good; the next call starts a new one."""
        with self._lock:
            pool = self._pools.get(actor.key, [])
            if actor in pool:
                pool.remove(actor)

    def actors(self) -> list[PooledActor]:
        with self._lock:
            return [actor for pool in self._pools.values() for actor in pool]

    def sweep(self) -> list[str]:
        """Kill the actors idle for `idle_seconds`; their names."""
        now = time.monotonic()
        idle = []
        with self._lock:
            for pool in self._pools.values():
                for actor in [a for a in pool if not a.busy and now - a.last_used >= self.idle_seconds]:
                    pool.remove(actor)
                    idle.append(actor)
        for actor in idle:
            ray.kill(actor.handle, no_restart=True)
        return [actor.name for actor in idle]

    def close(self) -> None:
        """Kill every actor and stop watching for idle ones."""
        self._stop.set()
        with self._lock:
            actors = [actor for pool in self._pools.values() for actor in pool]
            self._pools.clear()
        for actor in actors:
            ray.kill(actor.handle, no_restart=True)

    def _start(self, card: ModelCard, key: tuple[str, str, str | None]) -> PooledActor:
        name = f"{ACTOR_PREFIX}{card.task}:{card.id}:{uuid.uuid4().hex[:8]}"
        options = actor_options(card, self.resources.get(card.id), self.max_restarts)
        handle = self._host.options(name=name, **options).remote(self.build, card.task, card.id, key[2])
        return PooledActor(key=key, name=name, handle=handle)

    def _watch(self) -> None:
        """Start the thread that releases idle actors, once."""
        if self._reaper is not None or self._stop.is_set():
            return
        interval = min(max(self.idle_seconds / 4, 0.05), 10.0)

        def reap() -> None:
            while not self._stop.wait(interval):
                self.sweep()

        self._reaper = threading.Thread(target=reap, name="hugginggpt-ray-reaper", daemon=True)
        self._reaper.start()
