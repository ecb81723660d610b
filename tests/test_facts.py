from datetime import datetime, timedelta

from hugginggpt.facts import a_kind, describe, object_counts, short_result, task_facts, total_counts
from hugginggpt.types import Artifact, Selection, Task, TaskResult

START = datetime(2026, 1, 1, 12, 0, 0)
BOXES = Artifact(path="/out/r/0-object-detection-aa11.png", media_type="image/png", sha256="0" * 64, modality="image")
DETECTION = TaskResult(
    task_id=0,
    task="object-detection",
    model_id="coco/detector",
    status="ok",
    outputs={
        "text": "2 zebra",
        "image": BOXES,
        "json": {"objects": [{"label": "zebra", "score": 0.91, "box": {"xmin": 3, "ymin": 4, "xmax": 50, "ymax": 60}}]},
    },
    started_at=START,
    finished_at=START + timedelta(seconds=1.25),
)


def test_a_task_is_described_by_its_inputs_not_their_paths():
    assert (
        describe(Task(id=0, task="object-detection", args={"image": "/photos/in/c.jpg"})) == "object detection on c.jpg"
    )
    assert (
        describe(Task(id=1, task="translation", args={"text": "<resource>-0", "tgt_lang": "French"}))
        == "translation of the result of task 0 (tgt_lang: French)"
    )
    assert (
        describe(Task(id=2, task="text-to-image", args={"text": "a lighthouse"})) == 'text to image of "a lighthouse"'
    )


def test_the_short_result_has_counts_and_top_labels_never_boxes_or_scores_lists():
    assert short_result(DETECTION) == "2 zebra"
    labels = [{"label": name, "score": s} for name, s in [("tabby", 0.61), ("tiger cat", 0.2), ("lynx", 0.1), ("x", 0)]]
    classified = TaskResult(
        task_id=1,
        task="image-classification",
        status="ok",
        outputs={"text": "tabby (0.61)", "json": {"labels": labels}},
    )
    assert short_result(classified) == "tabby (0.61); top labels: tabby (0.61), tiger cat (0.20), lynx (0.10)"
    faces = TaskResult(task_id=2, task="object-detection", status="ok", outputs={"json": {"counts": {"face": 2}}})
    assert short_result(faces) == "2 face"
    long = TaskResult(task_id=3, task="summarization", status="ok", outputs={"text": "word " * 400})
    assert len(short_result(long)) <= 600 and short_result(long).endswith("…")


def test_facts_hold_status_model_time_files_and_the_reason_a_task_could_not_run():
    tasks = [
        Task(id=0, task="object-detection", args={"image": "/photos/c.jpg"}),
        Task(id=1, task="text-to-image", args={"text": "a lighthouse"}),
        Task(id=2, task="image-to-text", dep=[1], args={"image": "<resource>-1"}),
    ]
    unserved = "no installed model serves text-to-image; to serve it: pip install 'hugginggpt[diffusers]'"
    selections = [Selection(task_id=1, model_id=None, reason=unserved, strategy="none")]
    results = [
        DETECTION,
        TaskResult(task_id=1, task="text-to-image", status="failed", error=unserved),
        TaskResult(task_id=2, task="image-to-text", status="skipped", error="task 1 (text-to-image) failed: ..."),
    ]
    detection, drawing, caption = task_facts(tasks, selections, results)
    assert (detection.status, detection.model_id, detection.seconds, detection.kinds()) == (
        "ok",
        "coco/detector",
        1.25,
        ["image"],
    )
    assert detection.produced == [BOXES] and detection.makes == ["image"]
    assert (drawing.status, drawing.model_id, drawing.error, drawing.makes) == ("failed", None, unserved, ["image"])
    assert (caption.status, caption.result, caption.produced) == ("skipped", "", [])


def test_a_planned_task_without_a_result_is_not_run():
    (fact,) = task_facts([Task(id=0, task="summarization", args={"text": "a"})], [], [])
    assert fact.status == "not run" and fact.model_id is None


def test_kinds_read_as_english():
    assert [a_kind(k) for k in ("image", "audio", "video")] == ["an image", "audio", "a video"]


def test_objects_are_counted_per_label_and_added_up_over_tasks():
    assert object_counts(DETECTION) == {"zebra": 1}
    faces = TaskResult(task_id=1, task="object-detection", status="ok", outputs={"json": {"counts": {"face": 2}}})
    assert object_counts(faces) == {"face": 2}
    assert object_counts(TaskResult(task_id=2, task="summarization", status="ok", outputs={"text": "x"})) == {}
    facts = task_facts(
        [Task(id=0, task="object-detection", args={"image": "a.jpg"}), Task(id=1, task="object-detection")],
        [],
        [DETECTION, faces.model_copy(update={"task_id": 1})],
    )
    assert total_counts(facts) == {"face": 2, "zebra": 1}
