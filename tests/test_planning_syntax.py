"""The plan syntaxes: code shown and read back, streamed, the grammar's shape; the planner on a grammar backend."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hugginggpt.errors import LLMError, PlanError
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.planning.planner import Planner
from hugginggpt.planning.references import named_media
from hugginggpt.planning.rules import validate_plan
from hugginggpt.planning.syntax import (
    NO_TASKS,
    CodeStream,
    CodeSyntax,
    JsonSyntax,
    identifiers,
    plan_grammar,
    read_call,
    syntax_for,
)
from hugginggpt.prompts import load_demos
from hugginggpt.tasks import TaskTable, TaskType

TABLE = TaskTable()
CODE = CodeSyntax(TABLE)
DEMO = (
    "# count the objects in kite.jpg\n"
    'r0 = object_detection(image="kite.jpg")\n'
    "# read the text in sign.png\n"
    'r1 = image_to_text(image="sign.png")\n'
    "# read that text aloud\n"
    "r2 = text_to_speech(text=r1)"
)


def test_every_demo_reads_back_as_the_same_plan():
    for demo in load_demos():
        shown = CODE.show(demo["tasks"])
        plan = validate_plan(CODE.read(shown), TABLE)
        assert [task.model_dump() for task in plan.tasks] == demo["tasks"], shown


def test_a_call_reads_as_a_raw_task_with_its_step_and_its_dependencies_from_its_variables():
    raw = CODE.read(DEMO)["tasks"]
    assert raw[2] == {
        "step": "read that text aloud",
        "task": "text-to-speech",
        "id": 2,
        "dep": [1],
        "args": {"text": "<resource>-1"},
    }
    plan = validate_plan(CODE.read(DEMO), TABLE)
    assert [task.task for task in plan.tasks] == ["object-detection", "image-to-text", "text-to-speech"]


def test_pass_and_an_empty_reply_are_the_empty_plan():
    assert CODE.read(NO_TASKS) == {"tasks": []}
    assert CODE.read("  \n") == {"tasks": []}
    assert CODE.show([]) == NO_TASKS


def test_a_call_without_a_comment_has_no_step():
    assert CODE.read('r0 = summarization(text="a long text")')["tasks"] == [
        {"task": "summarization", "id": 0, "dep": [], "args": {"text": "a long text"}}
    ]


def test_task_names_become_distinct_identifiers_and_read_back():
    names = identifiers(["Image Downloader", "image-downloader", "3D Maker", "pass"])
    assert names == {
        "Image Downloader": "image_downloader",
        "image-downloader": "image_downloader_2",
        "3D Maker": "t_3d_maker",
        "pass": "pass_2",
    }
    table = TaskTable([TaskType(name="Image Downloader", description="d", inputs=["url"], outputs=["image"])])
    code = CodeSyntax(table)
    assert code.read('r0 = image_downloader(url="http://x.org/a.png")')["tasks"][0]["task"] == "Image Downloader"
    assert "image_downloader(url" in code.show([{"task": "Image Downloader", "args": {"url": "u"}}])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("summarise it please", "is not `rN = task"),
        ("r0 = text_to_speech(text=hello)", 'key="value" or key=rN'),
        ('r0 = text_to_speech(text="a" text_2="b")', "expected ', '"),
        ('r0 = sentence_similarity(text="a", text="b")', "given twice"),
        ('r0 = text_to_speech(text="bad \\q escape")', "bad escape"),
    ],
)
def test_a_bad_line_is_a_plan_error_that_says_what_is_wrong(line, message):
    with pytest.raises(PlanError, match=re.escape(message)):
        CODE.read(line)


def test_the_error_names_the_line_that_does_not_read():
    with pytest.raises(PlanError, match="line 3 is not"):
        CODE.read('# sum\nr0 = summarization(text="x")\nand then something else')


def test_an_unknown_identifier_is_kept_for_the_plan_check_to_name():
    assert read_call('r0 = make_coffee(text="x")')["task"] == "make_coffee"
    with pytest.raises(PlanError, match="make_coffee"):
        validate_plan(CODE.read('r0 = make_coffee(text="x")'), TABLE)


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60))
def test_any_text_argument_survives_showing_and_reading(text):
    task = {"step": "say it", "task": "text-to-speech", "id": 0, "args": {"text": text}}
    (raw,) = CODE.read(CODE.show([task]))["tasks"]
    assert raw["args"] == {"text": text}


def test_a_step_with_line_breaks_is_shown_on_one_line():
    task = {"step": "answer: what\nis it", "task": "summarization", "id": 0, "args": {"text": "x"}}
    assert CODE.show([task]) == '# answer: what is it\nr0 = summarization(text="x")'


def test_the_stream_gives_each_task_when_its_line_ends_and_the_last_on_close():
    stream = CODE.stream()
    got = [len(stream.feed(DEMO[i : i + 7])) for i in range(0, len(DEMO), 7)]
    assert sum(got) == 2  # the third call's line has not ended yet
    (last,) = stream.close()
    assert last["task"] == "text-to-speech" and last["step"] == "read that text aloud"
    assert stream.close() == []


def test_the_stream_skips_lines_that_do_not_read():
    stream = CodeStream()
    assert stream.feed("pass\nnot a task\n") == []


def _rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.splitlines())


def test_the_grammar_is_ordered_and_typed():
    rules = _rules(CODE.constraint(TABLE, 3)["grammar"])
    assert rules["root"] == f'"{NO_TASKS}" | p0'
    assert rules["p2"] == "t2"  # at most three tasks
    assert rules["t1"].startswith('"# " step "\\n" "r1 = " (')
    # the task at place 2 can use the outputs of tasks 0 and 1 only; the first names files and texts only
    assert rules["ref2"] == '"r0" | "r1"'
    assert rules["text2"] == "ref2 | text0"
    assert "ref0" not in rules
    detection = next(body for name, body in rules.items() if name.startswith("c1-") and "object_detection(" in body)
    assert detection == '"object_detection(" "image=" (ref1 | media0) ")"'
    first = next(body for name, body in rules.items() if name.startswith("c0-") and "object_detection(" in body)
    assert first == '"object_detection(" "image=" (media0) ")"'
    translation = next(body for name, body in rules.items() if name.startswith("c0-") and '"translation(' in body)
    assert translation == '"translation(" "text=" text0 (", " "tgt_lang=" text0 )? ")"'


def test_the_repair_and_fallback_grammars_refuse_the_empty_plan_and_placeholders():
    rules = _rules(CODE.constraint(TABLE.subset({"summarization"}), 1, at_least_one=True, literal=True)["grammar"])
    assert rules["root"] == "p0" and rules["p0"] == "t0"
    assert rules["c0-0"] == '"summarization(" "text=" literal0 ")"'
    assert "[^<" in rules["literal0"]


def test_a_type_with_optional_keys_only_may_write_any_of_them_first():
    table = TaskTable([TaskType(name="make", description="d", inputs=[], optional=["text", "image"], outputs=["text"])])
    rules = _rules(plan_grammar(table, 1))
    assert rules["c0-0"] == '"make(" ("text=" text0 (", " "image=" (media0) )? | "image=" (media0))? ")"'


def test_with_the_conversations_files_a_media_argument_names_one_of_its_kind_or_an_earlier_output():
    files = named_media("Detect the objects in kite.jpg and Kite 2.png, then transcribe https://x.org/talk")
    assert files == {"https://x.org/talk": None, "kite.jpg": "image", "2.png": "image"}
    rules = _rules(CODE.constraint(TABLE, 2, files={"kite.jpg": "image"})["grammar"])
    assert rules["image0"] == '"\\"kite.jpg\\""' and "media0" not in rules
    detection = next(body for name, body in rules.items() if name.startswith("c1-") and "object_detection(" in body)
    assert detection == '"object_detection(" "image=" (ref1 | image0) ")"'
    # no audio is named: a task that reads audio can only come after a task whose output it reads
    assert not any(name.startswith("c0-") and "audio=" in body for name, body in rules.items())
    assert any(name.startswith("c1-") and "audio=" in body for name, body in rules.items())
    # a link that does not say its kind may be given to any media argument
    rules = _rules(CODE.constraint(TABLE, 1, files={"https://x.org/a": None})["grammar"])
    assert rules["image0"] == rules["audio0"] == '"\\"https://x.org/a\\""'


def test_when_no_task_can_read_the_files_given_the_grammar_leaves_them_free():
    images = TABLE.subset({"object-detection", "image-to-text"})
    assert _rules(CODE.constraint(images, 2, files={})["grammar"])["root"] == f'"{NO_TASKS}"'
    # a repair must write a task: its grammar lets it name any file, and the plan checks say which one is wrong
    rules = _rules(CODE.constraint(images, 2, at_least_one=True, files={})["grammar"])
    assert rules["root"] == "p0" and "media0" in rules


def test_a_bound_grammar_reads_back_only_the_conversations_files():
    grammar = CODE.constraint(TABLE, 2, files={"a.jpg": "image"})["grammar"]
    reply = '# describe it\nr0 = image_to_text(image="a.jpg")\n# again\nr1 = image_to_text(image=r0)'
    assert re.fullmatch(_gbnf_regex(grammar), reply)
    assert not re.fullmatch(_gbnf_regex(grammar), reply.replace('"a.jpg"', '"b.jpg"'))


def _gbnf_regex(grammar: str) -> str:
    """The regular expression of a plan grammar (ours has no recursion beyond p0 -> p1 -> ...): for tests only."""
    rules = _rules(grammar)

    def expand(body: str, depth: int = 0) -> str:
        assert depth < 40, "the grammar recurses"
        out, at = [], 0
        token = re.compile(r'"((?:[^"\\]|\\.)*)"|\[((?:[^\]\\]|\\.)*)\]|([A-Za-z][\w-]*)|(\{\d*,?\d*\}|[()|?*+])|\s+')
        while at < len(body):
            m = token.match(body, at)
            assert m, body[at:]
            at = m.end()
            if m.group(1) is not None:
                out.append(re.escape(json.loads(f'"{m.group(1)}"')))
            elif m.group(2) is not None:
                out.append(f"[{m.group(2)}]")
            elif m.group(3) is not None:
                out.append(f"(?:{expand(rules[m.group(3)], depth + 1)})")
            elif m.group(4) is not None:
                out.append("(?:" if m.group(4) == "(" else m.group(4))
        return "".join(out)

    return expand(rules["root"])


def test_code_is_asked_for_and_needs_a_backend_that_takes_a_grammar():
    assert syntax_for("code", ScriptedLLM(accepts_grammar=True), TABLE).name == "code"
    assert syntax_for("code", ScriptedLLM(), TABLE).name == "json"  # an OpenAI-compatible server: JSON
    assert isinstance(syntax_for("json", ScriptedLLM(accepts_grammar=True), TABLE), JsonSyntax)
    assert Planner(ScriptedLLM(accepts_grammar=True), TABLE).syntax.name == "json"  # the default
    with pytest.raises(ValueError, match="unknown plan syntax"):
        syntax_for("yaml", ScriptedLLM(), TABLE)


def test_a_scripted_llm_without_grammars_refuses_one():
    with pytest.raises(LLMError, match="takes no grammar"):
        asyncio.run(ScriptedLLM("x").complete([], grammar='root ::= "x"'))


# --- the planner on a backend that takes a grammar ---------------------------------------------------------------


async def test_the_planner_asks_for_code_under_its_grammar_and_streams_each_task():
    llm = ScriptedLLM(DEMO, accepts_grammar=True, chunk=5)
    planner = Planner(llm, TABLE, syntax="code")
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
    assert schema is None and llm.grammars[0] == planner.constraint(messages[-1].content)["grammar"]
    assert '"\\"kite.jpg\\""' in llm.grammars[0] and "media0" not in llm.grammars[0]  # the request's files only
    assert "plan as code" in messages[0].content and "- object_detection(image)" in messages[0].content
    shown = [m.content for m in messages if m.role == "assistant"]
    assert shown and all(not s.startswith("{") for s in shown)
    assert '# name what photo.jpg shows\nr0 = image_classification(image="photo.jpg")' in shown


async def test_a_bad_plan_in_code_gets_a_repair_in_code():
    bad = '# describe it\nr0 = image_to_text(image="b.jpg")'
    good = '# describe it\nr0 = image_to_text(image="a.jpg")'
    llm = ScriptedLLM(bad, good, accepts_grammar=True)
    plan = await Planner(llm, TABLE, syntax="code").plan("Describe a.jpg.")
    assert [t.args for t in plan.tasks] == [{"image": "a.jpg"}]
    repair = llm.calls[1][0][-1].content
    assert "as code" in repair and "JSON" not in repair
    assert llm.grammars[1] is not None and llm.grammars[1].startswith("root ::= p0")


async def test_the_fallback_in_code_is_one_literal_task():
    bad = "this is not a plan"
    good = '# read it aloud\nr0 = text_to_speech(text="hello there")'
    llm = ScriptedLLM(bad, bad, good, accepts_grammar=True)
    plan = await Planner(llm, TABLE, syntax="code").plan("Say hello there out loud.")
    assert [t.task for t in plan.tasks] == ["text-to-speech"]
    fallback = llm.grammars[2]
    assert fallback is not None and "t1" not in fallback and "literal" in fallback


async def test_a_json_planner_is_unchanged_on_a_backend_without_grammars():
    reply = '{"tasks": [{"step": "sum", "task": "summarization", "id": 0, "dep": [], "args": {"text": "x"}}]}'
    llm = ScriptedLLM(reply)
    plan = await Planner(llm, TABLE).plan("Summarise x.")
    assert [t.task for t in plan.tasks] == ["summarization"]
    assert llm.calls[0][1] is not None and llm.grammars == [None]


def test_a_syntax_that_binds_no_files_gives_every_request_the_same_constraint():
    json_planner = Planner(ScriptedLLM(), TABLE)
    assert json_planner.constraint("Describe a.jpg") is json_planner.constraint("Describe b.png")
    assert json_planner.constraint("x", repair=True) is not json_planner.constraint("x")
    code = Planner(ScriptedLLM(accepts_grammar=True), TABLE, syntax="code")
    assert '"\\"a.jpg\\""' in code.constraint("Describe a.jpg")["grammar"]
    assert "media0" in code.constraint()["grammar"]  # no conversation given: any file name
