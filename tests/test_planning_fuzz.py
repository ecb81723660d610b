"""Property tests (Hypothesis) over the plan parser, validator and repair: arbitrary JSON, arbitrary text and
near-valid plans never crash them; a reply is either a valid plan or a `PlanError` with a short, clear message."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hugginggpt.errors import PlanError
from hugginggpt.jsontext import ArrayElementStream, JSONNotFound, extract_json
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.planning.planner import Planner
from hugginggpt.planning.references import file_kind, normalize_placeholders, references
from hugginggpt.planning.rules import MAX_TASKS, PlanBuilder, parse_plan, salvage_plan, validate_plan
from hugginggpt.planning.schema import plan_schema
from hugginggpt.tasks import TaskTable
from hugginggpt.types import Plan, arg_modality

TABLE = TaskTable()
NAMES = TABLE.names()
# Examples per property: FUZZ_EXAMPLES=4000 for a deeper run than the suite's.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A clear message: one short paragraph that names the problem, not a traceback or a dump of the reply.
MAX_MESSAGE = 1000

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)

# Strings a planner really writes, and the near misses: placeholders in every spelling, file names and URLs,
# traversal, unicode digits, huge and negative numbers.
arg_strings = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "<resource>-0",
            "<resource>-1",
            "<resource>-2",
            "<resource>-7",
            "<GENERATED>-1",
            "<resource-3>",
            "<node-1>",
            "<resource>",
            "<resource>--1",
            "<resource>-٣",  # an Arabic-Indic digit
            "<resource>-" + "9" * 5000,  # more digits than int() converts by default
            "<resource>-0, <resource>-1",
            "<resource>-0 and b.jpg",
            "a.jpg",
            "a.jpg, b.png",
            "photo.JPG",
            "clip.wav",
            "movie.mp4",
            "notes.txt",
            "https://example.com/x.png",
            "file:///etc/passwd",
            "../../etc/passwd",
            "/etc/shadow.png",
            "<a.jpg>",
            "",
            " ",
            "x" * 5000,
        ]
    ),
)
ids = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.integers(),
    st.sampled_from(["0", "1", " 2 ", "--5", "-1", "٣", "²", "9" * 5000, "1e3", "", None, True, 1.5, [0]]),
)


@st.composite
def near_valid_task(draw: st.DrawFn) -> dict[str, Any]:
    """A task as a planner writes it, with any part possibly wrong: the type, the id, a key, a value's type."""
    name = draw(
        st.one_of(
            st.sampled_from(NAMES),
            st.sampled_from([n.upper().replace("-", "_") for n in NAMES]),
            st.text(max_size=30),
            st.sampled_from(["", None, 3, ["image-to-text"]]),
        )
    )
    task_type = TABLE.resolve(name) if isinstance(name, str) else None
    keys = list(task_type.arg_keys) if task_type else ["text", "image"]
    chosen = draw(st.lists(st.sampled_from([*keys, "image_2", "Text", "unknown", "url"]), max_size=4, unique=True))
    value = st.one_of(arg_strings, arg_strings, st.lists(arg_strings, max_size=3), json_scalars, json_values)
    args: Any = {key: draw(value) for key in chosen}
    if draw(st.integers(0, 9)) == 0:
        args = draw(json_values)
    task: dict[str, Any] = {"task": name, "id": draw(ids), "dep": draw(st.lists(ids, max_size=3) | json_values)}
    task["args"] = args
    if draw(st.booleans()):
        task["step"] = draw(st.text(max_size=30) | json_scalars)
    for key in draw(st.lists(st.sampled_from(["task", "id", "dep", "args"]), max_size=1)):
        del task[key]
    return task


near_valid_plans = st.one_of(
    st.lists(near_valid_task(), max_size=MAX_TASKS + 2),
    st.lists(near_valid_task(), max_size=MAX_TASKS + 2).map(lambda tasks: {"tasks": tasks}),
    st.lists(near_valid_task(), max_size=4).map(lambda tasks: {"plan": tasks, "extra": 1}),
    near_valid_task(),
)


def _check_error(exc: PlanError, limit: int = MAX_MESSAGE) -> None:
    message = str(exc)
    assert message.strip(), "an empty PlanError"
    assert len(message) <= limit, f"a {len(message)}-character PlanError: {message[:200]}…"
    assert "Traceback" not in message


