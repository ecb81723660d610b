"""Runs in progress: each drives the shared pipeline in its own task, publishes its events to any number of
followers, registers artifacts as files, and persists its outcome. Cancelling a run stops only that run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from ..account import split_answer
from ..errors import HuggingGPTError
from ..llm.protocol import Message
from ..pipeline import HuggingGPT
from ..types import Artifact
from .auth import KeyLimiter
from .files import PublicView, Spaces, is_artifact, new_id
from .store import RunStatus, Store

log = logging.getLogger("hugginggpt.server")
# a run whose end could not be recorded (a full disk) is tried again after this, then twice as long each time
RECORD_RETRY_SECONDS = 1.0


class TooManyRuns(HuggingGPTError):
    """A key already has as many runs going as it may."""


class Run:
    """One request being answered. `events` are public dicts `{seq, type, data}`: first `run.start`, then the
    pipeline's events (`plan.task`, `selection`, `task.start`, `task.end`, `answer.token`, `answer.done`, `error`),
    last `run.end` with the final status."""

    def __init__(self, run_id: str, conversation_id: str, key_id: str, request: str) -> None:
        self.id = run_id
        self.conversation_id = conversation_id
        self.key_id = key_id
        self.request = request
        self.status: RunStatus = "running"
        self.answer: dict[str, Any] | None = None
        self.error: str | None = None
        self.events: list[dict[str, Any]] = []
        self.finished = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def append(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append({"seq": len(self.events), "type": kind, "data": data})
        self._wake.set()
        self._wake = asyncio.Event()

    async def follow(self, after: int = -1) -> AsyncIterator[dict[str, Any]]:
        """Every event with `seq > after`, then the live ones as they come, until the run ends."""
        index = after + 1
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.finished.is_set():
                return
            await self._wake.wait()

    def end(self) -> None:
        self.finished.set()
        self._wake.set()

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def wait(self) -> None:
        await self.finished.wait()


class RunManager:
    """Starts runs on the one shared pipeline (so they share its expert pool) and keeps the live ones."""

    def __init__(self, gpt: HuggingGPT, store: Store, spaces: Spaces, limiter: KeyLimiter) -> None:
        self.gpt = gpt
        self.store = store
        self.spaces = spaces
        self.limiter = limiter
        self._live: dict[str, Run] = {}
        self._recording: set[asyncio.Task[None]] = set()
        self._retrying: set[asyncio.Task[None]] = set()  # runs ended but not yet recorded (`_record_later`)

    def live(self, run_id: str, key_id: str) -> Run | None:
        run = self._live.get(run_id)
        return run if run is not None and run.key_id == key_id else None

    async def history(self, conversation_id: str) -> list[Message]:
        rows = await self.store.messages(conversation_id)
        return [Message(role=r.role, content=r.content) for r in rows if r.role in ("user", "assistant")]

    async def start(self, conversation_id: str, key_id: str, request: str) -> Run:
        """Start answering `request` in a conversation the caller owns. Raises TooManyRuns at the key's limit."""
        if not self.limiter.try_acquire(key_id):
            raise TooManyRuns(
                f"this API key already has {self.limiter.max_runs} runs in progress; wait for one to finish"
            )
        try:
            run = Run(new_id("run"), conversation_id, key_id, request)
            history = await self.history(conversation_id)
            await self.store.start_run(run.id, conversation_id, key_id, request)
        except BaseException:
            self.limiter.release(key_id)
            raise
        run.append("run.start", {"run_id": run.id, "conversation_id": conversation_id, "request": request})
        self._live[run.id] = run
        run.task = asyncio.create_task(self._drive(run, history), name=run.id)
        run.task.add_done_callback(lambda _: self._never_started(run))
        return run

    def _never_started(self, run: Run) -> None:
        """A run cancelled before its first step never enters `_drive`: record its end here instead."""
        if run.finished.is_set():
            return
        run.error = "cancelled before it started"
        recording = asyncio.get_running_loop().create_task(self._finish(run, "cancelled"))
        self._recording.add(recording)
        recording.add_done_callback(self._recording.discard)

    async def close(self) -> None:
        """Cancel every live run (server shutdown) and wait until each has recorded how it ended (a run still not
        recorded after one last try is marked interrupted when the store opens next)."""
        runs = list(self._live.values())
        for run in runs:
            run.cancel()
        for run in runs:
            await run.wait()
        unrecorded = list(self._live.values())
        for retry in list(self._retrying):
            retry.cancel()
        for run in unrecorded:
            with contextlib.suppress(Exception):
                await self._record(run)

    async def _drive(self, run: Run, history: list[Message]) -> None:
        folder = self.spaces.folder(run.conversation_id)
        view = PublicView(folder, {})
        status: RunStatus = "failed"
        cancelled = False
        try:
            inputs = self.spaces.inputs(run.conversation_id)
            events = self.gpt.stream(
                run.request, history=history, inputs=inputs, output_dir=self.spaces.outputs(run.conversation_id)
            )
            async with aclosing(events):
                async for event in events:
                    data = event.model_dump(mode="json")["data"]
                    if event.type == "answer.token":
                        data = {"text": view.feed(data.get("text", ""))}
                        if data["text"]:
                            run.append(event.type, data)
                        continue
                    if event.type == "task.end":
                        await self._register(run, data.get("outputs", {}).values(), view)
                    elif event.type == "answer.done":
                        if rest := view.flush():
                            run.append("answer.token", {"text": rest})
                        answer = data["answer"]
                        outputs = [v for r in answer.get("results", []) for v in r.get("outputs", {}).values()]
                        await self._register(run, outputs, view)
                        run.answer = view(answer)
                        data = {"answer": run.answer}
                    run.append(event.type, data if event.type == "answer.done" else view(data))
            if run.answer is None:
                run.error = "the pipeline ended without an answer"
            else:
                status = "done"
        except asyncio.CancelledError:
            cancelled = True
            status = "cancelled"
            run.error = "cancelled"
        except Exception as exc:  # a bug in an expert or backend must end this run only, saying what happened
            log.exception("run %s failed", run.id)
            run.error = f"{type(exc).__name__}: {view.text(str(exc))}"
            run.append("error", {"stage": "server", "message": run.error})
        finally:
            await self._finish(run, status)
        if cancelled:
            raise asyncio.CancelledError

    async def _register(self, run: Run, values: Any, view: PublicView) -> None:
        for value in values:
            if not is_artifact(value) or value["path"] in view.artifacts:
                continue
            try:
                artifact = Artifact.model_validate(value)
                row = self.spaces.file_row(
                    run.conversation_id, run.key_id, "artifact", Path(artifact.path), run_id=run.id, artifact=artifact
                )
            except (ValueError, OSError) as exc:
                log.warning("run %s: artifact not served: %s", run.id, exc)
                continue
            await self.store.add_file(row)
            view.artifacts[artifact.path] = row

    async def _finish(self, run: Run, status: RunStatus) -> None:
        run.status = status
        retrying = False
        try:
            run.append("run.end", {"run_id": run.id, "status": status, "error": run.error})
            await self._record(run)
        except Exception as exc:
            # (a full disk): the run stays live, so it is still served as it ended, until a later try records it
            log.warning("run %s: could not record its end (%s); trying again", run.id, exc)
            retry = asyncio.get_running_loop().create_task(self._record_later(run), name=f"record-{run.id}")
            self._retrying.add(retry)
            retry.add_done_callback(self._retrying.discard)
            retrying = True
        finally:
            if not retrying:
                self._live.pop(run.id, None)
            self.limiter.release(run.key_id)
            run.end()

    async def _record(self, run: Run) -> None:
        await self.store.finish_run(
            run.id, run.status, answer=run.answer, events=run.events, error=run.error, reply=_assistant_text(run)
        )

    async def _record_later(self, run: Run) -> None:
        delay = RECORD_RETRY_SECONDS
        try:
            while True:
                await asyncio.sleep(delay)
                try:
                    await self._record(run)
                    log.info("run %s: its end is recorded now", run.id)
                    return
                except Exception:
                    delay = min(delay * 2, 30.0)
        finally:
            self._live.pop(run.id, None)


def _assistant_text(run: Run) -> str:
    """What later turns see of this one: the answer and the names of the files it made (relative to the
    conversation folder, so a follow-up can name them as inputs)."""
    if run.answer is None:
        return f"(this request did not finish: {run.error or run.status})"
    files = [
        artifact["name"]
        for result in run.answer.get("results", [])
        for artifact in result.get("outputs", {}).values()
        if isinstance(artifact, dict) and "file_id" in artifact
    ]
    text = split_answer(run.answer.get("text", ""))[0]  # the direct answer, without the rendered account
    return text + (f"\nFiles: {', '.join(files)}" if files else "")
