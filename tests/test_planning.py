import json

import pytest
from jsonschema import Draft202012Validator

from hugginggpt.errors import LLMError, PlanError
from hugginggpt.llm.protocol import Message
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.planning.history import trim_history
from hugginggpt.planning.planner import Planner
from hugginggpt.planning.rules import PlanBuilder, parse_plan, validate_plan
from hugginggpt.planning.schema import plan_schema
from hugginggpt.prompts import load_demos
from hugginggpt.tasks import TaskTable

TABLE = TaskTable()


def t(task, id, args, dep=None):
    return {"task": task, "id": id, "dep": dep if dep is not None else [], "args": args}


def test_every_demo_passes_the_validator_unchanged():
    demos = load_demos()
    kinds = {len(d["tasks"]) for d in demos}
    assert {0, 1, 2, 3, 4} <= kinds  # empty, single, chain and graph demos
    assert any(d.get("history") for d in demos)  # a follow-up turn
    for demo in demos:
        plan = validate_plan({"tasks": demo["tasks"]}, TABLE)
        assert all(task.get("step") for task in demo["tasks"]), demo["request"]  # each says what part it does
        assert [task.model_dump() for task in plan.tasks] == demo["tasks"], demo["request"]


def test_a_task_nodes_list_is_not_ours():
    # TaskBench's `task_nodes` is read by the TaskBench evaluation (`eval.taskbench.from_taskbench`)
    with pytest.raises(PlanError, match="not a task list"):
        validate_plan({"task_nodes": [t("summarization", 0, {"text": "hi"})]}, TABLE)