def _check_plan(plan: Plan, max_tasks: int = MAX_TASKS) -> None:
    """What a validated plan promises: known types and keys, unique ids, deps = earlier tasks its args name."""
    assert isinstance(plan, Plan)
    assert len(plan.tasks) <= max_tasks
    seen: set[int] = set()
    for task in plan.tasks:
        task_type = TABLE.get(task.task)
        assert task_type is not None, task.task
        assert task.id not in seen, f"duplicate id {task.id}"
        assert set(task.args) <= set(task_type.arg_keys)
        assert set(task_type.inputs) <= set(task.args)
        assert task.dep == sorted({n for value in task.args.values() for n in references(value)})
        assert set(task.dep) <= seen, f"task {task.id} depends on a task after it: {task.dep}"
        for key, value in task.args.items():
            if references(value):
                assert arg_modality(key) is not None, f"a parameter {key!r} holds a placeholder"
        seen.add(task.id)


def _validate(value: Any, **context: Any) -> Plan | None:
    try:
        plan = validate_plan(value, TABLE, **context)
    except PlanError as exc:
        _check_error(exc)
        return None
    _check_plan(plan)
    return plan


@FUZZ
@given(json_values)
def test_arbitrary_json_is_a_plan_or_a_plan_error(value):
    _validate(value)


@FUZZ
@given(near_valid_plans)
@example([{"task": "summarization", "id": "9" * 5000, "args": {"text": "hi"}}])
@example([{"task": "summarization", "id": "--5", "args": {"text": "hi"}}])
@example([{"task": "summarization", "id": "٣", "args": {"text": "hi"}}])
@example([{"task": "summarization", "id": "²", "args": {"text": "hi"}}])
@example([{"task": "x" * 5000, "id": 0, "args": {}}])
@example([{"task": "summarization", "id": 0, "args": {"y" * 5000: "hi"}}])
@example([{"task": "summarization", "id": 0, "args": {"text": "<resource>" + "x" * 5000}}])
@example([{"task": "image-to-text", "id": 0, "args": {"image": "<resource>-" + "9" * 5000}}])
@example({"tasks": [{"task": "summarization", "id": i, "args": {"text": f"<resource>-{i - 1}"}} for i in range(3000)]})
@example([{"task": "summarization", "id": 0, "args": {"text": "a"}}, {"task": "summarization", "id": 0, "args": {}}])
@example({"tasks": [{"task": "summarization", "id": i, "args": {"text": f"<resource>-{i + 1}"}} for i in range(3000)]})
def test_near_valid_plans_are_repaired_or_refused_clearly(value):
    _validate(value)
    _validate(value, mentioned="a.jpg b.png clip.wav movie.mp4 https://example.com/x.png", example_files={"b.png"})


def _out_of_order(items: list[Any]) -> bool:
    """Whether a raw task uses a task written after it (the whole reply is reordered; a stream cannot be)."""
    later: set[str] = set()
    for item in reversed(items):
        if not isinstance(item, dict):
            return False
        text = json.dumps(item.get("args", {}))
        if any(n in later for n in re.findall(r"<\s*(?:resource|generated)\s*>?\s*-\s*(\d+)", text, re.I)):
            return True
        later.add(str(item.get("id")).strip())
    return False


@FUZZ
@given(near_valid_plans)
@example(
    [
        {"task": "text-to-speech", "id": 1, "args": {"text": "<resource>-0"}},
        {"task": "summarization", "id": 0, "args": {"text": "hi"}},
    ]
)
def test_streaming_a_plan_task_by_task_agrees_with_validating_it_whole(value):
    """The pipeline adds tasks one by one while the reply streams: the same tasks come out as from the whole
    reply, or a refusal, where the whole reply is refused too unless it was only written out of order."""
    try:
        whole = validate_plan(value, TABLE)
    except PlanError:
        whole = None
    items = value.get("tasks", value.get("plan", [value])) if isinstance(value, dict) else value
    builder = PlanBuilder(TABLE)
    try:
        for item in items:
            builder.add(item)
    except PlanError as exc:
        _check_error(exc)
        assert whole is None or _out_of_order(items)
        return
    if whole is not None:  # the whole-reply check may also refuse a cycle the builder sees as a forward reference
        assert builder.plan() == whole


