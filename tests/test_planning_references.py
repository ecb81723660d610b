"""Placeholders and file names in plan arguments (`planning.references`)."""

from __future__ import annotations

import pytest

from hugginggpt.errors import PlanError
from hugginggpt.planning.references import file_kind, media_kind, normalize_placeholders, references


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("<resource>-1", "<resource>-1"),
        ("<GENERATED>-2", "<resource>-2"),
        ("<resource-4>", "<resource>-4"),
        ("caption: <generated>-0 and <resource-1>", "caption: <resource>-0 and <resource>-1"),
        ("<example.wav>", "example.wav"),
        ("<https://x.org/a.png> and < b.jpg >", "https://x.org/a.png and b.jpg"),
    ],
)
def test_placeholder_forms_normalise(raw, expected):
    assert normalize_placeholders(raw) == expected


def test_a_placeholder_without_a_number_is_refused():
    with pytest.raises(PlanError, match="without a task number"):
        normalize_placeholders("read <resource> aloud")


def test_taskbench_node_placeholder_is_not_ours():
    # TaskBench's `<node-N>` is read by the TaskBench evaluation (`eval.taskbench.from_taskbench`)
    assert normalize_placeholders("<node-3>") == "<node-3>"


@pytest.mark.parametrize(
    "value, kind, media",
    [
        ("photo.JPG", "image", "image"),
        ("https://x.org/talk.wav", "audio", "audio"),
        ("clip.mp4", "video", "video"),
        ("notes.md", "text", None),
        ("archive.zip", None, None),
        ("a photo.jpg", None, None),
        ("<resource>-0", None, None),
    ],
)
def test_file_kind_by_extension(value, kind, media):
    assert file_kind(value) == kind
    assert media_kind(value) == media


def test_references_are_the_task_numbers_in_a_value():
    assert references("compare <resource>-0 with <resource>-12") == [0, 12]
    assert references("<GENERATED>-1") == []  # only the normalised form counts
