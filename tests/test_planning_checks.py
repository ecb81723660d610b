"""Planning quality aids: typed schema, steps, media type checks, mentioned files, salvage, demo choice."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator

from hugginggpt.config import Settings
from hugginggpt.errors import PlanError
from hugginggpt.llm.protocol import Message
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.planning.demos import DemoBank
from hugginggpt.planning.planner import Planner
from hugginggpt.planning.rules import REPAIRS, salvage_plan, validate_plan
from hugginggpt.planning.schema import plan_schema
from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable, TaskType

TABLE = TaskTable(DEFAULT_TASK_TYPES)


def t(task, id, args, dep=()):
    return {"task": task, "id": id, "dep": list(dep), "args": args}


def test_typed_schema_gives_each_task_type_its_own_arguments():
    schema = plan_schema(TABLE.subset({"translation", "visual-question-answering"}), typed=True)
    branches = {b["properties"]["task"]["enum"][0]: b for b in schema["properties"]["tasks"]["items"]["anyOf"]}
    vqa = branches["visual-question-answering"]["properties"]["args"]
    assert set(vqa["properties"]) == {"image", "text"}
    assert vqa["required"] == ["image", "text"]
    assert vqa["additionalProperties"] is False
    translation = branches["translation"]["properties"]["args"]
    assert set(translation["properties"]) == {"text", "tgt_lang"}
    assert translation["required"] == ["text"]


def test_steps_come_first_in_every_task():
    schema = plan_schema(TABLE.subset({"summarization"}), typed=True, steps=True)
    branch = schema["properties"]["tasks"]["items"]["anyOf"][0]
    assert next(iter(branch["properties"])) == "step"
    assert branch["required"][0] == "step"
    plain = plan_schema(TABLE.subset({"summarization"}))
    assert "step" not in plain["properties"]["tasks"]["items"]["properties"]


def test_media_arguments_are_constrained_to_a_file_url_or_reference():
    schema = plan_schema(TABLE.subset({"visual-question-answering"}), typed=True)
    args = schema["properties"]["tasks"]["items"]["anyOf"][0]["properties"]["args"]["properties"]
    pattern = re.compile(args["image"]["pattern"])
    assert pattern.match("photo.jpg") and pattern.match("https://x.org/a b.png") and pattern.match("<resource>-3")
    for bad in ("<photo.jpg>", "<image>-0", 'a"b', "a\\b", "line\nbreak", ""):
        assert not pattern.match(bad), bad
    assert "pattern" not in args["text"] and args["text"]["maxLength"]


def test_a_media_argument_must_hold_a_file_of_its_own_kind():
    with pytest.raises(PlanError, match=r"'image' needs image, but 'talk\.wav' is an audio file"):
        validate_plan([t("image-to-text", 0, {"image": "talk.wav"})], TABLE)
    assert validate_plan([t("image-to-text", 0, {"image": "https://x.org/cat.png"})], TABLE).tasks


def test_a_text_argument_cannot_be_a_media_file():
    with pytest.raises(PlanError, match=r"'photo\.jpg' is an image file; add a task that turns it into text \(e\.g\."):
        validate_plan([t("text-to-speech", 0, {"text": "photo.jpg"})], TABLE)
    # a text file, or a sentence that mentions a file, is text
    assert validate_plan([t("summarization", 0, {"text": "report.txt"})], TABLE).tasks
    assert validate_plan([t("text-to-speech", 0, {"text": "I love photo.jpg"})], TABLE).tasks
    # and so is a link: a tool may take one (e.g. a downloader)
    assert validate_plan([t("summarization", 0, {"text": "https://example.com/photo.jpg"})], TABLE).tasks


def test_a_wrongly_typed_reference_passes_the_source_file_through():
    plan = validate_plan(
        [
            t("image-classification", 0, {"image": "a.jpg"}),
            t("visual-question-answering", 1, {"image": "<resource>-0", "text": "What colour?"}, [0]),
        ],
        TABLE,
    )
    assert plan.tasks[1].args == {"image": "a.jpg", "text": "What colour?"}
    assert plan.tasks[1].dep == []
    # text too: "read the article" as text-to-speech, then a summary of what it read, is a summary of the article
    plan = validate_plan(
        [
            t("text-to-speech", 0, {"text": "notes.txt"}),
            t("summarization", 1, {"text": "<resource>-0"}, [0]),
        ],
        TABLE,
    )
    assert plan.tasks[1].args == {"text": "notes.txt"}
    # without a file of that kind to pass through, it stays an error
    with pytest.raises(PlanError, match=r"needs image from <resource>-0, but task 0 .* produces text"):
        validate_plan(
            [t("summarization", 0, {"text": "x"}), t("image-to-text", 1, {"image": "<resource>-0"}, [0])], TABLE
        )


def test_a_file_from_the_examples_must_be_in_the_request():
    plan = [t("image-to-text", 0, {"image": "outputs/run-1/0-text-to-image.png"})]
    files = {"outputs/run-1/0-text-to-image.png"}
    with pytest.raises(PlanError, match="a file from the examples, not from this request"):
        validate_plan(plan, TABLE, example_files=files, mentioned="Describe my photo cat.jpg")
    mentioned = "describe OUTPUTS/run-1/0-text-to-image.png"
    assert validate_plan(plan, TABLE, example_files=files, mentioned=mentioned).tasks
    # without a request to compare with (validating a stored plan), other files pass
    assert validate_plan([t("image-to-text", 0, {"image": "sign.png"})], TABLE, example_files=files).tasks
    # and so does an example file whose stem the request names ("the sign" for sign.png) when it gives files
    sign = [t("image-to-text", 0, {"image": "sign.png"})]
    given = "I sent photo.jpg and the sign; read the sign aloud"
    assert validate_plan(sign, TABLE, example_files={"sign.png"}, mentioned=given).tasks
    # with no file given at all, a name made from a word of the request is made up
    with pytest.raises(PlanError, match="a file from the examples"):
        validate_plan(sign, TABLE, example_files={"sign.png"}, mentioned="read the sign aloud")
    with pytest.raises(
        PlanError, match="'lighthouse.jpg', a file the user did not give.*write the task type \"text-to-image\""
    ):
        validate_plan(
            [t("image-to-image", 0, {"image": "lighthouse.jpg", "text": "a lighthouse at sunset"})],
            TABLE,
            mentioned="Draw a picture of a lighthouse at sunset.",
        )
    # but not a stem that is a common short word: "a" in "a photo" is not a.jpg
    with pytest.raises(PlanError, match="a file from the examples"):
        validate_plan([t("image-to-text", 0, {"image": "a.jpg"})], TABLE, example_files={"a.jpg"}, mentioned="a photo")


def test_a_media_argument_must_name_a_file_the_user_gave():
    segmented = [t("image-segmentation", 0, {"image": "cat.jpg"}), t("image-to-image", 1, {"image": "masks.png"})]
    with pytest.raises(PlanError, match=r"task 1 \(image-to-image\): 'image' names 'masks.png', a file the user did"):
        validate_plan(segmented, TABLE, mentioned="Segment cat.jpg")
    # named in the request or the history, by name, by stem or as a URL; or the output of a task
    for request in ("Segment cat.jpg, then restyle masks.png", "Segment cat.jpg and restyle the masks"):
        assert len(validate_plan(segmented, TABLE, mentioned=request).tasks) == 2
    url = [t("image-to-text", 0, {"image": "https://example.com/x.png"})]
    assert validate_plan(url, TABLE, mentioned="Describe https://example.com/x.png").tasks
    with pytest.raises(PlanError, match="a file the user did not give"):
        validate_plan(url, TABLE, mentioned="Describe a photo of the sea")
    chained = [t("text-to-image", 0, {"text": "a cat"}), t("image-to-text", 1, {"image": "<resource>-0"}, [0])]
    assert len(validate_plan(chained, TABLE, mentioned="Draw a cat and describe it").tasks) == 2


def test_a_task_that_repeats_an_earlier_one_is_merged_into_it():
    text = "John lives in Boston."
    plan = validate_plan(
        [
            t("token-classification", 0, {"text": text}),
            t("token-classification", 1, {"text": text}),  # the same task again
            t("text-to-speech", 2, {"text": "<resource>-1"}, [1]),
        ],
        TABLE,
    )
    assert [(x.id, x.task, x.args) for x in plan.tasks] == [
        (0, "token-classification", {"text": text}),
        (2, "text-to-speech", {"text": "<resource>-0"}),
    ]
    assert plan.tasks[1].dep == [0]
    # a transforming task may well run on its own output: a translation of a translation
    chain = [
        t("translation", 0, {"text": "hello", "tgt_lang": "French"}),
        t("translation", 1, {"text": "<resource>-0", "tgt_lang": "German"}, [0]),
    ]
    assert len(validate_plan(chain, TABLE).tasks) == 2


def test_each_repair_can_be_left_out_to_measure_it():
    text = "John lives in Boston."
    repeated = [t("token-classification", 0, {"text": text}), t("token-classification", 1, {"text": text})]
    assert len(validate_plan(repeated, TABLE).tasks) == 1
    assert len(validate_plan(repeated, TABLE, repairs=["pass-through"]).tasks) == 2
    through = [
        t("image-classification", 0, {"image": "a.jpg"}),
        t("visual-question-answering", 1, {"image": "<resource>-0", "text": "What is it?"}, [0]),
    ]
    assert validate_plan(through, TABLE, mentioned="a.jpg").tasks[1].args["image"] == "a.jpg"
    with pytest.raises(PlanError, match="needs image from <resource>-0"):
        validate_plan(through, TABLE, mentioned="a.jpg", repairs=["repeats"])
    assert set(REPAIRS) == {"repeats", "pass-through", "own-file", "named-document", "unasked-media", "edited-input"}
    with pytest.raises(ValueError, match="unknown plan repair guess; known"):
        Planner(ScriptedLLM(), TABLE, repairs=["guess"])


def test_a_sentence_naming_a_text_document_as_the_one_text_input_means_that_document():
    request = "Read my to-do list in todo.md aloud."
    spoken = [t("text-to-speech", 0, {"text": "Please read my to-do list in todo.md aloud."})]
    assert validate_plan(spoken, TABLE, mentioned=request).tasks[0].args == {"text": "todo.md"}
    there = validate_plan(spoken, TABLE, mentioned=request, exists=lambda name: name == "todo.md")
    assert there.tasks[0].args == {"text": "todo.md"}
    # the document is not in the input folders (one to be written, say): the sentence stays
    missing = validate_plan(spoken, TABLE, mentioned=request, exists=lambda name: False)
    assert missing.tasks[0].args["text"].startswith("Please read")
    assert validate_plan(spoken, TABLE, mentioned=request, repairs=["own-file"]).tasks[0].args["text"] != "todo.md"
    # a question about the document is a question, and a sentence naming two documents is left as written
    question = [t("question-answering", 0, {"text": "What is due in todo.md?", "text_2": "todo.md"})]
    assert validate_plan(question, TABLE, mentioned="What is due in todo.md?").tasks[0].args["text"].startswith("What")
    both = [t("summarization", 0, {"text": "Sum up a.txt and b.txt"})]
    assert (
        validate_plan(both, TABLE, mentioned="Sum up a.txt and b.txt").tasks[0].args["text"] == "Sum up a.txt and b.txt"
    )


TRANSCRIBE = "Transcribe meeting.wav for me."
SPOKEN = [
    t("automatic-speech-recognition", 0, {"audio": "meeting.wav"}),
    t("text-to-speech", 1, {"text": "<resource>-0"}, [0]),
]


def test_a_task_making_media_nobody_asked_for_from_earlier_results_is_held_back():
    plan = validate_plan(SPOKEN, TABLE, mentioned=TRANSCRIBE, wanted=set())
    assert [task.task for task in plan.tasks] == ["automatic-speech-recognition"]
    # asked for, not known (no `wanted`), or the repair left out: it stays
    for context in ({"wanted": {"audio"}}, {}, {"wanted": set(), "repairs": ["repeats"]}):
        assert len(validate_plan(SPOKEN, TABLE, mentioned=TRANSCRIBE, **context).tasks) == 2
    # a task on the user's own words or files is what was asked, and so is a map made from an image it reads
    said = [t("text-to-speech", 0, {"text": "Good morning"})]
    assert len(validate_plan(said, TABLE, mentioned="Good morning", wanted=set()).tasks) == 1
    depth = [t("image-segmentation", 0, {"image": "a.jpg"}), t("depth-estimation", 1, {"image": "<resource>-0"})]
    assert len(validate_plan(depth, TABLE, mentioned="How deep are the parts of a.jpg?", wanted=set()).tasks) == 2


def test_a_held_task_is_kept_when_a_later_task_uses_it_and_ids_stay_unique():
    again = [*SPOKEN, t("automatic-speech-recognition", 2, {"audio": "<resource>-1"}, [1])]
    plan = validate_plan(again, TABLE, mentioned=TRANSCRIBE, wanted=set())
    assert [(task.id, task.task, task.dep) for task in plan.tasks] == [
        (0, "automatic-speech-recognition", []),
        (1, "text-to-speech", [0]),
        (2, "automatic-speech-recognition", [1]),
    ]
    # held, then a new task whose id the LLM did not give: it does not take the held task's id
    later = [*SPOKEN, t("summarization", 1, {"text": "<resource>-0"}, [0])]
    with pytest.raises(PlanError, match="duplicate id 1"):
        validate_plan(later, TABLE, mentioned=TRANSCRIBE, wanted=set())
    other = [*SPOKEN, t("summarization", 2, {"text": "<resource>-0"}, [0])]
    assert [(x.id, x.task) for x in validate_plan(other, TABLE, mentioned=TRANSCRIBE, wanted=set()).tasks] == [
        (0, "automatic-speech-recognition"),
        (2, "summarization"),
    ]


ENHANCE = "Enhance old.jpg, then read the text in it."
EDITED = [
    t("image-to-image", 0, {"image": "old.jpg"}),
    t("image-to-text", 1, {"image": "old.jpg"}),
]


def test_a_task_on_a_file_an_earlier_task_edited_reads_the_edited_file():
    plan = validate_plan(EDITED, TABLE, mentioned=ENHANCE)
    assert [(x.task, x.dep, x.args["image"]) for x in plan.tasks] == [
        ("image-to-image", [], "old.jpg"),
        ("image-to-text", [0], "<resource>-0"),
    ]
    # through every edit in turn: restyled, then changed as told, then described
    twice = [
        EDITED[0],
        t("image-editing", 1, {"image": "old.jpg", "text": "make the sky blue"}),
        t("image-to-text", 2, {"image": "old.jpg"}),
    ]
    assert [x.args["image"] for x in validate_plan(twice, TABLE, mentioned=ENHANCE).tasks] == [
        "old.jpg",
        "<resource>-0",
        "<resource>-1",
    ]
    # the original asked for, the repair left out, or no edit in the plan: the file stays
    original = "Enhance old.jpg and read the text in the original."
    assert validate_plan(EDITED, TABLE, mentioned=original).tasks[1].args["image"] == "old.jpg"
    assert validate_plan(EDITED, TABLE, mentioned=ENHANCE, repairs=["repeats"]).tasks[1].args["image"] == "old.jpg"
    mapped = [t("depth-estimation", 0, {"image": "old.jpg"}), t("object-detection", 1, {"image": "old.jpg"})]
    assert validate_plan(mapped, TABLE, mentioned="How deep is old.jpg and what is in it?").tasks[1].dep == []
    # two versions of one photo are two edits of it, and another file is not the edited one
    styles = [t("image-to-image", 0, {"image": "old.jpg"}), t("image-to-image", 1, {"image": "old.jpg", "text": "b"})]
    assert validate_plan(styles, TABLE, mentioned="Two styles of old.jpg").tasks[1].dep == []
    other = [EDITED[0], t("image-to-text", 1, {"image": "new.jpg"})]
    assert validate_plan(other, TABLE, mentioned="Enhance old.jpg and read new.jpg").tasks[1].dep == []


def test_a_foreign_table_edits_where_its_type_is_nearest_one_of_ours_that_edits():
    kinds = {
        "image-colorizer": ("adds color to a black and white image", "image", "image"),
        "depth-estimation": ("estimate the depth of each pixel of an image", "image", "image"),
        "audio-to-audio": ("enhance or separate the sources of an audio clip", "audio", "audio"),
        "image-to-text": ("extracts text from an image", "image", "text"),
    }
    foreign = TaskTable([TaskType(name=n, description=d, inputs=[i], outputs=[o]) for n, (d, i, o) in kinds.items()])
    planner = Planner.from_settings(ScriptedLLM(), foreign, Settings())
    assert planner.editors == {"image-colorizer", "audio-to-audio"}
    assert Planner.from_settings(ScriptedLLM(), foreign, Settings(), without=["edited-input"]).editors is None


async def test_the_planner_holds_back_unasked_speech_and_streams_only_what_it_keeps():
    reply = json.dumps({"tasks": SPOKEN})
    for request, kept in ((TRANSCRIBE, 1), ("Transcribe meeting.wav and read it to me.", 2)):
        seen = []
        plan = await Planner(ScriptedLLM(reply, chunk=4), TABLE).plan(request, on_task=seen.append)
        assert len(plan.tasks) == kept and seen == plan.tasks
    plan = await Planner(ScriptedLLM(reply), TABLE, repairs=["repeats"]).plan(TRANSCRIBE)
    assert len(plan.tasks) == 2


def test_a_media_argument_naming_its_own_task_means_the_one_file_the_user_gave():
    own = [t("automatic-speech-recognition", 0, {"audio": "<resource>-0"})]
    plan = validate_plan(own, TABLE, mentioned="Transcribe 'Talk.WAV' for me, and see cat.jpg")
    assert plan.tasks[0].args == {"audio": "Talk.WAV"}
    # a text argument naming its own task means the one text document the request names
    read = [t("summarization", 0, {"text": "<resource>-0"})]
    plan = validate_plan(read, TABLE, mentioned="Sum up the article 'notes.txt' about photo.jpg")
    assert plan.tasks[0].args == {"text": "notes.txt"}
    # with no file, or several, of that kind it stays an error; and so it is with the repair left out
    for request in ("Transcribe my talk", "Transcribe a.wav and b.mp3"):
        with pytest.raises(PlanError, match="refers to the task itself"):
            validate_plan(own, TABLE, mentioned=request)
    with pytest.raises(PlanError, match="refers to the task itself"):
        validate_plan(own, TABLE, mentioned="Transcribe talk.wav", repairs=["repeats", "pass-through"])


def test_salvage_keeps_the_valid_tasks_and_drops_what_depends_on_the_invalid_ones():
    reply = json.dumps(
        {
            "tasks": [
                t("image-to-text", 0, {"image": "a.jpg"}),
                t("text-to-speech", 1, {"text": "b.png"}),
                t("translation", 2, {"text": "<resource>-1"}, [1]),
                t("summarization", 3, {"text": "<resource>-0"}, [0]),
            ]
        }
    )
    plan = salvage_plan(reply, TABLE)
    assert [(x.id, x.task) for x in plan.tasks] == [(0, "image-to-text"), (3, "summarization")]
    assert len(plan.dropped) == 2 and "task 1 (text-to-speech)" in plan.dropped[0]  # and says why
    assert salvage_plan("no json here", TABLE).tasks == []


BAD = json.dumps({"tasks": [t("image-to-text", 0, {"image": "a.jpg"}), t("text-to-speech", 1, {"text": "a.jpg"})]})


async def test_after_a_failed_repair_the_valid_part_of_the_plan_is_kept():
    llm = ScriptedLLM(BAD, BAD)
    plan = await Planner(llm, TABLE).plan("describe a.jpg and read it aloud")
    assert [x.task for x in plan.tasks] == ["image-to-text"]
    repair = llm.calls[1][0][-1].content
    assert repair.startswith("That plan is invalid: task 1 (text-to-speech): 'text' takes text")
    assert "Keep every task the request needs" in repair
    with pytest.raises(PlanError, match="repair attempt failed"):
        await Planner(ScriptedLLM(BAD, BAD), TABLE, salvage=False).plan("describe a.jpg and read it aloud")


DEMOS = [
    {"request": "Summarise this: 'a b c'",
     "tasks": [{"step": "summarise the text", **t("summarization", 0, {"text": "a b c"})}]},
    {"request": "Translate 'hi' into French",
     "tasks": [{"step": "translate", **t("translation", 0, {"text": "hi", "tgt_lang": "French"})}]},
    {"history": [{"role": "user", "content": "draw a cat"}, {"role": "assistant", "content": "cat.png"}],
     "request": "describe it", "tasks": [t("image-to-text", 0, {"image": "cat.png"})]},
]  # fmt: skip


async def test_a_file_copied_from_a_demo_asks_for_a_repair():
    copied = json.dumps({"tasks": [t("image-classification", 0, {"image": "cat.png"})]})
    fixed = json.dumps({"tasks": [t("image-classification", 0, {"image": "dog.jpg"})]})
    llm = ScriptedLLM(copied, fixed)
    planner = Planner(llm, TABLE, demos=DEMOS)
    assert planner.example_files == {"cat.png"}
    plan = await planner.plan("what breed is the dog in dog.jpg?")
    assert plan.tasks[0].args == {"image": "dog.jpg"}
    assert "a file from the examples" in llm.calls[1][0][-1].content
    # the same file named in the history counts as the user's
    history = [Message(role="user", content="draw a cat"), Message(role="assistant", content="done: cat.png")]
    plan = await Planner(ScriptedLLM(copied), TABLE, demos=DEMOS).plan("classify that picture", history)
    assert plan.tasks[0].args == {"image": "cat.png"}


def test_demos_with_history_are_shown_last_and_only_with_a_history():
    planner = Planner(ScriptedLLM(), TABLE, demos=DEMOS, steps=False)
    alone = planner.messages("first request")
    assert [m.content for m in alone if m.role == "user"] == [DEMOS[0]["request"], DEMOS[1]["request"], "first request"]
    history = [Message(role="user", content="earlier"), Message(role="assistant", content="answer")]
    chat = planner.messages("second request", history)
    assert chat[: len(alone) - 1] == alone[:-1]  # the same prefix, so a prompt cache still applies
    assert [m.content for m in chat[len(alone) - 1 :]] == [
        "draw a cat",
        "cat.png",
        "describe it",
        json.dumps({"tasks": [t("image-to-text", 0, {"image": "cat.png"})]}),
        "earlier",
        "answer",
        "second request",
    ]


def test_demos_are_fitted_to_the_table():
    table = TaskTable(
        [
            TaskType(name="translation", description="", inputs=["text"], outputs=["text"]),
            TaskType(name="summarization", description="", inputs=["text"], outputs=["text"]),
        ]
    )
    planner = Planner(ScriptedLLM(), table, demos=DEMOS)
    assert [d["request"] for d in planner.demos] == [DEMOS[0]["request"], DEMOS[1]["request"]]
    assert planner.demos[1]["tasks"][0]["args"] == {"text": "hi"}  # no tgt_lang in this table


def test_steps_are_shown_first_when_on_and_left_out_when_off():
    with_steps = Planner(ScriptedLLM(), TABLE, demos=DEMOS[:1]).messages("x")  # on by default
    assert with_steps[2].content.startswith('{"tasks": [{"step": "summarise the text", "task": "summarization"')
    assert '"step" says in a few words' in with_steps[0].content
    without = Planner(ScriptedLLM(), TABLE, demos=DEMOS[:1], steps=False).messages("x")
    assert '"step"' not in without[2].content and '"step"' not in without[0].content


async def test_steps_in_the_reply_are_kept_on_the_task_for_selection():
    reply = json.dumps({"tasks": [{"step": " summarise\n the text ", **t("summarization", 0, {"text": "a b"})}]})
    plan = await Planner(ScriptedLLM(reply), TABLE, steps=True).plan("summarise 'a b'")
    assert plan.tasks[0].model_dump() == {**t("summarization", 0, {"text": "a b"}), "step": "summarise the text"}


def test_retrieved_demos_follow_the_fixed_ones_most_similar_last():
    bank = DemoBank(
        [
            {"request": "Transcribe talk.wav", "tasks": [t("automatic-speech-recognition", 0, {"audio": "talk.wav"})]},
            {"request": "Draw a cat in a hat", "tasks": [t("text-to-image", 0, {"text": "a cat in a hat"})]},
            DEMOS[0],
        ]
    )
    planner = Planner(ScriptedLLM(), TABLE, demos=DEMOS[:1], bank=bank, retrieve=2)
    shown = [m.content for m in planner.messages("please draw a dog in a hat") if m.role == "user"]
    assert shown == [DEMOS[0]["request"], "Transcribe talk.wav", "Draw a cat in a hat", "please draw a dog in a hat"]
    shown = [m.content for m in planner.messages("transcribe my memo.wav") if m.role == "user"]
    assert shown[-2] == "Transcribe talk.wav"


@pytest.mark.parametrize("image", ["<resource>-0", "lighthouse sunset.jpg"])
def test_a_task_needing_a_file_the_request_does_not_give_is_told_which_task_makes_it_from_words(image):
    raw = {"tasks": [{"task": "image-to-image", "id": 0, "dep": [], "args": {"image": image, "text": "a lighthouse"}}]}
    with pytest.raises(PlanError) as error:
        validate_plan(raw, TABLE, mentioned="Draw a picture of a lighthouse at sunset.")
    assert str(error.value).endswith(
        'The request gives no image file, so if it asks for a new image, write the task type "text-to-image" instead of "image-to-image"'
    )


def test_no_hint_when_the_request_gives_a_file_of_that_kind():
    raw = {"tasks": [{"task": "image-to-image", "id": 0, "dep": [], "args": {"image": "other.png"}}]}
    with pytest.raises(PlanError) as error:
        validate_plan(raw, TABLE, mentioned="Restyle photo.jpg as a watercolour.")
    assert "text-to-image" not in str(error.value)


def test_with_input_folders_a_stem_counts_only_when_that_file_is_there():
    sign = [t("image-to-text", 0, {"image": "sign.png"})]
    there = {"sign.png"}
    assert validate_plan(sign, TABLE, mentioned="read the sign aloud", exists=there.__contains__).tasks
    made_up = [t("image-to-image", 0, {"image": "lighthouse.jpg", "text": "a lighthouse"})]
    with pytest.raises(PlanError, match="a file the user did not give"):
        validate_plan(made_up, TABLE, mentioned="Draw a lighthouse", exists=there.__contains__)


async def test_without_dep_lists_a_plan_gets_its_dependencies_from_the_placeholders():
    plan_text = json.dumps(
        {
            "tasks": [
                {"task": "text-to-image", "id": 0, "args": {"text": "a cat"}},
                {"task": "image-to-text", "id": 1, "args": {"image": "<resource>-0"}},
            ]
        }
    )
    llm = ScriptedLLM(plan_text)
    planner = Planner(llm, TABLE, demos=DEMOS, deps=False)
    schema_task = planner.constraint()["json_schema"]["$defs"]["task-0"]["anyOf"][0]
    assert "dep" not in schema_task["properties"] and "dep" not in schema_task["required"]
    system, *demos = planner.prefix()
    assert '"dep"' not in system.content and all('"dep"' not in m.content for m in demos)
    plan = await planner.plan("draw a cat and describe the picture")
    assert [(task.id, task.dep) for task in plan.tasks] == [(0, []), (1, [0])]
    with_deps = Planner(ScriptedLLM(), TABLE, demos=DEMOS)  # the default: each task lists its dep
    assert "dep" in with_deps.constraint()["json_schema"]["$defs"]["task-1"]["anyOf"][0]["required"]
    assert '"dep": [' in with_deps.prefix()[0].content


def test_the_settings_choose_the_history_budget_and_how_many_bank_demos_are_retrieved():
    from hugginggpt.config import Settings

    plain = Planner.from_settings(ScriptedLLM(), TABLE, Settings(history_tokens=77))
    assert plain.history_tokens == 77 and plain.bank is None
    retrieving = Planner.from_settings(ScriptedLLM(), TABLE, Settings(plan_retrieved_demos=2))
    assert retrieving.bank is not None and retrieving.bank.demos and retrieving.retrieve == 2
    fixed = [m.content for m in plain.messages("draw a dog in a hat") if m.role == "user"]
    more = [m.content for m in retrieving.messages("draw a dog in a hat") if m.role == "user"]
    assert len(more) == len(fixed) + 2 and more[: len(fixed) - 1] == fixed[:-1]


def _step(task):
    return {"step": "the part of the request it does", **task}


def _valid(schema, value):
    return Draft202012Validator(schema).is_valid(value)


def test_an_ordered_schema_lets_a_task_use_only_the_tasks_before_it():
    schema = plan_schema(
        TABLE.subset({"image-to-text", "text-to-speech", "visual-question-answering"}), 3, typed=True, ordered=True
    )
    chain = [t("text-to-speech", 0, {"text": "hello"}), t("image-to-text", 1, {"image": "a.jpg"})]
    assert _valid(schema, {"tasks": []})
    assert _valid(schema, {"tasks": chain})
    assert _valid(
        schema,
        {
            "tasks": [
                t("image-to-text", 0, {"image": "a.jpg"}),
                t("visual-question-answering", 1, {"image": "<resource>-0", "text": "what?"}, [0]),
            ]
        },
    )
    for bad in (
        [t("image-to-text", 0, {"image": "<resource>-0"})],  # itself
        [t("image-to-text", 0, {"image": "a.jpg"}), t("image-to-text", 1, {"image": "<resource>-2"})],  # a later task
        [t("image-to-text", 0, {"image": "a.jpg"}), t("image-to-text", 1, {"image": "b.jpg"}, [1])],  # dep on itself
        [t("image-to-text", 1, {"image": "a.jpg"})],  # ids count from 0
        [t("image-to-text", i, {"image": "a.jpg"}) for i in range(4)],  # more than max_tasks
    ):
        assert not _valid(schema, {"tasks": bad}), bad


async def test_when_a_plan_and_its_repair_fail_one_task_on_the_inputs_comes_out():
    self_ref = json.dumps({"tasks": [t("image-to-text", 0, {"image": "<resource>-0"})]})
    single = json.dumps({"tasks": [t("image-to-text", 0, {"image": "photo.jpg"})]})
    llm = ScriptedLLM("not a plan", "still not a plan", single)
    planner = Planner(llm, TABLE, demos=DEMOS)
    plan = await planner.plan("what is in photo.jpg?")
    assert [(x.task, x.args) for x in plan.tasks] == [("image-to-text", {"image": "photo.jpg"})]
    assert len(llm.calls) == 3
    fallback = llm.calls[2][1]
    assert llm.calls[2][0] == llm.calls[0][0]  # the same prompt, a narrower schema
    assert not _valid(fallback, {"tasks": []})
    assert _valid(fallback, {"tasks": [_step(t("image-to-text", 0, {"image": "photo.jpg"}))]})
    assert not _valid(fallback, {"tasks": [_step(x) for x in json.loads(self_ref)["tasks"]]})
    two = [t("image-to-text", 0, {"image": "a.jpg"}), t("text-to-speech", 1, {"text": "<resource>-0"}, [0])]
    assert not _valid(fallback, {"tasks": [_step(x) for x in two]})
    # the request names a photo: the one task is one that takes an image
    assert not _valid(fallback, {"tasks": [_step(t("summarization", 0, {"text": "photo.jpg"}))]})


async def test_when_the_single_task_fails_too_its_type_runs_on_the_requests_own_inputs():
    made_up = json.dumps({"tasks": [t("automatic-speech-recognition", 0, {"audio": "speech.wav"})]})
    llm = ScriptedLLM("not a plan", "still not a plan", made_up)
    plan = await Planner(llm, TABLE, demos=DEMOS).plan("What is said in talk.wav and memo.mp3?")
    assert [(x.task, x.args) for x in plan.tasks] == [
        ("automatic-speech-recognition", {"audio": "talk.wav"}),
        ("automatic-speech-recognition", {"audio": "memo.mp3"}),
    ]
    assert len(llm.calls) == 3  # no call more: the type comes from the single task's reply
    # a text input: the one text document named, else the request's own words
    in_text = json.dumps({"tasks": [t("summarization", 0, {"text": "talk.wav"})]})
    llm = ScriptedLLM("not a plan", "still not a plan", in_text)
    plan = await Planner(llm, TABLE, demos=DEMOS).plan("Sum up notes.txt for me")
    assert [(x.task, x.args) for x in plan.tasks] == [("summarization", {"text": "notes.txt"})]
    llm = ScriptedLLM(
        "not a plan", "still not a plan", json.dumps({"tasks": [t("summarization", 0, {"text": "memo.mp3"})]})
    )
    plan = await Planner(llm, TABLE, demos=DEMOS).plan("Sum up:   the  meeting moved to Friday.")
    assert [(x.task, x.args["text"], x.step) for x in plan.tasks] == [
        ("summarization", "Sum up: the meeting moved to Friday.", "Sum up: the meeting moved to Friday.")
    ]


async def test_the_last_resort_needs_a_file_of_the_kind_the_type_reads():
    made_up = json.dumps({"tasks": [t("image-to-text", 0, {"image": "cat.jpg"})]})
    llm = ScriptedLLM("not a plan", "still not a plan", made_up)
    with pytest.raises(PlanError, match="nor that task on the request's own inputs: image-to-text needs an image file"):
        await Planner(llm, TABLE, demos=DEMOS).plan("Describe a cat for me.")
    llm = ScriptedLLM("not a plan", "still not a plan", json.dumps({"tasks": [t("no-such-task", 0, {})]}))
    with pytest.raises(PlanError, match="names no task type to keep"):
        await Planner(llm, TABLE, demos=DEMOS).plan("Describe a cat for me.")


async def test_an_evaluation_can_leave_each_technique_out():
    made_up = json.dumps({"tasks": [t("automatic-speech-recognition", 0, {"audio": "speech.wav"})]})

    def planner(*without):
        llm = ScriptedLLM("not a plan", "still not a plan", made_up)
        return llm, Planner.from_settings(llm, TABLE, Settings(), without=without)

    llm, full = planner()
    assert len((await full.plan("What is said in talk.wav?")).tasks) == 1 and len(llm.calls) == 3
    llm, no_last = planner("last-resort")
    with pytest.raises(PlanError, match="nor a single task"):
        await no_last.plan("What is said in talk.wav?")
    llm, no_fallback = planner("fallback")
    with pytest.raises(PlanError):
        await no_fallback.plan("What is said in talk.wav?")
    assert len(llm.calls) == 2
    assert (
        "$defs" in full.constraint()["json_schema"] and "$defs" not in planner("ordered")[1].constraint()["json_schema"]
    )
    assert planner("repeats")[1].repairs == (
        "pass-through",
        "own-file",
        "named-document",
        "unasked-media",
        "edited-input",
    )
    assert full.asked_media and not planner("asked-media")[1].asked_media
    with pytest.raises(ValueError, match="nothing to leave out named guess; known: ordered, retargeted-demos"):
        planner("guess")


def test_without_retargeted_demos_a_foreign_table_keeps_only_the_demos_it_names():
    foreign = TaskTable([TaskType(name="text-translator", description="translates a given text into another language", inputs=["text"], outputs=["text"])])  # fmt: skip
    matched = Planner.from_settings(ScriptedLLM(), foreign, Settings())
    plain = Planner.from_settings(ScriptedLLM(), foreign, Settings(), without=["retargeted-demos"])
    assert any(t["task"] == "text-translator" for d in matched.demos for t in d["tasks"])
    assert all(not d["tasks"] for d in plain.demos)


def test_the_fallback_takes_a_task_type_that_needs_no_file_when_the_request_names_none():
    planner = Planner(ScriptedLLM(), TABLE, demos=DEMOS)
    anything = planner.fallback_constraint("Tell me a joke about owls, then read it aloud.")["json_schema"]
    assert _valid(anything, {"tasks": [_step(t("text-generation", 0, {"text": "a joke about owls"}))]})
    # the one task has nothing before it: no <resource>-N in a text argument either
    assert not _valid(anything, {"tasks": [_step(t("text-generation", 0, {"text": "about <resource>-1"}))]})
    # no file named: no task that needs one (a made-up cat.jpg for "generate a cat" cannot come out)
    assert not _valid(anything, {"tasks": [_step(t("image-to-image", 0, {"image": "cat.jpg", "text": "a cat"}))]})
    audio = planner.fallback_constraint("What is said in talk.wav?")["json_schema"]
    assert _valid(audio, {"tasks": [_step(t("automatic-speech-recognition", 0, {"audio": "talk.wav"}))]})
    assert not _valid(audio, {"tasks": [_step(t("text-generation", 0, {"text": "talk.wav"}))]})


async def test_without_the_fallback_a_failed_repair_is_an_error():
    llm = ScriptedLLM("not a plan", "still not a plan")
    with pytest.raises(PlanError, match="no JSON"):
        await Planner(llm, TABLE, demos=DEMOS, fallback=False).plan("what is in photo.jpg?")
    assert len(llm.calls) == 2
