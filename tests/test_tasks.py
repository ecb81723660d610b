from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable, normalize_task_name, produces


def test_table_holds_the_papers_24_task_types():
    names = [t.name for t in DEFAULT_TASK_TYPES]
    assert len(names) == len(set(names)) == 25  # the paper's 24 plus image-editing
    assert {"object-detection", "text-to-speech", "visual-question-answering", "text-to-video"} <= set(names)


def test_names_normalise():
    assert normalize_task_name(" Object_Detection ") == "object-detection"
    assert normalize_task_name("Visual Question  Answering") == "visual-question-answering"
    table = TaskTable()
    assert table.resolve("Text_To_Speech").name == "text-to-speech"
    assert table.resolve("captioning") is None


def test_subset_and_outputs():
    table = TaskTable().subset({"object-detection", "summarization"})
    assert sorted(table.names()) == ["object-detection", "summarization"]
    detection = table.get("object-detection")
    assert produces(detection, "image") and produces(detection, "text") and not produces(detection, "audio")
    assert TaskTable().get("translation").arg_keys == ["text", "tgt_lang"]
