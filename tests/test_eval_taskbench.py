"""The TaskBench loader and tool table: on a fixture made here, and on the shared sample files when present."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from hugginggpt.errors import PlanError
from hugginggpt.eval.taskbench import TaskBenchError, TaskBenchTools, from_taskbench, load_samples, load_tools
from hugginggpt.planning.rules import parse_plan, salvage_plan
from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable
from hugginggpt.types import arg_modality

DEFAULT_DESCRIPTIONS = {t.name: t.description for t in DEFAULT_TASK_TYPES}

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "taskbench-data"
needs_shared = pytest.mark.needs(
    SHARED.is_dir(), reason=f"{SHARED} is absent (a clean clone has no ../shared); the fixture tests cover this"
)

TOOLS = {
    "nodes": [
        {"id": "Image Stitcher", "desc": "Stitches two images. Uses magic.", "input-type": ["image", "image"],
         "output-type": ["image"]},
        {"id": "Image Downloader", "desc": "Downloads an image from a given URL.", "input-type": ["url"],
         "output-type": ["image"]},
        {"id": "Image Search", "desc": "Searches for images.", "input-type": ["text"], "output-type": ["Image"]},
        {"id": "Sentence Similarity", "desc": "How similar two texts are.", "input-type": ["text", "text"],
         "output-type": []},
        {"id": "Image Editing", "desc": "Edits.", "input-type": ["text", "image"], "output-type": ["image"]},
    ]
}  # fmt: skip

ROWS = [
    {"id": 11, "type": "chain", "instruction": "Download https://x.org/a.png and stitch it with b.jpg.",
     "task_nodes": [{"task": "Image Downloader", "arguments": ["https://x.org/a.png"]},
                    {"task": "Image Stitcher", "arguments": ["<node-0>", "b.jpg"]}],
     "task_links": [{"source": "Image Downloader", "target": "Image Stitcher"}]},
    {"id": "12", "type": "single", "user_request": "How alike are these?",
     "task_nodes": [{"task": "Sentence Similarity", "arguments": "one sentence"}]},
    {"id": "13", "type": "single", "instruction": "Speed it up.",
     "task_nodes": [{"task": "Video Speed Changer", "arguments": ["v.mp4", 2, {"name": "x", "value": "y"}]}]},
]  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n", encoding="utf-8")
    tools = tmp_path / "tool_desc.json"
    tools.write_text(json.dumps(TOOLS), encoding="utf-8")
    return data, tools


def test_loader_reads_rows_and_normalises_arguments(files):
    data, _ = files
    samples = load_samples(data)
    assert [s.id for s in samples] == ["11", "12", "13"]
    assert samples[0].task_nodes[1].arguments == ["<node-0>", "b.jpg"]
    assert samples[0].task_links[0].source == "Image Downloader"
    assert samples[1].instruction == "How alike are these?"  # from user_request
    assert samples[1].task_nodes[0].arguments == ["one sentence"]  # a bare string is one argument
    assert samples[2].task_nodes[0].arguments == ["v.mp4", "2", "y"]


def test_loader_reads_a_json_array(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    assert len(load_samples(path)) == 3


def test_loader_errors_name_the_file_and_row(tmp_path):
    with pytest.raises(TaskBenchError, match="does not exist"):
        load_samples(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(TaskBenchError, match=r"bad\.jsonl: not JSON lines"):
        load_samples(bad)
    bad.write_text(json.dumps({"id": "1", "type": "single"}) + "\n", encoding="utf-8")
    with pytest.raises(TaskBenchError, match="row 1: instruction"):
        load_samples(bad)
    bad.write_text("\n", encoding="utf-8")
    with pytest.raises(TaskBenchError, match="no label rows"):
        load_samples(bad)
    bad.write_text('{"tools": []}', encoding="utf-8")
    with pytest.raises(TaskBenchError, match="not a TaskBench tool list"):
        load_tools(bad)


def test_tool_table_maps_names_types_and_descriptions(files):
    _, path = files
    tools = TaskBenchTools(load_tools(path))
    table = tools.table
    assert tools.task_of["Image Stitcher"] == "image-stitcher"
    assert tools.tool_of["image-search"] == "Image Search"
    stitcher = table.get("image-stitcher")
    assert stitcher.inputs == ["image", "image_2"]
    assert [arg_modality(k) for k in stitcher.inputs] == ["image", "image"]
    assert table.get("image-downloader").inputs == ["text"]  # a URL is text to the planner
    assert table.get("image-search").outputs == ["image"]  # "Image" in the tool list
    assert table.get("sentence-similarity").outputs == ["text"]  # no output type listed
    assert table.get("image-editing").inputs == ["text", "image"]
    # our own description where the name matches one of our task types, else TaskBench's first sentence
    assert tools.matched == ["Sentence Similarity", "Image Editing"]
    assert tools.unmatched == ["Image Stitcher", "Image Downloader", "Image Search"]
    assert table.get("image-stitcher").description == "stitches two images"
    assert table.get("sentence-similarity").description == DEFAULT_DESCRIPTIONS["sentence-similarity"]  # ours


def test_label_tools_outside_the_tool_list_are_reported(files):
    data, path = files
    tools = TaskBenchTools(load_tools(path))
    assert tools.outside(load_samples(data)) == {"Video Speed Changer": 1}


@needs_shared
@pytest.mark.parametrize(
    ("domain", "rows", "splits", "unmatched", "outside"),
    [
        ("data_huggingface", 31, {"single": 18, "chain": 8, "dag": 5}, 0, 6),
        ("data_multimedia", 33, {"single": 27, "chain": 5, "dag": 1}, 37, 0),
    ],
)
def test_shared_sample_files_load(domain, rows, splits, unmatched, outside):
    samples = load_samples(SHARED / domain / "data_sample.jsonl")
    tools = TaskBenchTools(load_tools(SHARED / domain / "tool_desc.json"))
    assert len(samples) == rows
    assert Counter(s.type for s in samples) == splits
    assert len(tools.unmatched) == unmatched
    assert len(tools.outside(samples)) == outside
    for sample in samples:
        gold, problems = tools.gold(sample)
        assert problems == []
        assert len(gold.arguments) == len(sample.task_nodes)


def _reply(text_arg, key="tasks"):
    tasks = [
        {"task": "image-to-text", "id": 0, "dep": [], "args": {"image": "a.jpg"}},
        {"task": "summarization", "id": 1, "dep": [], "args": {"text": "a long story"}},
        {"task": "summarization", "id": 2, "dep": [0, 1], "args": {"text": text_arg}},
    ]
    return json.dumps({key: tasks})


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("<node-0>", "<resource>-0"),
        ("<node>-0", "<resource>-0"),
        ("< NODE > - 1", "<resource>-1"),
        (["<node-0>", "<node-1>"], "<resource>-0, <resource>-1"),
        ("caption: <generated>-0 and <node-1>", "caption: <resource>-0 and <resource>-1"),
        ("<<node-0.jpg>", "<resource>-0.jpg"),  # `<node-0.jpg` once `<node-0.jpg>` is unwrapped
        ("<node-0>>1", "<resource>-0>1"),  # the `>` after `<node-0>` is text, as it was
        ("no placeholder", "no placeholder"),
    ],
)
def test_taskbench_placeholders_are_read_as_ours(raw, expected):
    plan = parse_plan(_reply(raw), TaskTable(), adapt=from_taskbench)
    assert plan.tasks[2].args["text"] == expected


def test_a_bracketed_node_file_name_stays_a_file_name():
    # our parser unwraps `<photo.jpg>` before it reads placeholders: `<node-0.jpg>` is the file node-0.jpg
    plan = salvage_plan(_reply("<node-0.jpg>"), TaskTable(), adapt=from_taskbench)
    assert len(plan.tasks) == 2 and "'node-0.jpg' is an image file" in plan.dropped[0]


def test_a_node_placeholder_without_a_number_is_refused():
    with pytest.raises(PlanError, match="without a task number"):
        parse_plan(_reply("see <node>"), TaskTable(), adapt=from_taskbench)


@pytest.mark.parametrize("key", ["tasks", "plan", "task_nodes"])
def test_a_task_nodes_list_is_read_as_tasks(key):
    plan = parse_plan(_reply("<node-0>", key), TaskTable(), adapt=from_taskbench)
    assert [(x.id, x.dep) for x in plan.tasks] == [(0, []), (1, []), (2, [0])]
    assert from_taskbench(json.loads(_reply("x", key)))["tasks"] == json.loads(_reply("x", key))[key]


def test_a_reply_in_our_format_is_unchanged():
    for reply in ([{"task": "x", "args": {"text": "<resource>-0", "n": 2}}], {"task": "x"}, {"other": 1}, "text", 3):
        assert from_taskbench(reply) == reply
