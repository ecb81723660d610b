import asyncio
import hashlib
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import ColourExpert, CrashExpert, DrawExpert, HangExpert, SleepExpert, card, write_png
from hugginggpt.execution import LocalExecutor, Scheduler
from hugginggpt.experts.protocol import LocalExpert
from hugginggpt.experts.registry import ExpertRegistry
from hugginggpt.jobs import Job, JobResult
from hugginggpt.types import Artifact, Selection, Task
from hugginggpt.workspace import Workspace


def first_expert(registry):
    """A `choose` that picks the first expert of the task's type, or none (saying so)."""

    async def choose(task):
        card = next((c for c in registry.cards() if c.task == task.task), None)
        if card is None:
            return Selection(task_id=task.id, model_id=None, reason=f"no available model for {task.task}", strategy="")
        return Selection(task_id=task.id, model_id=card.id, reason="", strategy="test", backend=card.backend)

    return choose


def make_scheduler(tmp_path, experts, *, timeout=5.0, concurrency=4, events=None, executor=None):
    registry = ExpertRegistry(experts)
    inputs = tmp_path / "in"
    inputs.mkdir(exist_ok=True)
    return Scheduler(
        executor=executor or LocalExecutor(registry, concurrency),
        workspace=Workspace(tmp_path / "out", [inputs]),
        choose=first_expert(registry),
        emit=(events.append if events is not None else lambda e: None),
        timeout=timeout,
    )


async def test_independent_tasks_run_in_parallel(tmp_path):
    a, b = SleepExpert("summarization", "m/a"), SleepExpert("translation", "m/b")
    events = []
    scheduler = make_scheduler(tmp_path, [a, b], events=events)
    scheduler.add(Task(id=0, task="summarization", args={"text": "x"}))
    scheduler.add(Task(id=1, task="translation", args={"text": "y"}))
    results = await scheduler.wait()
    assert [r.status for r in results] == ["ok", "ok"]
    (start_a, end_a), (start_b, end_b) = a.intervals[0], b.intervals[0]
    assert start_a < end_b and start_b < end_a  # the run intervals overlap
    starts = [e for e in events if e.type == "task.start"]
    ends = [e for e in events if e.type == "task.end"]
    assert events.index(starts[1]) < events.index(ends[0])  # both started before either finished


async def test_concurrency_bound_serialises_when_one_slot(tmp_path):
    a, b = SleepExpert("summarization", "m/a", 0.05), SleepExpert("translation", "m/b", 0.05)
    scheduler = make_scheduler(tmp_path, [a, b], concurrency=1)
    scheduler.add(Task(id=0, task="summarization", args={"text": "x"}))
    scheduler.add(Task(id=1, task="translation", args={"text": "y"}))
    await scheduler.wait()
    first, second = sorted([a.intervals[0], b.intervals[0]])
    assert first[1] <= second[0]


async def test_dependent_starts_after_its_dependency_with_its_output(tmp_path):
    events = []
    scheduler = make_scheduler(tmp_path, [DrawExpert(), ColourExpert()], events=events)
    scheduler.add(Task(id=0, task="text-to-image", args={"text": "a red square"}))
    scheduler.add(Task(id=1, task="image-classification", dep=[0], args={"image": "<resource>-0"}))
    draw, classify = await scheduler.wait()
    assert draw.status == classify.status == "ok"
    assert classify.args["image"] == draw.outputs["image"].path
    assert classify.outputs["json"]["size"] == [160, 80]  # it read the image task 0 drew
    order = [(e.type, e.data["task_id"]) for e in events]
    assert order.index(("task.end", 0)) < order.index(("task.start", 1))


async def test_text_placeholder_is_replaced_by_the_text_output(tmp_path):
    echo = SleepExpert("summarization", "m/echo", 0)
    speak = SleepExpert("translation", "m/tr", 0)
    scheduler = make_scheduler(tmp_path, [echo, speak])
    scheduler.add(Task(id=0, task="summarization", args={"text": "cats"}))
    scheduler.add(Task(id=1, task="translation", dep=[0], args={"text": "Say: <resource>-0!"}))
    _, second = await scheduler.wait()
    assert second.args["text"] == "Say: summarization: cats!"


async def test_missing_output_modality_fails_clearly(tmp_path):
    scheduler = make_scheduler(tmp_path, [SleepExpert("summarization", "m/s", 0), ColourExpert()])
    scheduler.add(Task(id=0, task="summarization", args={"text": "x"}))
    scheduler.add(Task(id=1, task="image-classification", dep=[0], args={"image": "<resource>-0"}))
    _, second = await scheduler.wait()
    assert second.status == "failed"
    assert second.error == "task 0 produced no image for 'image' (it produced text)"


