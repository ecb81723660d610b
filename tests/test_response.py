import re

import pytest

from hugginggpt.config import Settings
from hugginggpt.errors import LLMError
from hugginggpt.facts import task_facts
from hugginggpt.grounding import Grounds
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.response import plain_summary, respond
from hugginggpt.types import Artifact, Selection, Task, TaskResult

UNSERVED = "no installed model serves text-to-image; to serve it: pip install 'hugginggpt[diffusers]'"
BOXES = Artifact(path="/out/r/0-object-detection-5e1f.png", media_type="image/png", sha256="0" * 64, modality="image")
SPEECH = Artifact(path="/out/r/1-text-to-speech-77aa.wav", media_type="audio/wav", sha256="1" * 64, modality="audio")


def detection(task_id, text, image=None):
    """A detector's result as `detection_output` writes it: counts in the text, one box per object in the JSON."""
    box = {"xmin": 10, "ymin": 20, "xmax": 200, "ymax": 180}
    objects = [
        {"label": label, "score": 0.97, "box": box}
        for count in text.split(", ")
        for label in [count.split(" ", 1)[1]] * int(count.split(" ", 1)[0])
    ]
    outputs = {"text": text, "json": {"objects": objects}}
    if image is not None:
        outputs["image"] = image
    return TaskResult(task_id=task_id, task="object-detection", model_id="coco/ssd", status="ok", outputs=outputs)


def facts_of(tasks, results, selections=()):
    return task_facts(tasks, list(selections), results)


OCR_TTS_TASKS = [
    Task(id=0, task="image-to-text", args={"image": "/photos/sign.png"}),
    Task(id=1, task="text-to-speech", dep=[0], args={"text": "<resource>-0"}),
]
OCR_TTS_RESULTS = [
    TaskResult(
        task_id=0,
        task="image-to-text",
        model_id="ocr/v4",
        status="ok",
        outputs={"text": "NO PARKING", "json": {"lines": [{"text": "NO PARKING", "box": [[3, 4], [90, 4]]}]}},
    ),
    TaskResult(task_id=1, task="text-to-speech", model_id="piper/joe", status="ok", outputs={"audio": SPEECH}),
]
LIGHTHOUSE_TASKS = [
    Task(id=0, task="text-to-image", args={"text": "a picture of a lighthouse"}),
    Task(id=1, task="image-classification", args={"image": "/photos/a.jpg"}),
]
LIGHTHOUSE_RESULTS = [
    TaskResult(task_id=0, task="text-to-image", status="failed", error=UNSERVED),
    TaskResult(task_id=1, task="image-classification", model_id="in/cls", status="ok", outputs={"text": "tabby"}),
]
LIGHTHOUSE_SELECTIONS = [Selection(task_id=0, model_id=None, reason=UNSERVED, strategy="none")]
COUNTS = {"a.jpg": "1 cat, 1 potted plant, 1 vase", "b.jpg": "1 zebra", "c.jpg": "2 zebra"}
INVENTED = "I drew a picture of a lighthouse and saved it as lighthouse.jpg."


async def test_the_prompt_has_each_tasks_short_result_never_raw_json_boxes_or_paths():
    tasks = [Task(id=0, task="object-detection", args={"image": "/photos/c.jpg"}), *OCR_TTS_TASKS[1:]]
    tasks[1] = Task(id=1, task="text-to-speech", args={"text": "two zebras"})
    results = [detection(0, "2 zebra", BOXES), OCR_TTS_RESULTS[1]]
    llm = ScriptedLLM("There are 2 zebras in c.jpg.")
    await respond(llm, "How many zebras are in c.jpg? Say it aloud.", facts_of(tasks, results))
    prompt = llm.calls[0][0][-1].content
    assert prompt.startswith("How many zebras are in c.jpg? Say it aloud.")
    assert "- Task 0, object detection on c.jpg: 2 zebra (it produced an image)" in prompt
    assert '- Task 1, text to speech of "two zebras": done (it produced audio)' in prompt
    for raw in ("xmin", "box", "0.97", "{", "[", "/out/", ".png", ".wav", "/photos/", "coco/ssd", "piper"):
        assert raw not in prompt


