"""The Ray executor: the scheduler's jobs run on expert actors across the cluster; experts that use the controller
LLM run here, in the controller process, where the LLM is."""

from __future__ import annotations

import asyncio
import shutil
from functools import partial
from pathlib import Path

import ray

from ..artifacts import ArtifactStore
from ..config import Settings
from ..errors import ExpertError
from ..execution import LocalExecutor
from ..experts.registry import ExpertRegistry
from ..jobs import Job, JobResult
from ..types import Artifact, ModelCard, OutputValue
from .actors import ActorPools, PooledActor
from .cluster import ActorStatus, connect, first_line, last_line
from .parcels import Parcel, Shelf, shared_path


def runs_in_controller(card: ModelCard) -> bool:
    """Whether a card's expert needs the controller LLM (the text tasks it serves, experts composed with it): those
    run in the controller process, which keeps the LLM; every other expert runs in an actor."""
    return card.backend == "llm" or any(part.startswith("llm:") for part in card.composed_from)


def actor_experts(settings: Settings) -> ExpertRegistry:
    """What an actor of the default pipeline finds its expert in: the default experts, without the controller LLM
    (built on the actor's node, so its cache and devices count)."""
    from ..pipeline import default_experts

    return default_experts(settings, None)[0]


class RayExecutor:
    """Runs each job on an actor of its model's pool (`pools`, shared by every request of the process), its files
    through the object store or the shared folder (`shelf`), its result's files written into the request's store.
    A job of an expert that uses the controller LLM runs here, on the local executor (at most `max_concurrency`
    at once).

    Failures read as with the local executor: the expert's own exception comes back as it was raised. An actor
    that dies is restarted by Ray and its call run once more (`actor_options`); still failing, the job fails. A
    cancelled job (a timeout, a cancelled request) cancels its actor call."""

    def __init__(
        self, experts: ExpertRegistry, pools: ActorPools, *, max_concurrency: int = 4, shelf: Shelf | None = None
    ) -> None:
        self.experts = experts
        self.pools = pools
        self.local = LocalExecutor(experts, max_concurrency)
        self.shelf = shelf if shelf is not None else Shelf()  # an empty shelf is falsy

    @classmethod
    def from_settings(cls, settings: Settings, experts: ExpertRegistry) -> RayExecutor:
        """Join the configured cluster (or start a local Ray) and pool the default experts' actors by the settings."""
        connect(settings.ray_address)
        pools = ActorPools(
            partial(actor_experts, settings),
            size=settings.ray_pool_size,
            idle_seconds=settings.ray_idle_seconds,
            max_restarts=settings.ray_max_restarts,
            resources=settings.ray_resources,
        )
        shelf = Shelf(shared=settings.ray_shared_dir)
        return cls(experts, pools, max_concurrency=settings.max_concurrency, shelf=shelf)

    async def run(self, job: Job, store: ArtifactStore) -> JobResult:
        expert = self.experts.find(job.task, job.model_id, job.backend)
        if runs_in_controller(expert.card):
            return await self.local.run(job, store)
        parcels = {
            key: await asyncio.to_thread(self.shelf.parcel, value, store)
            for key, value in job.args.items()
            if isinstance(value, Artifact)
        }
        actor = self.pools.acquire(expert.card, job.backend)
        try:
            result, files, files_ref = await self._call(actor, job, parcels)
        finally:
            self.pools.release(actor)
        return await asyncio.to_thread(self._unpack, job, result, files, files_ref, store)

    async def _call(
        self, actor: PooledActor, job: Job, parcels: dict[str, Parcel]
    ) -> tuple[JobResult, dict[str, bytes], ray.ObjectRef]:
        shared = str(self.shelf.shared) if self.shelf.shared is not None else None
        result_ref, files_ref = actor.handle.run.options(num_returns=2).remote(job, parcels, shared)
        try:
            return await result_ref, await files_ref, files_ref
        except asyncio.CancelledError:
            ray.cancel(result_ref)
            raise
        except ray.exceptions.RayTaskError as exc:  # the expert raised: that exception, as the local executor gives
            if isinstance(exc.cause, Exception):
                raise exc.cause from None
            raise ExpertError(f"{job.model_id} failed in its Ray actor: {first_line(exc)}") from None
        except ray.exceptions.RayActorError as exc:
            self.pools.discard(actor)
            if getattr(exc, "actor_init_failed", False):  # the message ends with what its expert raised
                raise ExpertError(f"the Ray actor of {job.model_id} could not start: {last_line(exc)}") from None
            reason = first_line(exc)
            raise ExpertError(f"the Ray actor of {job.model_id} died and its call failed again: {reason}") from None
        except ray.exceptions.RayError as exc:
            raise ExpertError(f"{job.model_id} could not run on Ray: {first_line(exc)}") from None

    def _unpack(
        self, job: Job, result: JobResult, files: dict[str, bytes], files_ref: ray.ObjectRef, store: ArtifactStore
    ) -> JobResult:
        """The result with each output file written into the request's store, and shelved for the next task."""
        outputs: dict[str, OutputValue] = {}
        for key, value in result.outputs.items():
            if isinstance(value, Artifact):
                path = store.new_path(job.task_id, job.task, Path(value.path).suffix)
                if self.shelf.shared is not None:
                    shutil.copyfile(shared_path(self.shelf.shared, value), path)
                else:
                    path.write_bytes(files[value.sha256])
                    self.shelf.keep(value.sha256, files_ref, value.sha256, value.size or path.stat().st_size)
                value = store.put(path, value.modality, value.media_type)
            outputs[key] = value
        return JobResult(task_id=job.task_id, outputs=outputs)

    async def status(self) -> list[ActorStatus]:
        """This process's expert actors, each as it reports itself (those that do not answer left out)."""
        actors = self.pools.actors()
        answers = await asyncio.gather(*(actor.handle.status.remote() for actor in actors), return_exceptions=True)
        return [ActorStatus.model_validate(a) for a in answers if not isinstance(a, BaseException)]

    def close(self) -> None:
        """Release every actor of the pools."""
        self.pools.close()