@FUZZ
@given(st.text(max_size=300) | json_values.map(json.dumps) | near_valid_plans.map(json.dumps))
def test_any_reply_text_parses_to_a_plan_or_a_plan_error_and_salvage_never_raises(text):
    for wrapped in (text, f"Sure! Here is the plan:\n```json\n{text}\n```\nDone.", text[: len(text) // 2]):
        try:
            plan = parse_plan(wrapped, TABLE)
        except PlanError as exc:
            _check_error(exc)
        else:
            _check_plan(plan)
        partial = salvage_plan(wrapped, TABLE)
        _check_plan(partial)
        assert all(m.strip() for m in partial.dropped)


@FUZZ
@given(st.text(max_size=300))
def test_extract_json_finds_a_container_or_says_there_is_none(text):
    try:
        value = extract_json(text)
    except JSONNotFound as exc:
        assert len(str(exc)) <= MAX_MESSAGE
    else:
        # a container, or the whole text when it is one JSON value (NaN too, which equals nothing)
        assert isinstance(value, (list, dict)) or json.dumps(json.loads(text.strip())) == json.dumps(value)


@FUZZ
@given(near_valid_plans.map(json.dumps), st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_the_task_stream_yields_the_same_objects_however_the_reply_is_cut(text, cuts):
    reply = '{"tasks": ' + text + "}"
    whole = ArrayElementStream().feed(reply)
    stream = ArrayElementStream()
    pieces, at = [], 0
    for size in cuts * (len(reply) // max(sum(cuts), 1) + 1):
        pieces.append(reply[at : at + size])
        at += size
    pieces.append(reply[at:])
    assert [obj for piece in pieces for obj in stream.feed(piece)] == whole
    assert all(isinstance(obj, dict) for obj in whole)


@FUZZ
@given(arg_strings | st.text(max_size=80))
def test_reference_helpers_never_raise_anything_but_a_plan_error(value):
    try:
        normalised = normalize_placeholders(value)
    except PlanError as exc:
        _check_error(exc)
    else:
        assert all(n >= 0 for n in references(normalised))
        assert re.search(r"<\s*generated\s*>", normalised, re.IGNORECASE) is None
    assert file_kind(value) in (None, "image", "audio", "video", "text")


@st.composite
def schema_plans(draw: st.DrawFn) -> dict[str, Any]:
    """Replies a decoder constrained by the typed plan schema can write: each task one branch of its `anyOf`,
    every field within its bounds (media arguments match `MEDIA_PATTERN`)."""
    schema = plan_schema(TABLE, typed=True, steps=True)
    branches = schema["properties"]["tasks"]["items"]["anyOf"]
    tasks = []
    for branch in draw(st.lists(st.sampled_from(branches), max_size=MAX_TASKS)):
        props = branch["properties"]
        args = {}
        for key, rule in props["args"]["properties"].items():
            if key in props["args"].get("required", []) or draw(st.booleans()):
                if "pattern" in rule:
                    args[key] = draw(st.from_regex(rule["pattern"], fullmatch=True) | arg_strings.filter(bool))
                else:
                    args[key] = draw(arg_strings | st.text(max_size=rule["maxLength"]))
        tasks.append(
            {
                "step": draw(st.text(max_size=120)),
                "task": props["task"]["enum"][0],
                "id": draw(st.integers(0, 99)),
                "dep": draw(st.lists(st.integers(0, 99), max_size=4)),
                "args": args,
            }
        )
    return {"tasks": tasks}


@FUZZ
@given(schema_plans())
def test_replies_under_the_plan_schema_never_crash_the_rules(value):
    _validate(value)
    _validate(value, mentioned="a.jpg clip.wav movie.mp4")


reply_texts = st.one_of(st.text(max_size=200), json_values.map(json.dumps), near_valid_plans.map(json.dumps))


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply_texts, reply_texts, st.integers(1, 12))
async def test_the_planner_streams_repairs_and_salvages_any_replies_into_a_plan_or_a_plan_error(first, second, chunk):
    """The whole stage 1 on two arbitrary replies (the plan, then the repair), streamed in `chunk`-character
    deltas: every task handed over while streaming is valid, and the result is a plan or a PlanError."""
    planner = Planner(ScriptedLLM(first, second, chunk=chunk), TABLE, demos=[])
    streamed = []
    try:
        plan = await planner.plan("describe a.jpg and read notes.txt aloud", on_task=streamed.append)
    except PlanError as exc:
        _check_error(exc, 2 * MAX_MESSAGE + 100)  # the plan's error and the repair's, each bounded
    else:
        _check_plan(plan)
    _check_plan(Plan(tasks=streamed))