def test_bare_placeholder_without_number_is_rejected():
    with pytest.raises(PlanError, match="without a task number"):
        validate_plan(
            [t("image-to-text", 0, {"image": "a.jpg"}), t("text-to-speech", 1, {"text": "<resource>"})], TABLE
        )


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"tasks": [{"task": "summarization", "id": 0, "dep": [], "args": {"text": "hi"}}]}\n```',
        'Sure! Here is the plan: [{"task": "summarization", "id": 0, "dep": [-1], "args": {"text": "hi"}}] Done.',
        '[{"task": "Summarization", "id": "0", "dep": -1, "args": {"text": "hi"}}]',
    ],
)
def test_parser_accepts_fences_prose_and_loose_values(text):
    plan = parse_plan(text, TABLE)
    assert [(x.task, x.id, x.dep, x.args) for x in plan.tasks] == [("summarization", 0, [], {"text": "hi"})]


def test_non_json_reply_is_a_plan_error():
    with pytest.raises(PlanError, match="no JSON"):
        parse_plan("I would first detect objects, then describe them.", TABLE)


def test_task_names_are_normalised_or_rejected():
    plan = validate_plan(
        [t("Object_Detection", 0, {"image": "a.jpg"}), t("image to text", 1, {"image": "a.jpg"})], TABLE
    )
    assert [x.task for x in plan.tasks] == ["object-detection", "image-to-text"]
    with pytest.raises(PlanError, match="unknown task type 'image-captioning'"):
        validate_plan([t("image-captioning", 0, {"image": "a.jpg"})], TABLE)


def test_unavailable_task_types_are_unknown_to_a_subset_table():
    table = TABLE.subset({"summarization"})
    with pytest.raises(PlanError, match="unknown task type"):
        validate_plan([t("object-detection", 0, {"image": "a.jpg"})], table)


def test_duplicate_ids_are_rejected():
    with pytest.raises(PlanError, match="duplicate id 0"):
        validate_plan([t("summarization", 0, {"text": "a"}), t("summarization", 0, {"text": "b"})], TABLE)


def test_a_reference_to_a_missing_task_is_rejected():
    with pytest.raises(PlanError, match="no earlier task has id 1"):
        validate_plan([t("text-to-speech", 0, {"text": "<resource>-1"}), t("summarization", 2, {"text": "x"})], TABLE)


def test_a_task_written_before_the_task_it_uses_is_moved_after_it():
    plan = validate_plan(
        [
            t("summarization", 0, {"text": "the report"}),
            t("text-to-speech", 1, {"text": "<resource>-2"}),  # reads the translation, written after it
            t("translation", 2, {"text": "<resource>-0", "tgt_lang": "German"}),
        ],
        TABLE,
    )
    assert [(x.id, x.task, x.dep) for x in plan.tasks] == [
        (0, "summarization", []),
        (2, "translation", [0]),
        (1, "text-to-speech", [2]),
    ]


def test_self_reference_is_rejected():
    with pytest.raises(PlanError, match="refers to the task itself"):
        validate_plan([t("summarization", 0, {"text": "<resource>-0"})], TABLE)


def test_cycle_is_named():
    with pytest.raises(PlanError, match="cycle: task 0 -> task 1 -> task 0"):
        validate_plan(
            [t("summarization", 0, {"text": "<resource>-1"}), t("summarization", 1, {"text": "<resource>-0"})], TABLE
        )


def test_dep_is_recomputed_from_placeholders():
    plan = validate_plan(
        [
            t("image-to-text", 0, {"image": "a.jpg"}, dep=[-1, 5]),
            t("summarization", 1, {"text": "x"}),
            t("text-to-speech", 2, {"text": "<resource>-0"}, dep=[1]),
        ],
        TABLE,
    )
    assert [x.dep for x in plan.tasks] == [[], [], [0]]


def test_wrong_modality_reference_is_rejected():
    with pytest.raises(PlanError, match="'image' needs image from <resource>-0, but task 0 \\(summarization\\)"):
        validate_plan(
            [t("summarization", 0, {"text": "x"}), t("image-classification", 1, {"image": "<resource>-0"})], TABLE
        )


def test_text_in_an_image_argument_is_rejected():
    with pytest.raises(PlanError, match="must be a file name, a URL or <resource>-N"):
        validate_plan([t("object-detection", 0, {"image": "a photo of a cat"})], TABLE)


def test_missing_required_argument_and_unknown_argument():
    with pytest.raises(PlanError, match="missing argument 'image'"):
        validate_plan([t("visual-question-answering", 0, {"text": "what is it?"})], TABLE)
    with pytest.raises(PlanError, match="unknown argument 'question'"):
        validate_plan([t("visual-question-answering", 0, {"image": "a.jpg", "question": "?"})], TABLE)


def test_parameters_reach_the_task_but_cannot_hold_placeholders():
    plan = validate_plan([t("translation", 0, {"text": "hello", "tgt_lang": "French"})], TABLE)
    assert plan.tasks[0].args == {"text": "hello", "tgt_lang": "French"}
    with pytest.raises(PlanError, match="parameter 'tgt_lang' cannot take <resource>-N"):
        validate_plan(
            [t("summarization", 0, {"text": "x"}), t("translation", 1, {"text": "y", "tgt_lang": "<resource>-0"})],
            TABLE,
        )


def test_multi_resource_argument_is_split_with_new_ids_and_dependents_follow():
    plan = validate_plan(
        [
            t("object-detection", 0, {"image": "a.jpg, b.jpg"}),
            t("image-classification", 1, {"image": "<resource>-0"}),
            t("summarization", 2, {"text": "<resource>-1"}),
        ],
        TABLE,
    )
    summary = [(x.id, x.task, x.dep, x.args) for x in plan.tasks]
    assert summary == [
        (0, "object-detection", [], {"image": "a.jpg"}),
        (1, "object-detection", [], {"image": "b.jpg"}),
        (2, "image-classification", [0], {"image": "<resource>-0"}),
        (3, "image-classification", [1], {"image": "<resource>-1"}),
        (4, "summarization", [2, 3], {"text": "<resource>-2, <resource>-3"}),
    ]
    assert len({x.id for x in plan.tasks}) == len(plan.tasks)


def test_list_valued_argument_is_split_too():
    plan = validate_plan([t("image-classification", 0, {"image": ["a.jpg", "b.png"]})], TABLE)
    assert [x.args["image"] for x in plan.tasks] == ["a.jpg", "b.png"]


def test_empty_plan_means_answer_directly():
    assert validate_plan({"tasks": []}, TABLE).tasks == []


def test_too_many_tasks_is_an_error():
    with pytest.raises(PlanError, match="more than 2 tasks"):
        validate_plan([t("summarization", i, {"text": f"text {i}"}) for i in range(3)], TABLE, max_tasks=2)


def test_builder_accepts_tasks_one_at_a_time():
    builder = PlanBuilder(TABLE)
    first = builder.add(t("image-to-text", 0, {"image": "a.jpg"}))
    second = builder.add(t("text-to-speech", 1, {"text": "<resource>-0"}))
    assert [x.id for x in first + second] == [0, 1]
    assert builder.plan().tasks[1].dep == [0]


def test_schema_enumerates_available_task_types_and_argument_keys():
    schema = plan_schema(TABLE.subset({"summarization", "translation"}))
    item = schema["properties"]["tasks"]["items"]
    assert sorted(item["properties"]["task"]["enum"]) == ["summarization", "translation"]
    assert set(item["properties"]["args"]["properties"]) == {"text", "tgt_lang"}
    assert item["additionalProperties"] is False


def test_history_is_trimmed_oldest_first_to_the_budget():
    history = [Message(role="user" if i % 2 == 0 else "assistant", content=f"turn {i} " + "x" * 40) for i in range(10)]
    kept = trim_history(history, budget=40)
    assert kept == history[-len(kept) :]
    assert 0 < len(kept) < 10
    assert kept[0].role == "user"
    assert trim_history(history, budget=0) == []


PLAN = json.dumps(
    {"tasks": [t("image-to-text", 0, {"image": "a.jpg"}), t("text-to-speech", 1, {"text": "<resource>-0"})]}
)


async def test_planner_sends_prompt_with_schema_and_streams_tasks():
    llm = ScriptedLLM(PLAN, chunk=3)
    planner = Planner(llm, TABLE)
    seen = []
    history = [Message(role="user", content="earlier question"), Message(role="assistant", content="earlier answer")]
    plan = await planner.plan("read a.jpg aloud", history, on_task=seen.append)
    assert [x.task for x in plan.tasks] == ["image-to-text", "text-to-speech"]
    assert seen == plan.tasks
    messages, schema = llm.calls[0]
    assert schema == planner.constraint()["json_schema"]
    assert messages[0].role == "system" and "text-to-speech" in messages[0].content
    assert [m.content for m in messages[-3:]] == ["earlier question", "earlier answer", "read a.jpg aloud"]


async def test_adapt_turns_each_reply_and_each_streamed_task_into_our_format():
    def adapt(reply):
        tasks = reply if isinstance(reply, list) else reply["steps"]
        return [{**x, "task": x["task"].replace("caption", "image-to-text")} for x in tasks]

    theirs = PLAN.replace('"tasks"', '"steps"').replace("image-to-text", "caption")
    seen = []
    plan = await Planner(ScriptedLLM(theirs, chunk=5), TABLE).plan("read a.jpg aloud", on_task=seen.append, adapt=adapt)
    assert [x.task for x in plan.tasks] == ["image-to-text", "text-to-speech"]
    assert seen == plan.tasks


async def test_prompt_prefix_is_identical_across_requests():
    planner = Planner(ScriptedLLM(), TABLE)
    a = planner.messages("first request")
    b = planner.messages("second request", [Message(role="user", content="hi")])
    assert a[:-1] == b[: len(a) - 1]


async def test_planner_demos_only_use_available_task_types():
    planner = Planner(ScriptedLLM(), TABLE.subset({"summarization", "translation", "automatic-speech-recognition"}))
    assert all(
        t["task"] in {"summarization", "translation", "automatic-speech-recognition"}
        for d in planner.demos
        for t in d["tasks"]
    )


async def test_invalid_plan_gets_one_repair_request_with_the_error():
    bad = json.dumps({"tasks": [t("text-to-speech", 0, {"text": "<resource>-1"})]})
    llm = ScriptedLLM(bad, PLAN)
    plan = await Planner(llm, TABLE).plan("read a.jpg aloud")
    assert len(plan.tasks) == 2
    repair_messages = llm.calls[1][0]
    assert repair_messages[-2].content == bad
    assert "no earlier task has id 1" in repair_messages[-1].content
    # the repair must keep at least one task: giving up with an empty plan is not a fix
    empty = {"tasks": []}
    assert not Draft202012Validator(llm.calls[1][1]).is_valid(empty)
    assert Draft202012Validator(llm.calls[0][1]).is_valid(empty)


async def test_an_empty_plan_for_a_request_that_asks_for_audio_goes_to_the_repair():
    spoken = json.dumps({"tasks": [t("text-to-speech", 0, {"text": "Open from nine to five."})]})
    llm = ScriptedLLM(json.dumps({"tasks": []}), spoken)
    plan = await Planner(llm, TABLE).plan("Now read that text aloud.")
    assert [x.task for x in plan.tasks] == ["text-to-speech"] and len(llm.calls) == 2
    assert "asks for audio, but the plan has no task" in llm.calls[1][0][-1].content
    # a greeting, or a request for no image, audio or video, keeps its empty plan with one call
    for request in ("Hi! What can you do?", "Is 17 a prime number?"):
        llm = ScriptedLLM(json.dumps({"tasks": []}))
        assert (await Planner(llm, TABLE).plan(request)).tasks == [] and len(llm.calls) == 1
    llm = ScriptedLLM(json.dumps({"tasks": []}))
    assert (await Planner(llm, TABLE, asked_media=False).plan("Now read that text aloud.")).tasks == []


async def test_failed_repair_and_fallback_raise_every_error():
    llm = ScriptedLLM("not json", "still not json", "nor the single-task fallback")
    with pytest.raises(PlanError, match="no JSON.*repair attempt failed: no JSON.*; nor a single task: no JSON"):
        await Planner(llm, TABLE).plan("hello")
    assert len(llm.calls) == 3


async def test_truncated_plan_is_an_error():
    class Truncating(ScriptedLLM):
        async def complete(self, messages, **kwargs):
            completion = await super().complete(messages, **kwargs)
            return completion.model_copy(update={"finish_reason": "length"})

    with pytest.raises(PlanError, match="cut off at the token limit"):
        await Planner(Truncating(PLAN[:40], PLAN[:40]), TABLE).plan("x")


async def test_unreachable_llm_propagates_as_llm_error():
    with pytest.raises(LLMError, match="down"):
        await Planner(ScriptedLLM(LLMError("endpoint down")), TABLE).plan("x")
