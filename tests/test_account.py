from datetime import datetime, timedelta

from hugginggpt.account import HEADING, render_account, split_answer
from hugginggpt.facts import task_facts
from hugginggpt.types import Artifact, Selection, Task, TaskResult

START = datetime(2026, 1, 1, 12, 0, 0)
SPEECH = Artifact(
    path="/srv/out/run-1/1-text-to-speech-9f3a.wav", media_type="audio/wav", sha256="1" * 64, modality="audio"
)
UNSERVED = "no installed model serves text-to-video; to serve it: a remote endpoint with HF_TOKEN"
TASKS = [
    Task(id=0, task="image-to-text", args={"image": "/photos/sign.png"}),
    Task(id=1, task="text-to-speech", dep=[0], args={"text": "<resource>-0"}),
    Task(id=2, task="text-to-video", args={"text": "a sunset"}),
]
RESULTS = [
    TaskResult(
        task_id=0,
        task="image-to-text",
        model_id="rapidocr/PP-OCRv4",
        status="ok",
        outputs={"text": "STOP", "json": {"lines": [{"text": "STOP", "box": [1, 2, 3, 4]}]}},
        started_at=START,
        finished_at=START + timedelta(seconds=0.8),
    ),
    TaskResult(
        task_id=1,
        task="text-to-speech",
        model_id="piper/en_US-joe-medium",
        status="ok",
        outputs={"audio": SPEECH},
        started_at=START,
        finished_at=START + timedelta(seconds=2),
    ),
    TaskResult(task_id=2, task="text-to-video", status="failed", error=UNSERVED),
]
SELECTIONS = [Selection(task_id=2, model_id=None, reason=UNSERVED, strategy="none")]


def test_the_account_lists_each_task_with_its_real_model_status_time_and_files():
    account = render_account(task_facts(TASKS, SELECTIONS, RESULTS))
    lines = account.strip().splitlines()
    assert lines[0] == HEADING
    assert lines[1] == "- Task 0, image to text on sign.png: model rapidocr/PP-OCRv4, ok in 0.80 s. Result: STOP."
    assert lines[2] == (
        "- Task 1, text to speech of the result of task 0: model piper/en_US-joe-medium, ok in 2.00 s. "
        f"Produced: {SPEECH.path} (audio/wav)."
    )
    assert lines[3] == f'- Task 2, text to video of "a sunset": no model, failed: {UNSERVED}.'
    assert "box" not in account


def test_no_tasks_no_account():
    assert render_account([]) == ""


def test_an_answer_splits_into_its_direct_part_and_its_account():
    account = render_account(task_facts(TASKS, SELECTIONS, RESULTS))
    direct, rest = split_answer("The sign says STOP." + account)
    assert direct == "The sign says STOP." and rest == account.lstrip("\n")
    assert split_answer("Hello!") == ("Hello!", "")
