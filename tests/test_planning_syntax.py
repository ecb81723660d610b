"""The plan syntaxes: lines shown and read back, streamed, the grammar's shape; the planner on a grammar backend."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hugginggpt.errors import PlanError
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.planning.planner import Planner
from hugginggpt.planning.rules import validate_plan
from hugginggpt.planning.syntax import (
    NO_TASKS,
    JsonSyntax,
    LineStream,
    LineSyntax,
    plan_grammar,
    read_line,
    syntax_for,
)
from hugginggpt.prompts import load_demos
from hugginggpt.tasks import TaskTable

TABLE = TaskTable()
LINES = LineSyntax()
DEMO = (
    '0 count the objects in kite.jpg: object-detection(image="kite.jpg")\n'
    '1 read the text in sign.png: image-to-text(image="sign.png")\n'
    '2 read that text aloud: text-to-speech(text="<resource>-1")'
)


def test_every_demo_reads_back_as_the_same_plan():
    for demo in load_demos():
        shown = LINES.show(demo["tasks"])
        plan = validate_plan(LINES.read(shown), TABLE)
        assert [task.model_dump() for task in plan.tasks] == demo["tasks"], shown


def test_a_line_reads_as_a_raw_task_with_its_dependencies_from_its_placeholders():
    raw = LINES.read(DEMO)["tasks"]
    assert raw[2] == {
        "step": "read that text aloud",
        "task": "text-to-speech",
        "id": 2,
        "dep": [1],
        "args": {"text": "<resource>-1"},
    }
    assert [task.task for task in validate_plan(LINES.read(DEMO), TABLE).tasks] == [
        "object-detection",
        "image-to-text",
        "text-to-speech",
    ]


def test_none_and_an_empty_reply_are_the_empty_plan():
    assert LINES.read(NO_TASKS) == {"tasks": []}
    assert LINES.read("  \n") == {"tasks": []}
    assert LINES.show([]) == NO_TASKS


def test_a_line_without_a_step_reads_too():
    assert read_line('0 summarization(text="a long text")') == {
        "task": "summarization",
        "id": 0,
        "dep": [],
        "args": {"text": "a long text"},
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("summarise it please", "is not `N step"),
        ("0 say it: text-to-speech(text=hello)", 'key="value" pairs'),
        ('0 say it: text-to-speech(text="a" text_2="b")', "expected ', '"),
        ('0 compare: sentence-similarity(text="a", text="b")', "given twice"),
        ('0 say it: text-to-speech(text="bad \\q escape")', "bad escape"),
    ],
)
def test_a_bad_line_is_a_plan_error_that_says_what_is_wrong(line, message):
    with pytest.raises(PlanError, match=re.escape(message)):
        LINES.read(line)


def test_the_error_names_the_line_that_does_not_read():
    with pytest.raises(PlanError, match="line 2 is not"):
        LINES.read('0 sum: summarization(text="x")\nand then something else')


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60))
def test_any_text_argument_survives_showing_and_reading(text):
    task = {"step": "say it", "task": "text-to-speech", "id": 0, "args": {"text": text}}
    (raw,) = LINES.read(LINES.show([task]))["tasks"]
    assert raw["args"] == {"text": text}


def test_a_step_with_a_colon_or_a_line_break_is_shown_on_one_line():
    task = {"step": "answer: what\nis it", "task": "summarization", "id": 0, "args": {"text": "x"}}
    assert LINES.show([task]) == '0 answer what is it: summarization(text="x")'


def test_the_stream_gives_each_task_when_its_line_ends_and_the_last_on_close():
    stream = LineStream()
    got = [len(stream.feed(DEMO[i : i + 7])) for i in range(0, len(DEMO), 7)]
    assert sum(got) == 2  # the third line has not ended yet
    (last,) = stream.close()
    assert last["task"] == "text-to-speech"
    assert stream.close() == []


def test_the_stream_skips_lines_that_do_not_read():
    stream = LineStream()
    assert stream.feed("none\nnot a task\n") == []


def test_the_grammar_is_ordered_and_typed():
    grammar = plan_grammar(TABLE, 3)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["root"] == f'"{NO_TASKS}" | p0'
    assert rules["p2"] == "t2"  # at most three tasks
    assert rules["t1"].startswith('"1 " step ": " (')
    # the task at place 2 can name the outputs of tasks 0 and 1 only; the first names files only
    assert rules["media2"] == '"\\"" ("<resource>-" ("0" | "1") | media) "\\""'
    assert rules["media0"] == '"\\"" media "\\""'
    detection = next(body for name, body in rules.items() if name.startswith("c1-") and "object-detection(" in body)
    assert detection == '"object-detection(" "image=" media1 ")"'
    translation = next(body for name, body in rules.items() if name.startswith("c0-") and '"translation(' in body)
    assert translation == '"translation(" "text=" text (", " "tgt_lang=" text )? ")"'


def test_the_repair_and_fallback_grammars_refuse_the_empty_plan_and_placeholders_in_text():
    grammar = plan_grammar(TABLE.subset({"summarization"}), 1, at_least_one=True, literal=True)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["root"] == "p0"
    assert rules["c0-0"] == '"summarization(" "text=" literal ")"'
    assert "<" in rules["literal"] and rules["literal"].index("[^<") > 0


def test_a_type_with_optional_keys_only_may_write_any_of_them_first():
    from hugginggpt.tasks import TaskType

    table = TaskTable([TaskType(name="make", description="d", inputs=[], optional=["text", "image"], outputs=["text"])])
    rules = dict(line.split(" ::= ", 1) for line in plan_grammar(table, 1).splitlines())
    assert rules["c0-0"] == '"make(" ("text=" text (", " "image=" media0 )? | "image=" media0)? ")"'


def test_auto_picks_lines_for_a_backend_that_takes_a_grammar():
    assert syntax_for("auto", ScriptedLLM(accepts_grammar=True)).name == "lines"
    assert syntax_for("auto", ScriptedLLM()).name == "json"
    assert isinstance(syntax_for("json", ScriptedLLM(accepts_grammar=True)), JsonSyntax)
    with pytest.raises(ValueError, match="unknown plan syntax"):
        syntax_for("yaml", ScriptedLLM())


def test_a_scripted_llm_without_grammars_refuses_one():
    from hugginggpt.errors import LLMError

    with pytest.raises(LLMError, match="takes no grammar"):
        import asyncio

        asyncio.run(ScriptedLLM("x").complete([], grammar='root ::= "x"'))


# --- the planner on a backend that takes a grammar ---------------------------------------------------------------


async def test_the_planner_asks_for_lines_under_its_grammar_and_streams_each_task():
    llm = ScriptedLLM(DEMO, accepts_grammar=True, chunk=5)
    planner = Planner(llm, TABLE)
    seen = []
    plan = await planner.plan(
        "Count the objects in kite.jpg, read the text in sign.png, and read that text aloud.", on_task=seen.append
    )
    assert (
        [t.task for t in seen]
        == [t.task for t in plan.tasks]
        == [
            "object-detection",
            "image-to-text",
            "text-to-speech",
        ]
    )
    messages, schema = llm.calls[0]
    assert schema is None and llm.grammars[0] == planner.constraint["grammar"]
    assert "one line per task" in messages[0].content
    shown = [m.content for m in messages if m.role == "assistant"]
    assert shown and all(not s.startswith("{") for s in shown)
    assert '0 name what photo.jpg shows: image-classification(image="photo.jpg")' in shown


async def test_a_bad_plan_in_lines_gets_a_repair_in_lines():
    bad = '0 describe it: image-to-text(image="<resource>-3")'
    good = '0 describe it: image-to-text(image="a.jpg")'
    llm = ScriptedLLM(bad, good, accepts_grammar=True)
    plan = await Planner(llm, TABLE).plan("Describe a.jpg.")
    assert [t.args for t in plan.tasks] == [{"image": "a.jpg"}]
    repair = llm.calls[1][0][-1].content
    assert "one line per task" in repair and "JSON" not in repair
    assert llm.grammars[1] is not None and not llm.grammars[1].startswith('root ::= "none"')


async def test_the_fallback_in_lines_is_one_literal_task():
    bad = "this is not a plan"
    good = '0 read it aloud: text-to-speech(text="hello there")'
    llm = ScriptedLLM(bad, bad, good, accepts_grammar=True)
    plan = await Planner(llm, TABLE).plan("Say hello there out loud.")
    assert [t.task for t in plan.tasks] == ["text-to-speech"]
    fallback = llm.grammars[2]
    assert fallback is not None and "t1" not in fallback and "literal" in fallback


async def test_a_json_planner_is_unchanged_on_a_backend_without_grammars():
    reply = '{"tasks": [{"step": "sum", "task": "summarization", "id": 0, "dep": [], "args": {"text": "x"}}]}'
    llm = ScriptedLLM(reply)
    plan = await Planner(llm, TABLE).plan("Summarise x.")
    assert [t.task for t in plan.tasks] == ["summarization"]
    assert llm.calls[0][1] is not None and llm.grammars == [None]