async def test_crash_marks_dependents_skipped_and_others_still_run(tmp_path):
    scheduler = make_scheduler(
        tmp_path, [CrashExpert("text-to-image"), ColourExpert(), SleepExpert("summarization", "m", 0)]
    )
    scheduler.add(Task(id=0, task="text-to-image", args={"text": "x"}))
    scheduler.add(Task(id=1, task="image-classification", dep=[0], args={"image": "<resource>-0"}))
    scheduler.add(Task(id=2, task="summarization", args={"text": "independent"}))
    crash, dependent, other = await scheduler.wait()
    assert crash.status == "failed" and crash.error == "RuntimeError: model exploded"
    assert dependent.status == "skipped"
    assert dependent.error == "task 0 (text-to-image) failed: RuntimeError: model exploded"
    assert other.status == "ok"


async def test_hung_expert_times_out(tmp_path):
    hang = HangExpert("summarization")
    scheduler = make_scheduler(tmp_path, [hang, SleepExpert("translation", "m", 0)], timeout=0.2)
    scheduler.add(Task(id=0, task="summarization", args={"text": "x"}))
    scheduler.add(Task(id=1, task="translation", dep=[0], args={"text": "<resource>-0"}))
    first, second = await scheduler.wait()
    hang.release.set()
    assert first.status == "timeout" and "longer than 0.2 s" in first.error
    assert second.status == "skipped" and "timeout" in second.error


async def test_no_available_model_fails_the_task(tmp_path):
    scheduler = make_scheduler(tmp_path, [])
    scheduler.add(Task(id=0, task="depth-estimation", args={"image": "a.jpg"}))
    (result,) = await scheduler.wait()
    assert result.status == "failed" and result.error == "no available model for depth-estimation"


async def test_input_files_are_confined_to_the_input_roots(tmp_path):
    scheduler = make_scheduler(tmp_path, [ColourExpert()])
    write_png(tmp_path / "in" / "blue.png", "blue")
    (tmp_path / "outside.png").write_bytes(b"")
    scheduler.add(Task(id=0, task="image-classification", args={"image": "blue.png"}))
    scheduler.add(Task(id=1, task="image-classification", args={"image": "../outside.png"}))
    scheduler.add(Task(id=2, task="image-classification", args={"image": "missing.png"}))
    ok, outside, missing = await scheduler.wait()
    assert ok.outputs["text"] == "blue"
    assert outside.status == "failed" and "outside the allowed input folders" in outside.error
    assert missing.status == "failed" and "not found" in missing.error


async def test_tasks_can_be_added_while_others_run(tmp_path):
    slow = SleepExpert("summarization", "m/s", 0.1)
    scheduler = make_scheduler(tmp_path, [slow, SleepExpert("translation", "m/t", 0)])
    scheduler.add(Task(id=0, task="summarization", args={"text": "x"}))
    await asyncio.sleep(0.02)
    scheduler.add(Task(id=1, task="translation", dep=[0], args={"text": "<resource>-0"}))
    results = await scheduler.wait()
    assert [r.status for r in results] == ["ok", "ok"]
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.add(Task(id=2, task="translation", args={"text": "late"}))


async def test_unknown_dependency_is_refused(tmp_path):
    scheduler = make_scheduler(tmp_path, [])
    with pytest.raises(ValueError, match="unknown task"):
        scheduler.add(Task(id=1, task="translation", dep=[0], args={"text": "<resource>-0"}))


async def test_cancel_stops_running_tasks(tmp_path):
    slow = SleepExpert("summarization", "m/s", 5)
    scheduler = make_scheduler(tmp_path, [slow])
    scheduler.add(Task(id=0, task="summarization", args={"text": "x"}))
    await asyncio.sleep(0.05)
    await scheduler.cancel()
    assert scheduler.results[0].status == "failed" and scheduler.results[0].error == "cancelled"


# --- text documents named in a text argument ---------------------------------------------------------------------


async def test_a_text_argument_naming_a_document_gets_its_content(tmp_path):
    summariser = SleepExpert("summarization", "m/sum", 0)
    scheduler = make_scheduler(tmp_path, [summariser])
    (tmp_path / "in" / "notes.md").write_text("# Notes\nThe meeting moved to Friday.", encoding="utf-8")
    scheduler.add(Task(id=0, task="summarization", args={"text": "notes.md"}))
    scheduler.add(Task(id=1, task="summarization", args={"text": "'notes.md'"}))
    results = await scheduler.wait()
    assert [r.status for r in results] == ["ok", "ok"]
    assert results[0].outputs["text"] == "summarization: # Notes\nThe meeting moved to Friday."
    assert results[0].args["text"].startswith("# Notes")  # the task records what the expert was given


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("big.txt", "word " * 5000, "big.txt is 25,000 bytes; a text input may be at most 20,000"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "latin1.txt is not UTF-8 text"),
        ("empty.csv", "  \n", "empty.csv is empty"),
        ("report.pdf", b"%PDF-1.4", "report.pdf cannot be read as text: only .csv, .json, .md, .txt documents can"),
        ("missing.txt", None, "input file 'missing.txt' not found"),
        ("../secret.txt", None, "'../secret.txt' is outside the allowed input folders"),
    ],
)
async def test_a_bad_text_document_fails_its_task_with_the_reason(tmp_path, name, content, reason):
    scheduler = make_scheduler(tmp_path, [SleepExpert("summarization", "m/sum", 0)])
    (tmp_path / "secret.txt").write_text("not yours")
    if content is not None:
        path = tmp_path / "in" / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    scheduler.add(Task(id=0, task="summarization", args={"text": name}))
    (result,) = await scheduler.wait()
    assert result.status == "failed" and reason in result.error


