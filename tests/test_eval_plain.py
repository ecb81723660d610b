"""The plain planning baseline of `eval taskbench`: its prompt and schema, how its replies are read and counted."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hugginggpt.errors import LLMError, PlanError
from hugginggpt.eval.plain import PlainPlanner, plain_schema, read_plan, schema_error
from hugginggpt.eval.runner import Comparison, evaluate, predict, run_planners
from hugginggpt.eval.taskbench import TaskBenchTools, Tool, load_samples
from hugginggpt.llm.protocol import Completion, Message, Usage
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.planning import Planner
from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable

TOOLS = {
    "nodes": [
        {
            "id": "Automatic Speech Recognition",
            "desc": "Speech to text.",
            "input-type": ["audio"],
            "output-type": ["text"],
        },
        {"id": "Summarization", "desc": "Shorten.", "input-type": ["text"], "output-type": ["text"]},
        {"id": "Text-to-Image", "desc": "Draw.", "input-type": ["text"], "output-type": ["image"]},
        {
            "id": "Tabular Regression",
            "desc": "Predict a number from a table. It is good.",
            "input-type": ["text"],
            "output-type": ["text"],
        },
    ]
}
ROWS = [
    {"id": "1", "type": "chain", "instruction": "Transcribe talk.wav and summarise it.",
     "task_nodes": [{"task": "Automatic Speech Recognition", "arguments": ["talk.wav"]},
                    {"task": "Summarization", "arguments": ["<node-0>"]}],
     "task_links": [{"source": "Automatic Speech Recognition", "target": "Summarization"}]},
    {"id": "2", "type": "single", "instruction": "Draw a red fox.",
     "task_nodes": [{"task": "Text-to-Image", "arguments": ["a red fox"]}], "task_links": []},
]  # fmt: skip
PLAIN = {  # the plain planner's replies, in its own convention ("dep": [-1] for a task that depends on none)
    "Transcribe talk.wav and summarise it.": [
        {"task": "automatic-speech-recognition", "id": 0, "dep": [-1], "args": {"audio": "talk.wav"}},
        {"task": "summarization", "id": 1, "dep": [0], "args": {"text": "<resource>-0"}},
    ],
    "Draw a red fox.": [{"task": "text-to-image", "id": 0, "dep": [-1], "args": {"text": "a red fox"}}],
}
DEMOS = [
    "Detect the objects in street.jpg, then read the list of them aloud.",
    "Make a picture of a lighthouse at dusk, then describe the picture.",
    'Summarise this text: "The town council met on Monday',
]


def _tools() -> TaskBenchTools:
    return TaskBenchTools([Tool.model_validate(t) for t in TOOLS["nodes"]])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    (tmp_path / "tool_desc.json").write_text(json.dumps(TOOLS), encoding="utf-8")
    return path


def _request(messages: Sequence[Message]) -> str:
    return messages[-1].content


def _plain_reply(messages: Sequence[Message], schema: Any) -> str:
    return json.dumps({"tasks": PLAIN.get(_request(messages), [])})


def test_the_prompt_has_the_tool_list_the_rules_and_the_three_demos():
    planner = PlainPlanner(ScriptedLLM(), _tools().table)
    messages = planner.messages("Draw a red fox.")
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[1].content == "Draw a red fox."
    system = messages[0].content
    assert "- automatic-speech-recognition(audio): transcribe speech audio into text" in system
    assert "- summarization(text): " in system
    assert "- tabular-regression(text): predict a number from a table" in system  # TaskBench's first sentence
    assert "It is good" not in system
    for rule in (
        "Ids count from 0",
        '"<resource>-N" in an argument means the output of task N, and "dep" lists every such N',
        '"dep": [-1]',
        "the tool's own argument keys (text, image, audio, video)",
        "as few tasks as possible",
    ):
        assert rule in system
    for demo in DEMOS:
        assert f"Request: {demo}" in system
    # the demos stay although object detection, text-to-speech and image-to-text are not in this tool table
    assert '"task": "object-detection"' in system and "object-detection(" not in system
    assert len(system.splitlines()) == 19 + len(TOOLS["nodes"])


def test_the_demo_replies_are_plans_the_schema_takes():
    system = PlainPlanner(ScriptedLLM(), TaskTable(DEFAULT_TASK_TYPES)).system
    replies = re.findall(r"^Reply: (.*)$", system, re.MULTILINE)
    assert len(replies) == 3
    schema = plain_schema(TaskTable(DEFAULT_TASK_TYPES))
    plans = [read_plan(reply, schema) for reply in replies]
    assert [[t.task for t in p.tasks] for p in plans] == [
        ["object-detection", "text-to-speech"],
        ["text-to-image", "image-to-text"],
        ["summarization"],
    ]
    assert [[t.dep for t in p.tasks] for p in plans] == [[[], [0]], [[], [0]], [[]]]


def test_the_schema_has_the_tool_names_and_the_keys():
    schema = PlainPlanner(ScriptedLLM(), _tools().table).schema
    branches = schema["properties"]["tasks"]["items"]["anyOf"]
    assert [b["properties"]["task"]["enum"] for b in branches] == [
        ["automatic-speech-recognition"],
        ["summarization"],
        ["text-to-image"],
        ["tabular-regression"],
    ]
    assert all(b["required"] == ["task", "id", "dep", "args"] for b in branches)
    assert all(b["properties"]["dep"]["items"]["minimum"] == -1 for b in branches)
    assert branches[0]["properties"]["args"]["required"] == ["audio"]
    assert schema["required"] == ["tasks"]


def test_dep_minus_one_means_no_dependency():
    schema = plain_schema(_tools().table)
    plan = read_plan(json.dumps({"tasks": PLAIN["Transcribe talk.wav and summarise it."]}), schema)
    assert [t.dep for t in plan.tasks] == [[], [0]]
    plan = read_plan(json.dumps({"tasks": [{**PLAIN["Draw a red fox."][0], "dep": [-1, -1]}]}), schema)
    assert plan.tasks[0].dep == []


async def test_plain_plans_are_scored_as_ours_are(data):
    samples = load_samples(data)
    llm = ScriptedLLM(fallback=_plain_reply)
    predictions = await predict(PlainPlanner(llm, _tools().table), samples, name="plain")
    assert [(p.planner, p.llm_calls, p.error) for p in predictions] == [("plain", 1, None), ("plain", 1, None)]
    assert predictions[0].generated_tokens > 0 and predictions[0].prompt_tokens > 0
    report = evaluate(samples, predictions, _tools(), planner="plain")
    assert report.planner == "plain"
    overall = report.variants["ours"]["overall"]
    assert overall.node_f1 == overall.edge_f1 == overall.edge_f1_args == overall.t_f1 == overall.v_f1 == 100.0
    assert report.repaired == 0


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("tasks: none", "not JSON"),
        (json.dumps({"tasks": [{"task": "text-to-image", "id": 0, "dep": [-1], "args": {"image": "fox.png"}}]}), "forms"),
        (json.dumps({"tasks": [{"task": "object-detection", "id": 0, "dep": [-1], "args": {"image": "a.jpg"}}]}), "is not one of"),
        (json.dumps({"tasks": [{"task": "text-to-image", "id": 0, "args": {"text": "a fox"}}]}), "missing dep"),
        (json.dumps({"task_nodes": []}), "missing tasks"),
    ],
)  # fmt: skip
async def test_an_invalid_reply_is_an_unparsed_row_after_one_call(data, reply, error):
    samples = load_samples(data)[1:]
    llm = ScriptedLLM(reply, fallback=_plain_reply)
    predictions = await predict(PlainPlanner(llm, _tools().table), samples, name="plain")
    assert len(llm.calls) == 1 and predictions[0].llm_calls == 1  # no repair call
    assert predictions[0].plan is None
    assert error in predictions[0].error
    report = evaluate(samples, predictions, _tools(), planner="plain")
    assert report.variants["taskbench"]["overall"].parsed == 0
    assert report.variants["ours"]["overall"].node_f1 == 0.0  # an empty plan, as unparsed rows of ours count


class _CutOff:
    name = "cut-off"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, messages, **kwargs) -> Completion:
        self.calls += 1
        text = json.dumps({"tasks": PLAIN["Draw a red fox."]})
        return Completion(text=text, usage=Usage(prompt_tokens=9, completion_tokens=5), finish_reason="length")


async def test_a_cut_off_reply_is_unparsed(data):
    llm = _CutOff()
    predictions = await predict(PlainPlanner(llm, _tools().table), load_samples(data)[1:], name="plain")
    assert predictions[0].plan is None and "cut off" in predictions[0].error
    assert llm.calls == 1 and predictions[0].generated_tokens == 5


async def test_an_unreachable_llm_stops_the_run(data):
    llm = ScriptedLLM(LLMError("the LLM at http://x is unreachable"))
    with pytest.raises(LLMError, match="unreachable"):
        await predict(PlainPlanner(llm, _tools().table), load_samples(data))


async def test_both_planners_run_on_the_same_rows(data):
    def reply(messages: Sequence[Message], schema: Any) -> str:
        if messages[0].content.startswith("You turn a user's request"):
            return _plain_reply(messages, schema)
        tasks = [{k: v for k, v in t.items() if k != "dep"} for t in PLAIN.get(_request(messages), [])]
        return json.dumps({"tasks": [{"step": t["task"], **t} for t in tasks]})

    llm = ScriptedLLM(fallback=reply)
    factories = {"ours": lambda tb: Planner(llm, tb.table, demos=[]), "plain": lambda tb: PlainPlanner(llm, tb.table)}
    reports, predictions = await run_planners(factories, data, limit=2, llm="scripted")
    assert list(reports) == ["ours", "plain"]
    assert [(p.planner, p.id) for p in predictions] == [("ours", "1"), ("ours", "2"), ("plain", "1"), ("plain", "2")]
    assert len(llm.calls) == 4
    comparison = Comparison.of(reports)
    assert (comparison.planner, comparison.samples, comparison.llm) == ("both", 2, "scripted")
    for name, report in comparison.planners.items():
        assert report.planner == name and report.samples == 2
        assert report.variants["ours"]["overall"].node_f1 == 100.0
        assert report.seconds_per_sample >= 0 and report.generated_tokens_per_sample > 0
    dumped = json.loads(comparison.model_dump_json())
    assert set(dumped["planners"]) == {"ours", "plain"}
    assert dumped["planners"]["plain"]["variants"]["taskbench"]["chain"]["edge_f1"] == 100.0


def test_read_plan_refuses_what_the_schema_does_not_allow():
    schema = plain_schema(_tools().table)
    task = PLAIN["Draw a red fox."][0]
    for bad in (
        {"tasks": [{**task, "id": -1}]},
        {"tasks": [{**task, "dep": [-2]}]},
        {"tasks": [{**task, "id": True}]},
        {"tasks": [{**task, "extra": 1}]},
        {"tasks": [task] * 9},
        {"tasks": [{**task, "args": {"text": "x" * 401}}]},
        [task],
    ):
        with pytest.raises(PlanError, match="does not match the schema"):
            read_plan(json.dumps(bad), schema)


def test_schema_error_names_the_closest_form():
    schema = plain_schema(_tools().table)
    reply = {"tasks": [{"task": "automatic-speech-recognition", "id": 0, "dep": [-1], "args": {"audio": "<a.wav>"}}]}
    error = schema_error(reply, schema)
    assert error is not None and "reply.tasks[0].args.audio" in error
    assert schema_error({"tasks": []}, schema) is None
