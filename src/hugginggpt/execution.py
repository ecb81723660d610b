"""Stage 3: run the task graph. A task starts the moment its last dependency finishes; results flow by modality.

The scheduler decides when a task runs and with what: it waits for the task's dependencies and its selection, then
builds a `Job` (plain data: the chosen model, arguments with placeholders substituted, files as artifact references)
and hands it to an `Executor` with the request's artifact store. The executor finds the expert and its model (loading
and keeping models is its business) and runs it: here in this process, or, for another executor, elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from .artifacts import ArtifactStore
from .errors import ExpertError, HuggingGPTError
from .experts.protocol import ExpertContext
from .experts.registry import ExpertRegistry
from .jobs import Job, JobResult
from .planning.references import file_kind, references
from .types import MEDIA, Artifact, Event, Selection, Task, TaskResult, arg_modality
from .workspace import Workspace, is_url

EmitEvent = Callable[[Event], None]
Choose = Callable[[Task], Awaitable[Selection]]


class Executor(Protocol):
    """Runs one job. Its media arguments are references `store` can open; the artifacts of its result must be too."""

    async def run(self, job: Job, store: ArtifactStore) -> JobResult: ...


class LocalExecutor:
    """Runs jobs in this process, at most `max_concurrency` at once, on the experts of `experts` (found by task,
    model and backend; each loads its model on first use and keeps it)."""

    def __init__(self, experts: ExpertRegistry, max_concurrency: int = 4) -> None:
        self.experts = experts
        self._slots = asyncio.Semaphore(max_concurrency)

    async def run(self, job: Job, store: ArtifactStore) -> JobResult:
        expert = self.experts.find(job.task, job.model_id, job.backend)
        args = {key: str(store.open(v)) if isinstance(v, Artifact) else v for key, v in job.args.items()}
        ctx = ExpertContext(workspace=store, task_id=job.task_id, task=job.task)
        async with self._slots:
            outputs = await expert.run(args, ctx)
        return JobResult(task_id=job.task_id, outputs=outputs if isinstance(outputs, dict) else {})


class TaskFailed(HuggingGPTError):
    """A task could not run; the message is shown as the task's error."""


async def resolve_args(task: Task, results: dict[int, TaskResult], workspace: Workspace) -> dict[str, str | Artifact]:
    """Substitute `<resource>-N` with task N's output of the argument's modality; a media argument becomes the
    reference of its file (an input is confined to the input folders, a URL fetched first); a text argument that is
    just the name (or URL) of a text document gets the document's content."""
    resolved: dict[str, str | Artifact] = {}
    for key, value in task.args.items():
        modality = arg_modality(key)
        refs = references(value)
        if modality in MEDIA:
            if refs:
                if len(refs) != 1 or value.strip() != f"<resource>-{refs[0]}":
                    raise TaskFailed(f"argument {key!r} must be a single resource, got {value!r}")
                output = results[refs[0]].outputs.get(modality)
                if not isinstance(output, Artifact):
                    have = ", ".join(results[refs[0]].outputs) or "nothing"
                    raise TaskFailed(f"task {refs[0]} produced no {modality} for {key!r} (it produced {have})")
                resolved[key] = output
            else:
                path = await workspace.fetch(value.strip()) if is_url(value) else workspace.resolve_input(value)
                resolved[key] = await asyncio.to_thread(workspace.put, path, modality)  # type: ignore[arg-type]
        elif modality == "text" and not refs and file_kind(value.strip().strip("'\"")) == "text":
            # a text argument that names a document means its content
            name = value.strip().strip("'\"")
            path = await workspace.fetch(name) if is_url(name) else workspace.resolve_input(name)
            resolved[key] = workspace.read_text(path)
        elif modality == "text" and refs:
            text = value
            for ref in dict.fromkeys(refs):
                output = results[ref].outputs.get("text")
                if not isinstance(output, str):
                    have = ", ".join(results[ref].outputs) or "nothing"
                    raise TaskFailed(f"task {ref} produced no text for {key!r} (it produced {have})")
                text = text.replace(f"<resource>-{ref}", output)
            resolved[key] = text
        else:
            resolved[key] = value
    return resolved


