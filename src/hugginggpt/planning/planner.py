"""Stage 1: turn a request (and chat history) into a validated task graph.

Builds the prompt (specification, few-shot demos, trimmed history, the task types available now), asks the LLM for
a constrained reply in its plan syntax (`syntax`: JSON, or code), parses it (streamed, task by task),
then validates and repairs it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..embedding import SentenceEmbedder
from ..errors import LLMError, PlanError
from ..grounding import requested_kinds, wanted_kinds
from ..llm.protocol import LLM, Message
from ..prompts import load_demos, render
from ..tasks import DEFAULT_TASK_TYPES, TaskTable, TaskType
from ..types import MEDIA, Plan, Task, arg_modality
from .demos import DemoBank, fit_demos, load_bank
from .history import trim_history
from .matching import TypeMatcher
from .references import media_kind, named_files, named_media
from .rules import MAX_TASKS, REPAIRS, PlanBuilder, check_repairs, parse_plan, request_plan, salvage_plan
from .syntax import syntax_for

if TYPE_CHECKING:
    from ..config import Settings


# Planner techniques an evaluation can leave out (`Planner.from_settings(without=...)`), besides the repairs of
# `rules.REPAIRS`.
TECHNIQUES = {
    "ordered": "the plan's schema or grammar knows each task's place: task i can name only tasks before it",
    "retargeted-demos": "a demo's task types are matched to the table's types doing the same job",
    "fallback": "when a plan and its repair fail, one task of a type that fits the request's files",
    "last-resort": "when that task's arguments fail too, its type on the request's own inputs",
    "asked-media": "an empty plan for a request that asks for an image, audio or video goes to the repair",
}


def check_without(names: Collection[str]) -> None:
    """ValueError naming what in `names` is neither a technique (`TECHNIQUES`) nor a repair (`REPAIRS`)."""
    unknown = sorted(set(names) - set(TECHNIQUES) - set(REPAIRS))
    if unknown:
        known = ", ".join([*TECHNIQUES, *REPAIRS])
        raise ValueError(f"nothing to leave out named {', '.join(unknown)}; known: {known}")


class Planner:
    """Stage 1. The system prompt and the fixed demos come first and never change within a process, so backends that
    cache the prompt prefix (llama.cpp) only process what follows: demos retrieved from `bank` for this request (the
    `retrieve` most similar), the history and the request.

    Demos are fitted to the table: a demo using a task type the table lacks is left out, and parameters the table's
    task types do not take are dropped. `typed=True` constrains each task's args to its own keys (`plan_schema`).
    A plan that fails validation, or an empty plan for a request that asks for an image, audio or video
    (`asked_media`), gets one repair request; if that fails too, `salvage=True` keeps the valid tasks
    of the replies (`salvage_plan`) rather than failing the whole request. With nothing valid to keep,
    `fallback=True` asks for one task of a type that fits the request's files (`fallback_constraint`), and if that
    task's arguments fail too, runs its type on the request's own inputs (`request_plan`).
    """

    def __init__(
        self,
        llm: LLM,
        table: TaskTable,
        *,
        demos: list[dict[str, Any]] | None = None,
        bank: DemoBank | None = None,
        retrieve: int = 4,
        history_tokens: int = 1024,
        max_tasks: int = MAX_TASKS,
        repair: bool = True,
        salvage: bool = True,
        typed: bool = True,
        steps: bool = True,
        deps: bool = True,
        ordered: bool = True,
        matcher: TypeMatcher | None = None,
        fallback: bool = True,
        last_resort: bool = True,
        asked_media: bool = True,
        syntax: str = "json",
        repairs: Collection[str] = tuple(REPAIRS),
    ) -> None:
        self.llm = llm
        self.table = table
        self.history_tokens = history_tokens
        self.max_tasks = max_tasks
        self.repair = repair
        self.salvage = salvage
        all_demos = load_demos() if demos is None else demos
        self.demos = fit_demos(all_demos, table, matcher)
        self.bank = bank.fit(table, matcher) if bank is not None else None
        self.fallback = fallback
        self.last_resort = last_resort
        self.asked_media = asked_media
        self.repairs = tuple(repairs)
        # the types that edit their input: the table's flags, and for a foreign table those matched to ours
        self.editors = matcher.editors() if matcher is not None and "edited-input" in self.repairs else None
        check_repairs(self.repairs)  # an unknown repair's name fails here, not at the first plan
        self.retrieve = retrieve
        self.steps = steps
        shown = [*self.demos, *(self.bank.demos if self.bank is not None else [])]
        self.example_files = {
            v for d in shown for t in d["tasks"] for k, v in t["args"].items() if media_kind(v) is not None
        }
        self.syntax = syntax_for(syntax, llm, table, typed=typed, steps=steps, deps=deps, ordered=ordered)
        self._writes_deps = deps and self.syntax.name == "json"  # code names its inputs by variable instead
        # Where the syntax binds no files, one constraint (and one for repairs) serves every request.
        self._unbound = {
            repair: self.syntax.constraint(table, max_tasks, at_least_one=repair) for repair in (False, True)
        }

    def constraint(self, mentioned: str | None = None, *, repair: bool = False) -> dict[str, Any]:
        """The constraint (`json_schema` or `grammar`, as `LLM.complete` takes it) of a plan for a conversation
        that reads `mentioned` (history and request; None: any). Where the syntax can (code), an image, audio or
        video argument names only the files and URLs the conversation names, or an earlier task's output. A repair
        (`repair`) fixes the plan it is shown: it may not give up and answer with no tasks at all."""
        if mentioned is None or not self.syntax.binds_files:
            return self._unbound[repair]
        return self.syntax.constraint(self.table, self.max_tasks, at_least_one=repair, files=named_media(mentioned))

    @classmethod
    def from_settings(cls, llm: LLM, table: TaskTable, settings: Settings, *, without: Collection[str] = ()) -> Planner:
        """The planner the settings ask for: their history budget, and `plan_retrieved_demos` demos retrieved
        from the shipped bank (`prompts/demo_bank.json`, by word overlap) on top of the fixed ones. `without`:
        techniques (`TECHNIQUES`) and repairs (`rules.REPAIRS`) to leave out, to measure what each does."""
        check_without(without)
        retrieve = settings.plan_retrieved_demos
        bank = DemoBank(load_bank()) if retrieve else None
        matcher = None
        if "retargeted-demos" not in without:
            embedder = SentenceEmbedder(threads=settings.expert_threads)
            matcher = TypeMatcher(DEFAULT_TASK_TYPES, table, embedder) if embedder.available else None
        return cls(
            llm,
            table,
            history_tokens=settings.history_tokens,
            bank=bank,
            retrieve=retrieve,
            matcher=matcher,
            syntax=settings.plan_syntax,
            ordered="ordered" not in without,
            fallback="fallback" not in without,
            last_resort="last-resort" not in without,
            asked_media="asked-media" not in without,
            repairs=[name for name in REPAIRS if name not in without],
        )

    def fallback_constraint(self, mentioned: str) -> dict[str, Any]:
        """The last resort when a plan and its repair both fail: the constraint (`json_schema` or `grammar`, as
        `LLM.complete` takes it) of one task that uses only the
        request's inputs (no `<resource>-N` in any argument), of a task type whose files are of kinds the request
        (`mentioned`) names and that reads one of them (a photo named: a task that reads images; no file named: a
        task that needs none), where the table has one."""
        kinds = set(named_files(mentioned).values())
        fits = [
            t.name
            for t in self.table
            if _media_inputs(t) <= kinds and (not kinds or kinds & {arg_modality(k) or "text" for k in t.inputs})
        ]
        table = self.table.subset(fits) if fits else self.table
        return self.syntax.constraint(table, 1, at_least_one=True, literal=True, files=named_media(mentioned))

    def select_demos(self, request: str, history: Sequence[Message] = ()) -> list[dict[str, Any]]:
        """The demos for this request: the fixed ones, then those retrieved for it (most similar last). Demos with
        a chat history come last, and only when the request has a history too."""
        demos = list(self.demos)
        if self.bank is not None and self.retrieve > 0:
            fixed = {d["request"] for d in demos}
            picked = [d for d in self.bank.select(request, self.retrieve + len(fixed)) if d["request"] not in fixed]
            demos += picked[-self.retrieve :]
        plain = [d for d in demos if not d.get("history")]
        return plain + [d for d in demos if d.get("history")] if history else plain

    def prefix(self) -> list[Message]:
        """The fixed start of every planning prompt `messages` builds: the system prompt and the fixed demos without
        a history (those with one, and retrieved demos, come later), the same for every request and history."""
        messages = [Message(role="system", content=self._system())]
        for demo in self.demos:
            if not demo.get("history"):
                messages.append(Message(role="user", content=demo["request"]))
                messages.append(Message(role="assistant", content=self.syntax.show(self._shown(demo["tasks"]))))
        return messages

    def _system(self) -> str:
        names = getattr(self.syntax, "identifiers", {})
        task_types = [(names.get(t.name, t.name), t) for t in self.table]
        syntax = self.syntax.name
        return render("planning.j2", task_types=task_types, steps=self.steps, deps=self._writes_deps, syntax=syntax)

    def messages(self, request: str, history: Sequence[Message] = ()) -> list[Message]:
        messages = [Message(role="system", content=self._system())]
        for demo in self.select_demos(request, history):
            for turn in demo.get("history", []):
                messages.append(Message(**turn))
            messages.append(Message(role="user", content=demo["request"]))
            messages.append(Message(role="assistant", content=self.syntax.show(self._shown(demo["tasks"]))))
        messages.extend(trim_history(history, self.history_tokens))
        messages.append(Message(role="user", content=request))
        return messages

    def _shown(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Demo tasks as the model must write them: with `step` first when steps are on, with `dep` when deps are
        on, without them otherwise."""
        left_out = {"step"} | (set() if self._writes_deps else {"dep"})
        shown = [{k: v for k, v in t.items() if k not in left_out} for t in tasks]
        if not self.steps:
            return shown
        return [{"step": t.get("step", t["task"]), **rest} for t, rest in zip(tasks, shown, strict=True)]

    async def plan(
        self,
        request: str,
        history: Sequence[Message] = (),
        on_task: Callable[[Task], None] | None = None,
        llm: LLM | None = None,
        exists: Callable[[str], bool] | None = None,
        adapt: Callable[[Any], Any] | None = None,
    ) -> Plan:
        """Plan `request`. `on_task` gets each validated task while the reply streams; if the final plan differs
        from what was streamed (a repair was needed), the caller must compare `plan.tasks` with what it saw.
        `adapt` turns each reply's JSON into our format before it is checked (see `parse_plan`); a task that
        streams is passed to it as a list of one task."""
        llm = llm or self.llm
        messages = self.messages(request, history)
        mentioned = "\n".join([*(m.content for m in history), request])
        context: dict[str, Any] = {
            "example_files": self.example_files,
            "mentioned": mentioned,
            "exists": exists,
            "repairs": self.repairs,
            "wanted": wanted_kinds(mentioned),
            "editors": self.editors,
        }
        stream = self.syntax.stream()
        builder = PlanBuilder(self.table, self.max_tasks, **context)
        streaming_ok = on_task is not None

        def on_delta(delta: str | None) -> None:
            """Feed `delta`, or (None) the end of the reply."""
            nonlocal streaming_ok
            if not streaming_ok:
                return
            ready = stream.feed(delta) if delta is not None else stream.close()
            for raw in ready:
                try:
                    new = builder.add(raw if adapt is None else adapt([raw])[0])
                except PlanError:
                    streaming_ok = False
                    return
                for task in new:
                    on_task(task)

        completion = await llm.complete(
            messages, **self.constraint(mentioned), max_tokens=1024, on_delta=on_delta if on_task else None
        )
        read = self.syntax.read
        try:
            if completion.finish_reason == "length":
                raise PlanError("the plan was cut off at the token limit")
            if on_task is not None:
                on_delta(None)
            plan = parse_plan(completion.text, self.table, self.max_tasks, adapt=adapt, read=read, **context)
            if not plan.tasks and self.asked_media and (asked := requested_kinds(request) & set(MEDIA)):
                kinds = " and ".join(sorted(asked))
                raise PlanError(f"the request asks for {kinds}, but the plan has no task; plan the task that makes it")
            return plan
        except PlanError as first:
            if not self.repair:
                raise
            error = first
        fix = [
            *messages,
            Message(role="assistant", content=completion.text[:4000]),
            Message(role="user", content=render("repair.j2", error=str(error), syntax=self.syntax.name)),
        ]
        try:
            repaired = await llm.complete(fix, **self.constraint(mentioned, repair=True), max_tokens=1024)
        except LLMError:
            raise error from None
        second: PlanError | None = None
        try:
            if repaired.finish_reason == "length":
                raise PlanError("the repaired plan was cut off at the token limit")
            fixed = parse_plan(repaired.text, self.table, self.max_tasks, adapt=adapt, read=read, **context)
        except PlanError as exc:
            second = exc
        else:
            if fixed.tasks or not self.salvage:
                return fixed
        if self.salvage:  # the repair failed or dropped every task: keep what was valid
            for reply in (repaired, completion):
                partial = salvage_plan(reply.text, self.table, self.max_tasks, adapt=adapt, read=read, **context)
                if partial.tasks:
                    return partial
        if second is None:
            return fixed
        last = ""
        if self.fallback:
            single = None
            try:
                constraint = self.fallback_constraint(mentioned)
                single = await llm.complete(messages, **constraint, max_tokens=512)
                if single.finish_reason == "length":
                    raise PlanError("it was cut off at the token limit")
                return parse_plan(single.text, self.table, self.max_tasks, adapt=adapt, read=read, **context)
            except (LLMError, PlanError) as exc:
                last = f"; nor a single task: {exc}"
            if self.last_resort and single is not None and single.finish_reason != "length":
                try:  # its task type, on the request's own inputs
                    return request_plan(
                        single.text, request, self.table, self.max_tasks, adapt=adapt, read=read, **context
                    )
                except PlanError as exc:
                    last += f"; nor that task on the request's own inputs: {exc}"
        raise PlanError(f"{error} (and the repair attempt failed: {second}{last})") from None


def _media_inputs(task_type: TaskType) -> set[str]:
    return {m for key in task_type.inputs if (m := arg_modality(key)) in MEDIA}


def plan_to_json(tasks: Iterable[Task]) -> list[dict[str, Any]]:
    return [task.model_dump() for task in tasks]
