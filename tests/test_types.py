from datetime import datetime, timedelta

from hugginggpt.types import Answer, Artifact, TaskResult, arg_modality


def test_arg_modality():
    assert arg_modality("image") == "image"
    assert arg_modality("image_2") == arg_modality("image2") == "image"
    assert arg_modality("text") == "text"
    assert arg_modality("tgt_lang") is None
    assert arg_modality("images") is None


def test_result_seconds_and_artifacts_round_trip():
    start = datetime(2026, 1, 1)
    artifact = Artifact(path="out/a.png", media_type="image/png", sha256="0" * 64, modality="image")
    result = TaskResult(
        task_id=0,
        task="text-to-image",
        status="ok",
        outputs={"image": artifact, "text": "x"},
        started_at=start,
        finished_at=start + timedelta(seconds=1.5),
    )
    assert result.seconds == 1.5
    answer = Answer(request="r", text="t", results=[result])
    again = Answer.model_validate(answer.model_dump(mode="json"))
    assert again.artifacts() == [artifact]
    assert TaskResult(task_id=1, task="x").seconds is None
