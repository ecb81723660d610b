"""When a question about an image goes unanswered by the plan's labels: the conditions, read from the plan and
the reply."""

from hugginggpt.followup import answered, asked_image, is_question, question_task, question_types, unanswered
from hugginggpt.grounding import Removal
from hugginggpt.response import Response
from hugginggpt.tasks import TaskTable
from hugginggpt.types import Task, TaskResult

TABLE = TaskTable()


def _ran(*tasks: Task, status: str = "ok") -> list[TaskResult]:
    return [TaskResult(task_id=t.id, task=t.task, args=t.args, status=status) for t in tasks]


DETECT = Task(id=0, task="object-detection", args={"image": "dog.jpg"})


def test_questions_are_told_from_other_requests() -> None:
    assert is_question("What colour is the bicycle in dog.jpg?")
    assert is_question("how many dogs are in a.jpg")
    assert is_question("In invoice.png, what is the total amount due?")
    assert not is_question("Describe street.jpg and read it aloud.")
    assert not is_question("Draw a picture of a lighthouse")


def test_the_asked_image_is_the_one_image_the_plan_looked_at() -> None:
    classify = Task(id=1, task="image-classification", args={"image": "dog.jpg"})
    assert asked_image([DETECT, classify], _ran(DETECT, classify)) == "dog.jpg"
    other = Task(id=1, task="object-detection", args={"image": "cat.jpg"})
    assert asked_image([DETECT, other], _ran(DETECT, other)) is None  # two images: which one is ambiguous
    assert asked_image([DETECT], _ran(DETECT, status="failed")) is None
    made = Task(id=1, task="image-classification", args={"image": "<resource>-0"}, dep=[0])
    assert asked_image([DETECT, made], _ran(DETECT, made)) == "dog.jpg"  # another task's output is not asked about


def test_question_types_only_for_a_question_and_an_installed_model() -> None:
    every = lambda task: True  # noqa: E731
    assert question_types("What colour is the bicycle?", [DETECT], "dog.jpg", TABLE, every) == [
        "document-question-answering",
        "visual-question-answering",
    ]
    only_vqa = lambda task: task == "visual-question-answering"  # noqa: E731
    assert question_types("What colour is it?", [DETECT], "dog.jpg", TABLE, only_vqa) == ["visual-question-answering"]
    assert question_types("Find the dogs in dog.jpg.", [DETECT], "dog.jpg", TABLE, every) == []
    assert question_types("What colour is it?", [DETECT], "dog.jpg", TABLE, lambda task: False) == []
    assert question_types("What colour is it?", [DETECT], None, TABLE, every) == []  # no one image asked about
    vqa = Task(id=0, task="visual-question-answering", args={"image": "letter.png", "text": "What is my room?"})
    assert question_types("What is my room?", [vqa], "letter.png", TABLE, every) == ["document-question-answering"]


def test_a_reply_that_says_the_results_do_not_hold_the_answer() -> None:
    for text in (
        "The total amount due is not provided in the given results.",
        "The invoice date on invoice.png is not present in the given information.",
        "letter.png does not contain any information about the room number.",
        "The colour cannot be determined from the results.",
    ):
        assert unanswered(Response(text=text)), text
    for text in ("There are 2 dogs in a.jpg.", "Yes, giraffe.jpg shows a zebra.", "No, there is no zebra in it."):
        assert not unanswered(Response(text=text)), text
    removal = Removal(sentence="The bicycle is blue.", reason="names a colour the results do not give (blue)")
    assert unanswered(Response(text="", removed=[removal]))


def test_an_answer_is_one_that_does_not_say_the_text_lacks_it() -> None:
    def result(text: str, status: str = "ok") -> TaskResult:
        return TaskResult(task_id=1, task="document-question-answering", status=status, outputs={"text": text})

    assert answered(result('216.48 (from the line "TOTAL DUE EUR 216.48" of invoice.png)'))
    assert not answered(result('The text of invoice.png (12 lines read by OCR) does not say: "What is the date?".'))
    assert not answered(result("", status="failed"))
    unsupported = TaskResult(
        task_id=1,
        task="visual-question-answering",
        status="ok",
        outputs={"text": 'The facts I have about a.jpg (a dog) do not say: "x".', "json": {"supported": False}},
    )
    assert not answered(unsupported)
    assert answered(unsupported.model_copy(update={"outputs": {"text": "Red.", "json": {"supported": True}}}))


def test_the_question_task_asks_the_request_of_the_image() -> None:
    task = question_task("visual-question-answering", "dog.jpg", "What colour is the bicycle?", 3)
    assert (task.id, task.dep, task.args) == (3, [], {"image": "dog.jpg", "text": "What colour is the bicycle?"})
    assert task.step
