"""HuggingGPT: wires planning, selection, execution and response into `run()` and `stream()`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from . import followup
from .account import render_account, split_answer
from .catalog import ModelCatalog
from .config import Settings
from .errors import HuggingGPTError, PlanError, RayUnavailable
from .execution import Executor, LocalExecutor, Scheduler
from .experts.registry import ExpertRegistry
from .facts import task_facts
from .grounding import CheckedStream, Grounds
from .llm.protocol import LLM, Message, UsageMeter, warm
from .planning import Planner, trim_history
from .response import respond, response_prefix
from .selection import Selector
from .tasks import DEFAULT_TASK_TYPES, TaskTable
from .types import Answer, Event, Plan, Selection, Task, TaskResult
from .workspace import Workspace


class Conversation:
    """The turns of a multi-turn chat. Earlier answers (with their file paths) are history for the next plan."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.answers: list[Answer] = []

    def record(self, answer: Answer) -> None:
        files = [a.path for a in answer.artifacts()]
        direct, _ = split_answer(answer.text)  # the account of the workflow stays out of later prompts
        content = direct + (f"\nFiles: {', '.join(files)}" if files else "")
        self.messages += [Message(role="user", content=answer.request), Message(role="assistant", content=content)]
        self.answers.append(answer)


def default_experts(settings: Settings, llm: LLM | None = None) -> tuple[ExpertRegistry, ModelCatalog]:
    """The default experts (with the controller LLM's text tasks when `llm` is given) and the catalogue the pipeline
    selects from: their cards plus the routed catalogue snapshot, when configured or present in the cache."""
    from .catalog import default_snapshot_path, load_snapshot
    from .experts.registry import default_registry

    experts = default_registry(settings, llm)
    catalog = ModelCatalog(experts.cards())
    snapshot = settings.catalog_snapshot or default_snapshot_path()
    if settings.catalog_snapshot is not None or snapshot.is_file():
        catalog.add(experts.route(load_snapshot(snapshot)))
    return experts, catalog


def executor_from_settings(settings: Settings, experts: ExpertRegistry) -> Executor:
    """The executor the settings choose: `local` (this process) or `ray` (expert actors on a Ray cluster, whose
    actors build the default experts). RayUnavailable when Ray is missing or cannot be reached."""
    if settings.executor == "ray":
        try:
            from .distributed import RayExecutor
        except ModuleNotFoundError as exc:
            if exc.name != "ray":
                raise
            raise RayUnavailable("the ray executor needs the `ray` extra: pip install 'hugginggpt[ray]'") from None
        return RayExecutor.from_settings(settings, experts)
    return LocalExecutor(experts, settings.max_concurrency)