# --- jobs: plain data, whatever runs them ------------------------------------------------------------------------


class Travelling:
    """An executor whose jobs and results cross a boundary as a distributed one's would: each job goes as JSON to a
    worker with experts of its own (the scheduler never sees them), and its result comes back as JSON."""

    def __init__(self, experts):
        self.worker = LocalExecutor(ExpertRegistry(experts))
        self.jobs: list[Job] = []

    async def run(self, job, store):
        sent = Job.model_validate_json(job.model_dump_json())
        assert sent == job and pickle.loads(pickle.dumps(job)) == job
        self.jobs.append(sent)
        result = await self.worker.run(sent, store)
        return JobResult.model_validate_json(result.model_dump_json())


async def test_jobs_carry_files_as_references_and_results_come_back_as_data(tmp_path):
    travelling = Travelling([DrawExpert(), ColourExpert()])
    scheduler = make_scheduler(tmp_path, [DrawExpert(), ColourExpert()], executor=travelling)
    photo = write_png(tmp_path / "in" / "blue.png", "blue")
    scheduler.add(Task(id=0, task="text-to-image", args={"text": "a red square"}))
    scheduler.add(Task(id=1, task="image-classification", dep=[0], args={"image": "<resource>-0"}))
    scheduler.add(Task(id=2, task="image-classification", args={"image": "blue.png"}))
    draw, classify, given = await scheduler.wait()
    assert [r.status for r in (draw, classify, given)] == ["ok", "ok", "ok"]
    jobs = {job.task_id: job for job in travelling.jobs}
    assert jobs[0].args == {"text": "a red square"} and (jobs[0].model_id, jobs[0].backend) == ("test/draw", "embedded")
    assert jobs[0].timeout == 5.0
    assert jobs[1].args["image"] == draw.outputs["image"]  # the dependency's output, as its reference
    ref = jobs[2].args["image"]
    assert isinstance(ref, Artifact) and ref.modality == "image" and ref.media_type == "image/png"
    assert ref.sha256 == hashlib.sha256(photo.read_bytes()).hexdigest() and ref.path == str(photo.resolve())
    assert isinstance(draw.outputs["image"], Artifact) and classify.outputs["json"]["size"] == [160, 80]
    assert given.outputs["text"] == "blue" and given.args == {"image": str(photo.resolve())}  # recorded as a path


async def test_the_executor_says_when_no_backend_can_run_the_chosen_model(tmp_path):
    async def choose(task):
        return Selection(task_id=task.id, model_id="gone/model", reason="", strategy="test")

    scheduler = make_scheduler(tmp_path, [])
    scheduler.choose = choose
    scheduler.add(Task(id=0, task="summarization", args={"text": "x"}))
    (result,) = await scheduler.wait()
    assert result.status == "failed" and result.model_id == "gone/model"
    assert result.error == "model gone/model is in the catalogue but no backend can run it"


class _Stuck(LocalExpert):
    """A model that hangs in `predict` until released; counts the calls that reached it."""

    def __init__(self) -> None:
        super().__init__(card("summarization", "test/stuck"))
        self.release = threading.Event()
        self.calls = 0

    def predict(self, args, ctx):
        self.calls += 1
        self.release.wait(10)
        return {"text": "late"}


async def test_calls_queued_behind_a_hung_model_leave_when_their_callers_give_up(tmp_path):
    # a hung model's thread cannot be stopped and keeps its lock; what waits behind it must not pile up
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
    stuck = _Stuck()
    scheduler = make_scheduler(tmp_path, [stuck], timeout=0.2)
    try:
        scheduler.add(Task(id=0, task="summarization", args={"text": "x"}))
        scheduler.add(Task(id=1, task="summarization", args={"text": "y"}))
        results = await scheduler.wait()
        assert [r.status for r in results] == ["timeout", "timeout"]
        # the hung call holds one of the two worker threads; the call queued behind it gave its thread back
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 2) == "free"
    finally:
        stuck.release.set()
    await asyncio.sleep(0.3)
    assert stuck.calls == 1  # the queued call never ran later, for a task that had timed out