class Scheduler:
    """Runs tasks as they are added. Each waits on its dependencies' futures (no polling) and on `choose` (its
    selection), then runs as a job on the executor, within `timeout` seconds.

    A failed, timed-out or skipped dependency makes the task `skipped` with the reason. Call `close()` when no
    more tasks will come, then `await wait()`.
    """

    def __init__(
        self,
        *,
        executor: Executor,
        workspace: Workspace,
        choose: Choose,
        emit: EmitEvent = lambda event: None,
        timeout: float = 300.0,
    ) -> None:
        self.executor = executor
        self.workspace = workspace
        self.choose = choose
        self.emit = emit
        self.timeout = timeout
        self.results: dict[int, TaskResult] = {}
        self._done: dict[int, asyncio.Future[TaskResult]] = {}
        self._running: list[asyncio.Task[None]] = []
        self._order: list[int] = []
        self._closed = False

    def add(self, task: Task) -> None:
        if self._closed:
            raise RuntimeError("scheduler is closed")
        if task.id in self._done:
            raise ValueError(f"task {task.id} was added twice")
        unknown = [d for d in task.dep if d not in self._done]
        if unknown:
            raise ValueError(f"task {task.id} depends on unknown task(s) {unknown}")
        self._done[task.id] = asyncio.get_running_loop().create_future()
        self.results[task.id] = TaskResult(task_id=task.id, task=task.task, args=dict(task.args))
        self._order.append(task.id)
        self._running.append(asyncio.create_task(self._run(task), name=f"task-{task.id}"))

    def close(self) -> None:
        self._closed = True

    async def wait(self) -> list[TaskResult]:
        """Wait for every added task; results in the order the tasks were added."""
        self.close()
        if self._running:
            await asyncio.gather(*self._running)
        return [self.results[i] for i in self._order]

    async def cancel(self) -> None:
        self._closed = True
        for running in self._running:
            running.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self, task: Task) -> None:
        result = self.results[task.id]
        try:
            deps = [await self._done[d] for d in task.dep]
            blocked = next((d for d in deps if d.status != "ok"), None)
            if blocked is not None:
                reason = blocked.error or blocked.status
                self._finish(result, "skipped", f"task {blocked.task_id} ({blocked.task}) {blocked.status}: {reason}")
                return
            await self._execute(task, result)
        except asyncio.CancelledError:
            if not result.finished_at:
                self._finish(result, "failed", "cancelled")
            raise
        finally:
            future = self._done[task.id]
            if not future.done():
                future.set_result(result)

    async def _execute(self, task: Task, result: TaskResult) -> None:
        try:
            selection = await self.choose(task)
            if selection.model_id is None:
                raise ExpertError(selection.reason)
            result.model_id = selection.model_id
            args = await resolve_args(task, self.results, self.workspace)
            job = Job(
                task_id=task.id,
                task=task.task,
                model_id=selection.model_id,
                backend=selection.backend,
                args=args,
                timeout=self.timeout,
            )
            result.args = job.shown_args()
            result.started_at = datetime.now()  # after its selection and inputs: the expert's own time
            self.emit(Event(type="task.start", data={"task_id": task.id, "task": task.task, "model": job.model_id}))
            done = await asyncio.wait_for(self.executor.run(job, self.workspace), self.timeout)
        except TimeoutError:
            self._finish(result, "timeout", f"{result.model_id} took longer than {self.timeout:g} s")
            return
        except HuggingGPTError as exc:
            self._finish(result, "failed", str(exc))
            return
        except Exception as exc:  # an expert may raise anything; the run goes on and says what happened
            self._finish(result, "failed", f"{type(exc).__name__}: {exc}")
            return
        if not done.outputs:
            self._finish(result, "failed", f"{result.model_id} returned no outputs")
            return
        result.outputs = done.outputs
        self._finish(result, "ok", None)

    def _finish(self, result: TaskResult, status: str, error: str | None) -> None:
        result.status = status  # type: ignore[assignment]
        result.error = error
        result.finished_at = datetime.now()
        if result.started_at is None:
            result.started_at = result.finished_at
        self.emit(
            Event(
                type="task.end",
                data={
                    "task_id": result.task_id,
                    "task": result.task,
                    "model": result.model_id,
                    "status": status,
                    "error": error,
                    "seconds": result.seconds,
                    "outputs": {k: _preview(v) for k, v in result.outputs.items()},
                },
            )
        )


def _preview(value: object) -> object:
    if isinstance(value, Artifact):
        return value.model_dump()
    if isinstance(value, str):
        return value if len(value) <= 500 else value[:500] + "…"
    return value