class HuggingGPT:
    """The four-stage pipeline. Everything it uses is passed in, so tests build it from real parts."""

    def __init__(
        self,
        llm: LLM,
        experts: ExpertRegistry,
        *,
        catalog: ModelCatalog | None = None,
        settings: Settings | None = None,
        executor: Executor | None = None,
        task_types: TaskTable | None = None,
    ) -> None:
        self.llm = llm
        self.experts = experts
        self.settings = settings or Settings()
        self.catalog = catalog or ModelCatalog(experts.cards())
        self.executor = executor or executor_from_settings(self.settings, experts)
        # the full table: a request is planned as asked, and a task no installed model serves fails saying so
        self.task_types = task_types or TaskTable(DEFAULT_TASK_TYPES)
        self.planner = Planner.from_settings(llm, self.task_types, self.settings)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> HuggingGPT:
        """The default assembly: the configured LLM, the default experts, and the catalogue snapshot if present."""
        from .llm import llm_from_settings

        settings = settings or Settings()
        llm = llm_from_settings(settings)
        experts, catalog = default_experts(settings, llm)
        return cls(llm, experts, catalog=catalog, settings=settings)

    async def warm(self) -> list[Any]:
        """Have the fixed prompt starts ready (restored from the prompt cache where the backend has one): the
        planning prompt's, then the answer's system prompt; what each backend's warm-up said, in that order."""
        return [await warm(self.llm, self.planner.prefix()), await warm(self.llm, response_prefix())]

    async def plan(self, request: str, history: Sequence[Message] = ()) -> Plan:
        """Stage 1 only."""
        await warm(self.llm, self.planner.prefix())  # the fixed prompt start: restored from the prompt cache
        return await self.planner.plan(request, history)

    async def run(
        self,
        request: str,
        *,
        history: Sequence[Message] = (),
        inputs: Sequence[Path] = (),
        output_dir: Path | None = None,
        conversation: Conversation | None = None,
    ) -> Answer:
        """Run a request to the end and return the Answer."""
        answer: Answer | None = None
        async for event in self.stream(
            request, history=history, inputs=inputs, output_dir=output_dir, conversation=conversation
        ):
            if event.type == "answer.done":
                answer = Answer.model_validate(event.data["answer"])
        assert answer is not None
        return answer

    async def stream(
        self,
        request: str,
        *,
        history: Sequence[Message] = (),
        inputs: Sequence[Path] = (),
        output_dir: Path | None = None,
        conversation: Conversation | None = None,
    ) -> AsyncIterator[Event]:
        """Run a request, yielding Events as they happen; the last is `answer.done` with the Answer. Stopping the
        iteration early cancels the run."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        if conversation is not None:
            history = [*conversation.messages, *history]
        out = Path(output_dir or self.settings.output_dir)
        workspace = Workspace(
            out,
            [*inputs, out],
            max_download_bytes=self.settings.max_download_bytes,
            allow_private_urls=self.settings.allow_private_urls,
            max_text_bytes=self.settings.max_text_bytes,
        )
        runner = asyncio.create_task(self._run(request, history, workspace, queue.put_nowait))
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, runner}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    event = getter.result()
                    yield event
                    if event.type == "answer.done":
                        if conversation is not None:
                            conversation.record(Answer.model_validate(event.data["answer"]))
                        return
                else:
                    getter.cancel()
                    runner.result()  # re-raises what stopped the run
                    while not queue.empty():
                        yield queue.get_nowait()
                    return
        finally:
            if not runner.done():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)

    async def _run(
        self, request: str, history: Sequence[Message], workspace: Workspace, emit: Callable[[Event], None]
    ) -> None:
        meter = UsageMeter()
        timings: dict[str, float] = {}
        start = time.perf_counter()
        planning = [True]  # while the plan is still being written

        def emit_timed(event: Event) -> None:  # a task's start says when, and whether the plan was still coming
            if event.type == "task.start":
                at = time.perf_counter() - start
                event.data.update(at_s=round(at, 3), while_planning=planning[0])
                timings.setdefault("first_task", round(at, 3))
            send(event)

        send, emit = emit, emit_timed
        attempt = _Attempt(self, meter, request, workspace, emit)
        streamed: list[Task] = []

        def on_task(task: Task) -> None:
            streamed.append(task)
            attempt.dispatch(task)

        plan = Plan()
        error: str | None = None
        invalid_plan = False
        try:
            await self.warm()
            plan = await self.planner.plan(
                request,
                history,
                on_task=on_task if self.settings.stream_plan else None,
                llm=meter.bind(self.llm, "planning"),
                exists=workspace.has_input,
            )
        except HuggingGPTError as exc:
            error = str(exc)
            invalid_plan = isinstance(exc, PlanError)
            emit(Event(type="error", data={"stage": "planning", "message": error}))
        partial: str | None = None
        if plan.dropped:  # the valid part of an invalid plan runs; say what was left out
            partial = "part of the request could not be planned: " + "; ".join(plan.dropped)
            emit(Event(type="error", data={"stage": "planning", "message": partial}))
        timings["planning"] = time.perf_counter() - start
        planning[0] = False

        if plan.tasks[: len(streamed)] != streamed:
            # The final (repaired) plan differs from what streamed: start over with it.
            await attempt.cancel()
            attempt = _Attempt(self, meter, request, workspace, emit)
            streamed = []
        for task in plan.tasks[len(streamed) :]:
            attempt.dispatch(task)
        emit(Event(type="plan.done", data={"tasks": [t.model_dump() for t in plan.tasks]}))

        mark = time.perf_counter()
        await attempt.selector.flush()
        timings["selection"] = time.perf_counter() - mark
        results: list[TaskResult] = await attempt.scheduler.wait()
        timings["execution"] = time.perf_counter() - mark

        mark = time.perf_counter()
        tasks = list(plan.tasks)
        selections = [attempt.selector.selections[t.id] for t in tasks if t.id in attempt.selector.selections]
        facts = task_facts(tasks, selections, results, self.task_types)
        removed: list[dict[str, Any]] = []
        if error is not None:
            # a plan error quotes the planner's invalid reply, which may name files nobody gave: not for the answer
            text = (
                "I could not plan this request: the planner's reply was not a valid plan, even after a repair. "
                "Saying plainly what to do with which file may help."
                if invalid_plan
                else f"I could not plan this request: {error}"
            )
            emit(Event(type="answer.token", data={"text": text}))
        else:
            told = [request, *(m.content for m in history)]

            def grounds() -> Grounds:
                return Grounds.of(facts, told, [v for item in (*tasks, *results) for v in item.args.values()])

            def say(delta: str) -> None:
                emit(Event(type="answer.token", data={"text": delta}))

            image = followup.asked_image(tasks, results)
            available = self.catalog.available_tasks()
            asks = followup.question_types(request, tasks, image, self.task_types, available.__contains__)
            held: list[str] = []  # when the question may go on to a QA model, the first reply waits
            response = await respond(
                meter.bind(self.llm, "response"),
                request,
                facts,
                grounds=grounds(),
                history=trim_history(history, self.settings.history_tokens),
                on_delta=held.append if asks else say,
            )
            text = response.text
            if asks and image is not None and followup.unanswered(response):
                extra = await self._ask(asks, image, request, max(t.id for t in tasks) + 1, meter, workspace, emit)
                tasks += [task for task, _, _ in extra]
                selections += [selection for _, selection, _ in extra if selection is not None]
                results += [result for _, _, result in extra]
                facts = task_facts(tasks, selections, results, self.task_types)
                if followup.answered(extra[-1][2]):
                    stream = CheckedStream(grounds(), say)
                    stream.add(str(extra[-1][2].outputs["text"]))
                    if stream.text:
                        held, text, response = [], stream.text, response.model_copy(update={"removed": []})
            for delta in held:
                say(delta)
            removed = [r.model_dump() for r in response.removed]
            if response.error:
                emit(Event(type="error", data={"stage": "response", "message": response.error}))
            for removal in response.removed:
                message = f"a sentence was kept out of the answer: it {removal.reason}"
                emit(Event(type="error", data={"stage": "grounding", "message": message, **removal.model_dump()}))
        if account := render_account(facts):
            for line in account.splitlines(keepends=True):
                emit(Event(type="answer.token", data={"text": line}))
            text += account
        timings["response"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - start
        answer = Answer(
            request=request,
            text=text,
            plan=tasks,
            selections=selections,
            results=results,
            llm_calls=len(meter.calls),
            llm_usage=meter.calls,
            timings={k: round(v, 3) for k, v in timings.items()},
            output_dir=str(workspace.root) if workspace.root.exists() else None,
            error=error or partial,
            removed=removed,
        )
        emit(Event(type="answer.done", data={"answer": answer.model_dump(mode="json")}))

    async def _ask(
        self,
        task_types: list[str],
        image: str,
        request: str,
        first_id: int,
        meter: UsageMeter,
        workspace: Workspace,
        emit: Callable[[Event], None],
    ) -> list[tuple[Task, Selection | None, TaskResult]]:
        """Ask the request of each question-answering task type in turn, until one answers it."""
        asked: list[tuple[Task, Selection | None, TaskResult]] = []
        for offset, task_type in enumerate(task_types):
            task = followup.question_task(task_type, image, request, first_id + offset)
            attempt = _Attempt(self, meter, request, workspace, emit)
            attempt.dispatch(task)
            await attempt.selector.flush()
            (result,) = await attempt.scheduler.wait()
            asked.append((task, attempt.selector.selections.get(task.id), result))
            if followup.answered(result):
                break
        return asked


class _Attempt:
    """Selection and execution of one plan: tasks are dispatched as they arrive, each awaiting its selection."""

    def __init__(
        self, gpt: HuggingGPT, meter: UsageMeter, request: str, workspace: Workspace, emit: Callable[[Event], None]
    ) -> None:
        self.gpt = gpt
        self.emit = emit
        self.selector = Selector(
            gpt.catalog,
            meter.bind(gpt.llm, "selection"),
            request,
            strategy=gpt.settings.selection,
            top_k=gpt.settings.top_k,
            routing=gpt.settings.routing,
        )
        self.scheduler = Scheduler(
            executor=gpt.executor,
            workspace=workspace,
            choose=self.selection,
            emit=emit,
            timeout=gpt.settings.task_timeout,
        )
        self._selections: dict[int, asyncio.Future[Selection]] = {}

    def dispatch(self, task: Task) -> None:
        self.emit(Event(type="plan.task", data={"task": task.model_dump()}))
        future = self.selector.submit(task)
        future.add_done_callback(
            lambda f: None if f.cancelled() else self.emit(Event(type="selection", data=f.result().model_dump()))
        )
        self._selections[task.id] = future
        self.scheduler.add(task)

    async def selection(self, task: Task) -> Selection:
        return await self._selections[task.id]

    async def cancel(self) -> None:
        self.selector.cancel()
        await self.scheduler.cancel()