async def test_counts_over_several_detections_are_added_up_by_code_in_the_prompt():
    tasks = [Task(id=i, task="object-detection", args={"image": f"/photos/{name}"}) for i, name in enumerate(COUNTS)]
    results = [detection(i, text) for i, text in enumerate(COUNTS.values())]
    llm = ScriptedLLM("There are 3 zebras.")
    await respond(llm, "How many zebras are there in a.jpg, b.jpg and c.jpg?", facts_of(tasks, results))
    prompt = llm.calls[0][0][-1].content
    assert "- Task 2, object detection on c.jpg: 2 zebra\n" in prompt
    assert prompt.rstrip().endswith("- Added up over the 3 object detections: 3 zebras, 1 cat, 1 potted plant, 1 vase")


async def test_a_reply_naming_a_file_the_run_did_not_make_is_removed():
    llm = ScriptedLLM("The sign says NO PARKING. I saved the text as 1-image-to-text-789012.json.")
    deltas = []
    response = await respond(
        llm, "Read the text in sign.png aloud.", facts_of(OCR_TTS_TASKS, OCR_TTS_RESULTS), on_delta=deltas.append
    )
    assert response.text == "The sign says NO PARKING." == "".join(deltas)
    (removal,) = response.removed
    assert "789012.json" in removal.sentence and "did not produce" in removal.reason
    assert response.error is None


async def test_an_invented_picture_never_reaches_the_user_and_the_answer_says_why_it_could_not_be_made():
    llm = ScriptedLLM(f"The photo a.jpg shows a tabby cat. {INVENTED}")
    deltas = []
    facts = facts_of(LIGHTHOUSE_TASKS, LIGHTHOUSE_RESULTS, LIGHTHOUSE_SELECTIONS)
    response = await respond(llm, "Draw a lighthouse and say what a.jpg shows.", facts, on_delta=deltas.append)
    assert "lighthouse.jpg" not in "".join(deltas) and "drew" not in response.text
    assert response.text.startswith("The photo a.jpg shows a tabby cat.")
    assert f'I could not produce an image (text to image of "a picture of a lighthouse"): {UNSERVED}.' in response.text
    assert response.text == "".join(deltas)
    assert [r.claims for r in response.removed] == ["image"]


async def test_when_no_task_succeeded_the_llm_is_not_asked_and_the_answer_says_what_failed_and_why():
    llm = ScriptedLLM(INVENTED)
    facts = facts_of(LIGHTHOUSE_TASKS[:1], LIGHTHOUSE_RESULTS[:1], LIGHTHOUSE_SELECTIONS)
    response = await respond(llm, "Draw a picture of a lighthouse", facts)
    assert llm.calls == [] and not response.asked
    assert response.text == f'I could not produce an image (text to image of "a picture of a lighthouse"): {UNSERVED}.'


async def test_a_skipped_task_says_it_was_not_done_because_of_the_failure_before_it():
    tasks = [*LIGHTHOUSE_TASKS[:1], Task(id=1, task="image-to-text", dep=[0], args={"image": "<resource>-0"})]
    skipped = TaskResult(
        task_id=1, task="image-to-text", status="skipped", error=f"task 0 (text-to-image) failed: {UNSERVED}"
    )
    response = await respond(
        ScriptedLLM(INVENTED), "draw and describe", facts_of(tasks, [LIGHTHOUSE_RESULTS[0], skipped])
    )
    assert response.text.startswith("I could not produce an image") and "lighthouse.jpg" not in response.text


async def test_with_no_tasks_an_invented_picture_is_removed_and_the_answer_says_none_was_made():
    llm = ScriptedLLM(f"{INVENTED} I saved the image as a JPEG file.")
    response = await respond(llm, "Draw a picture of a lighthouse", [])
    assert response.text == "No image was produced in this run: no task was planned to make one."
    assert len(response.removed) == 2


async def test_a_request_for_a_picture_that_got_none_says_so_even_when_the_llm_does_not():
    llm = ScriptedLLM("A lighthouse is a tall tower with a light at the top.")
    response = await respond(llm, "Draw a picture of a lighthouse", [])
    assert response.text == (
        "A lighthouse is a tall tower with a light at the top. "
        "No image was produced in this run: no task was planned to make one."
    )


