import json

from hugginggpt.errors import LLMError
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.response import fallback_answer, respond, result_digest
from hugginggpt.types import Artifact, Selection, Task, TaskResult

TASKS = [
    Task(id=0, task="text-to-image", args={"text": "cat"}),
    Task(id=1, task="image-classification", dep=[0], args={"image": "<resource>-0"}),
]
SELECTIONS = [Selection(task_id=0, model_id="m/draw", reason="only one", strategy="single")]
IMAGE = Artifact(path="outputs/r/0.png", media_type="image/png", sha256="0" * 64, modality="image")
RESULTS = [
    TaskResult(
        task_id=0, task="text-to-image", model_id="m/draw", status="ok", outputs={"image": IMAGE, "text": "x" * 5000}
    ),
    TaskResult(task_id=1, task="image-classification", status="skipped", error="task 0 failed"),
]


def test_digest_trims_long_values_and_names_files():
    digest = result_digest(TASKS, SELECTIONS, RESULTS)
    assert digest[0]["model"] == "m/draw" and digest[0]["outputs"]["image"] == "outputs/r/0.png"
    assert len(digest[0]["outputs"]["text"]) < 700 and "5000 characters" in digest[0]["outputs"]["text"]
    assert digest[1] == {
        "id": 1,
        "task": "image-classification",
        "args": {"image": "<resource>-0"},
        "status": "skipped",
        "error": "task 0 failed",
    }


async def test_respond_streams_the_llm_answer_with_results_in_the_prompt():
    llm = ScriptedLLM("The cat picture is at outputs/r/0.png.")
    deltas = []
    digest = result_digest(TASKS, SELECTIONS, RESULTS)
    text, error = await respond(llm, "draw a cat", digest, on_delta=deltas.append)
    assert error is None and "".join(deltas) == text
    prompt = llm.calls[0][0][-1].content
    assert prompt.startswith("draw a cat") and json.dumps("outputs/r/0.png") in prompt


async def test_respond_falls_back_when_the_llm_fails():
    digest = result_digest(TASKS, SELECTIONS, RESULTS)
    text, error = await respond(ScriptedLLM(LLMError("llm down")), "draw a cat", digest)
    assert error == "llm down"
    assert "Task 0 (text-to-image) with m/draw: ok" in text and "image: outputs/r/0.png" in text
    assert "Task 1 (image-classification) with no model: skipped — task 0 failed" in text


def test_fallback_for_a_direct_answer():
    assert "language model is not available" in fallback_answer("hi", [])
