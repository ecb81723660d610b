"""A question about an image that the plan's results could not answer, asked again of a question-answering model.

A small planner often plans a question about an image ("what colour is the bicycle in dog.jpg?", "what is the total
on invoice.png?") as detection or classification, whose labels cannot answer it; the answer then says the results do
not give it, or invents it and the grounding check removes the claim. When that happens and a model that answers
questions about images is installed, the question goes to it (document QA first, then VQA; a type the plan already
ran is not asked again), and its answer is the direct answer. The added task is shown in the plan and the account
like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .response import Response
from .tasks import TaskTable
from .types import Task, TaskResult, arg_modality

# tried in this order: a document question is answered from the text read off the page; when the image has no
# readable text (an ExpertError) or the text does not say, the VQA model answers from the scene
QUESTION_TASKS = ("document-question-answering", "visual-question-answering")
STEP = "answer the question, which the results above did not answer"

_QUESTION_START = re.compile(
    r"^\s*(?:what|which|who|whom|whose|where|when|why|how|is|are|was|were|does|do|did|can|could|has|have)\b",
    re.IGNORECASE,
)
# how a reply says that the results do not hold the answer ("is not provided in the given results", "does not
# contain any information about", "cannot be determined from ...")
_NOT_ANSWERED = re.compile(
    r"\b(?:not|no|cannot|can't|unable)\b[^.!?]{0,60}?\b(?:provided|present|given|mentioned|included|available|shown|"
    r"stated|listed|specified|information|contain|contains|say|says|tell|tells|indicate|indicates|determined?|"
    r"answer)\b",
    re.IGNORECASE,
)
_DOES_NOT_SAY = re.compile(r"\b(?:does|do) not say\b", re.IGNORECASE)


def is_question(request: str) -> bool:
    """The request asks something: it has a question mark or starts like a question."""
    return "?" in request or bool(_QUESTION_START.match(request))


def asked_image(tasks: Sequence[Task], results: Sequence[TaskResult]) -> str | None:
    """The one image (a file or URL, not another task's output) that the plan's succeeded tasks looked at; None
    when there is none or several."""
    ok = {r.task_id for r in results if r.status == "ok"}
    images: set[str] = set()
    for task in tasks:
        if task.id not in ok:
            continue
        for key, value in task.args.items():
            if arg_modality(key) == "image" and "<resource>-" not in value:
                images.add(value)
    return images.pop() if len(images) == 1 else None


def unanswered(response: Response) -> bool:
    """The reply says the results do not answer the request, or a claim of it was not in the results."""
    return bool(response.removed) or bool(_NOT_ANSWERED.search(response.text))


def answered(result: TaskResult) -> bool:
    """A question-answering task that gave an answer: by its `supported` flag where it has one (the composed
    experts), else by its text (not "the text of X does not say ...")."""
    text = str(result.outputs.get("text", ""))
    if result.status != "ok" or not text.strip():
        return False
    data = result.outputs.get("json")
    if isinstance(data, dict) and isinstance(data.get("supported"), bool):
        return data["supported"]
    return not _DOES_NOT_SAY.search(text)


def question_types(
    request: str,
    tasks: Sequence[Task],
    image: str | None,
    table: TaskTable,
    available: Callable[[str], bool],
) -> list[str]:
    """The question-answering task types to ask, in order, if the reply leaves the request unanswered: those the
    plan did not already ask and a model serves; none when the request is no question or there is no one asked
    image (`asked_image`)."""
    if not is_question(request) or image is None:
        return []
    planned = {task.task for task in tasks}
    return [name for name in QUESTION_TASKS if name not in planned and name in table and available(name)]


def question_task(task_type: str, image: str, request: str, task_id: int) -> Task:
    return Task(id=task_id, task=task_type, args={"image": image, "text": request}, step=STEP)