async def test_a_direct_answer_without_tasks_passes_the_check():
    response = await respond(ScriptedLLM("Hello! How can I help?"), "hi", [])
    assert response.text == "Hello! How can I help?" and response.removed == []


async def test_the_streamed_answer_emits_only_checked_sentences():
    seen = []

    def at_each_delta(text):
        seen.append(text)
        assert "b.png" not in text and "picture" not in text

    reply = "Task 0 found 1 zebra in b.jpg. I drew a picture of it as b.png.\nIn total there is 1 zebra."
    llm = ScriptedLLM(reply, chunk=3)
    tasks = [Task(id=0, task="object-detection", args={"image": "/photos/b.jpg"})]
    results = [detection(0, "1 zebra")]
    response = await respond(llm, "How many zebras in b.jpg?", facts_of(tasks, results), on_delta=at_each_delta)
    assert seen == ["Task 0 found 1 zebra in b.jpg.", "\nIn total there is 1 zebra."]
    assert response.text == "".join(seen)


async def test_an_llm_failure_falls_back_to_the_plain_summary():
    facts = facts_of(OCR_TTS_TASKS, OCR_TTS_RESULTS)
    deltas = []
    response = await respond(ScriptedLLM(LLMError("llm down")), "read sign.png aloud", facts, on_delta=deltas.append)
    assert response.error == "llm down"
    assert response.text == plain_summary(facts, "llm down") == "".join(deltas)
    assert response.text.splitlines() == [
        "I could not write the answer (llm down). Here is what the models returned:",
        "- Image to text on sign.png: NO PARKING.",
        "- Text to speech of the result of task 0: done.",
    ]


async def test_an_empty_or_fully_removed_reply_falls_back_to_the_plain_summary():
    facts = facts_of(OCR_TTS_TASKS, OCR_TTS_RESULTS)
    empty = await respond(ScriptedLLM("  "), "read sign.png aloud", facts)
    assert empty.error == "the language model returned an empty answer" and "NO PARKING" in empty.text
    removed = await respond(ScriptedLLM("It is in out/sign.txt."), "read sign.png aloud", facts)
    assert removed.error is None and removed.text == plain_summary(facts) and len(removed.removed) == 1


async def test_without_tasks_an_llm_failure_says_the_request_could_not_be_answered():
    response = await respond(ScriptedLLM(LLMError("no model file")), "hi", [])
    assert response.text == "I could not answer this request: the language model failed (no model file)."


async def test_files_the_user_named_and_the_runs_artifacts_may_be_named():
    facts = facts_of(OCR_TTS_TASKS, OCR_TTS_RESULTS)
    grounds = Grounds.of(facts, ["Read sign.png aloud, like in my notes.txt"])
    reply = "The sign.png says NO PARKING; it is read aloud in 1-text-to-speech-77aa.wav. See notes.txt."
    response = await respond(ScriptedLLM(reply), "Read sign.png aloud", facts, grounds=grounds)
    assert response.text == reply and response.removed == []


TRANSLATE_TASKS = [
    Task(id=0, task="summarization", args={"text": "The meeting moved to Thursday."}),
    Task(id=1, task="translation", dep=[0], args={"text": "<resource>-0", "tgt_lang": "French"}),
]
TRANSLATE_RESULTS = [
    TaskResult(
        task_id=0, task="summarization", model_id="llm:q", status="ok", outputs={"text": "Meeting on Thursday."}
    ),
    TaskResult(task_id=1, task="translation", model_id="llm:q", status="ok", outputs={"text": "Réunion jeudi."}),
]


async def test_a_translation_the_reply_only_describes_is_given_word_for_word():
    facts = facts_of(TRANSLATE_TASKS, TRANSLATE_RESULTS)
    assert [f.final for f in facts] == [False, True]
    reply = "The summary was translated into French."
    response = await respond(ScriptedLLM(reply), "Summarise it and translate the summary into French.", facts)
    assert response.text == f"{reply}\n\nTranslation: Réunion jeudi."  # the summary, used by task 1, is not added


async def test_a_reply_that_gives_the_translation_gets_nothing_added():
    facts = facts_of(TRANSLATE_TASKS, TRANSLATE_RESULTS)
    reply = "In French: réunion  jeudi."
    response = await respond(ScriptedLLM(reply), "Summarise it and translate the summary into French.", facts)
    assert response.text == reply


async def test_a_plan_of_one_translation_is_answered_with_it_without_asking_the_llm():
    tasks = [Task(id=0, task="translation", args={"text": "Where is the station?", "tgt_lang": "German"})]
    results = [
        TaskResult(
            task_id=0, task="translation", model_id="llm:q", status="ok", outputs={"text": " Wo ist der Bahnhof? "}
        )
    ]
    llm, deltas = ScriptedLLM("unused"), []
    response = await respond(
        llm, "Translate 'Where is the station?' into German.", facts_of(tasks, results), on_delta=deltas.append
    )
    assert llm.calls == [] and not response.asked
    assert response.text == "Translation: Wo ist der Bahnhof?" == "".join(deltas)


async def test_a_direct_text_still_says_what_the_request_asked_for_and_did_not_get():
    tasks = [Task(id=0, task="text-generation", args={"text": "a poem about the sea"})]
    results = [TaskResult(task_id=0, task="text-generation", model_id="llm:q", status="ok", outputs={"text": "Waves."})]
    llm = ScriptedLLM("unused")
    response = await respond(llm, "Write a poem about the sea and draw a picture of it.", facts_of(tasks, results))
    assert llm.calls == []
    assert response.text.startswith("Written text: Waves.") and "No image was produced" in response.text


@pytest.mark.parametrize(
    "tasks, results",
    [
        (TRANSLATE_TASKS, TRANSLATE_RESULTS),  # two tasks: the answer says what came of both
        (  # a task whose text is not the thing asked for
            [Task(id=0, task="summarization", args={"text": "A long text."})],
            [TaskResult(task_id=0, task="summarization", model_id="llm:q", status="ok", outputs={"text": "Short."})],
        ),
        (  # an empty translation
            [Task(id=0, task="translation", args={"text": "Hi"})],
            [TaskResult(task_id=0, task="translation", model_id="llm:q", status="ok", outputs={"text": "  "})],
        ),
    ],
)
async def test_other_runs_still_ask_the_llm_for_the_answer(tasks, results):
    llm = ScriptedLLM("The answer.")
    response = await respond(llm, "Do it.", facts_of(tasks, results))
    assert len(llm.calls) == 1 and response.asked and response.text.startswith("The answer.")


# --- integration: the embedded controller LLM ----------------------------------------------------------------------

NUMBER_WORDS = {"no": 0, "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


@pytest.fixture(scope="module")
def embedded_llm():
    from hugginggpt.llm import llm_from_settings

    return llm_from_settings(Settings())


@pytest.mark.integration
async def test_the_embedded_llm_adds_up_counts_over_three_images_and_claims_nothing_else(embedded_llm):
    tasks = [Task(id=i, task="object-detection", args={"image": f"/photos/{name}"}) for i, name in enumerate(COUNTS)]
    results = [detection(i, text) for i, text in enumerate(COUNTS.values())]
    deltas = []
    response = await respond(
        embedded_llm,
        "How many zebras are there in a.jpg, b.jpg and c.jpg?",
        facts_of(tasks, results),
        on_delta=deltas.append,
    )
    text = response.text
    assert response.error is None and response.asked and text == "".join(deltas)
    assert re.search(r"\b(3|three)\b", text, re.IGNORECASE), text
    numbers = {int(n) for n in re.findall(r"\b\d+\b", text)}
    numbers |= {NUMBER_WORDS[w] for w in re.findall(r"\b\w+\b", text.lower()) if w in NUMBER_WORDS}
    assert numbers <= {0, 1, 2, 3}, text  # no count that is not in the results or their total
    for sentence in re.split(r"(?<=[.!?])\s+", text):  # the total is never put on a.jpg (a cat) alone
        alone = "a.jpg" in sentence and not ("b.jpg" in sentence and "c.jpg" in sentence)
        assert not (alone and re.search(r"\b([3-9]|three)\b", sentence, re.IGNORECASE)), text
    assert "dog" not in text.lower(), text
    assert response.removed == [], response.removed
