"""TaskBench metrics on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import pytest

from hugginggpt.eval.metrics import Counts, micro_f1, score, type_set, value_set
from hugginggpt.eval.taskbench import Graph, Node, Sample, TaskBenchTools, Tool, content_type
from hugginggpt.types import Plan, Task

TOOLS = TaskBenchTools(
    [
        Tool(id="Automatic Speech Recognition", input_type=["audio"], output_type=["text"]),
        Tool(id="Summarization", input_type=["text"], output_type=["text"]),
        Tool(id="Visual Question Answering", input_type=["image", "text"], output_type=["text"]),
        Tool(id="Text-to-Image", input_type=["text"], output_type=["image"]),
        Tool(id="Sentence Similarity", input_type=["text", "text"], output_type=[]),
    ]
)
NAMES = set(TOOLS.tools)


def test_micro_f1_sums_counts_over_samples():
    # sample 1: tp {a}, fn {b}; sample 2: tp {c}, fp {d}  -> P = 2/3, R = 2/3, F1 = 2/3
    counts = micro_f1([{"a", "b"}, {"c"}], [{"a"}, {"c", "d"}])
    assert (counts.tp, counts.fp, counts.fn) == (2, 1, 1)
    assert counts.precision == pytest.approx(2 / 3)
    assert counts.recall == pytest.approx(2 / 3)
    assert counts.f1 == pytest.approx(2 / 3)


def test_micro_f1_uses_sets_within_a_sample():
    counts = micro_f1([["a", "a", "b"]], [["a"]])
    assert (counts.tp, counts.fp, counts.fn) == (1, 0, 1)
    assert counts.f1 == pytest.approx(2 / 3)


def test_f1_is_undefined_when_both_sides_are_empty():
    assert Counts().f1 is None
    assert micro_f1([set()], [set()]).f1 is None
    assert micro_f1([{"a"}], [set()]).f1 == 0.0


def test_micro_f1_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="2 gold samples but 1"):
        micro_f1([set(), set()], [set()])


def test_content_type_follows_taskbench():
    assert content_type("example.jpg") == "image"
    assert content_type("'clip.wav'") == "audio"
    assert content_type("https://example.com/movie.mp4") == "video"
    assert content_type("What is in the picture?") == "text"
    assert content_type("PHOTO.JPG") == "text"  # TaskBench matches extensions case-sensitively


def _sample(kind, nodes, links=()):
    return Sample(
        id="1",
        instruction="x",
        type=kind,
        task_nodes=[Node(task=t, arguments=a) for t, a in nodes],
        task_links=[{"source": s, "target": t} for s, t in links],
    )


def test_gold_graph_types_references_and_drops_self_references():
    sample = _sample(
        "chain",
        [("Automatic Speech Recognition", ["example.wav"]), ("Summarization", ["<node-0>", "<node-1>"])],
        [("Automatic Speech Recognition", "Summarization")],
    )
    gold, problems = TOOLS.gold(sample)
    assert problems == []
    assert gold.links == [("Automatic Speech Recognition", "Summarization")]
    assert gold.arg_links == [("Automatic Speech Recognition", "Summarization")]
    # <node-1> inside node 1 is a self-reference: TaskBench drops it
    assert gold.arguments == [[("audio", "example.wav")], [("text", "Automatic Speech Recognition")]]
    assert type_set(gold) == {"Automatic Speech Recognition-audio", "Summarization-text"}
    assert value_set(gold) == {
        "Automatic Speech Recognition-audio-example.wav",
        "Summarization-text-Automatic Speech Recognition",
    }


def test_gold_reference_past_the_last_node_is_reported():
    _, problems = TOOLS.gold(_sample("single", [("Summarization", ["<node-3>"])]))
    assert problems == ["1: node 0 refers to <node-3>, past the last node"]


def test_reference_to_a_tool_without_outputs_has_type_none_and_unknown_tool_other():
    gold, _ = TOOLS.gold(_sample("chain", [("Sentence Similarity", ["a", "b"]), ("Summarization", ["<node-0>"])]))
    assert gold.arguments[1] == [("none", "Sentence Similarity")]
    gold, _ = TOOLS.gold(_sample("chain", [("Save Audio", ["a.wav"]), ("Summarization", ["<node-0>"])]))
    assert gold.arguments[1] == [("other", "Save Audio")]


def test_predicted_graph_edges_come_from_dep_and_args_from_values():
    plan = Plan(
        tasks=[
            Task(id=0, task="automatic-speech-recognition", args={"audio": "example.wav"}),
            Task(id=1, task="summarization", dep=[0], args={"text": "<resource>-0"}),
        ]
    )
    pred = TOOLS.predicted(plan)
    assert pred.nodes == ["Automatic Speech Recognition", "Summarization"]
    assert pred.links == [("Automatic Speech Recognition", "Summarization")]
    assert pred.arguments == [[("audio", "example.wav")], [("text", "Automatic Speech Recognition")]]


def test_one_sample_scored_by_hand():
    # gold: VQA(example.jpg, "What color is the car?") ; predicted: VQA + an extra Text-to-Image, question reworded
    gold, _ = TOOLS.gold(_sample("single", [("Visual Question Answering", ["example.jpg", "What color is the car?"])]))
    plan = Plan(
        tasks=[
            Task(id=0, task="visual-question-answering", args={"image": "example.jpg", "text": "Which color?"}),
            Task(id=1, task="text-to-image", args={"text": "a car"}),
        ]
    )
    scores = score([(gold, TOOLS.predicted(plan))], NAMES, drop_unparsed=True)
    # nodes: tp 1 (VQA), fp 1 (Text-to-Image) -> 2/3
    assert scores.node_f1 == 66.67
    # types: gold {VQA-image, VQA-text}; pred adds Text-to-Image-text -> tp 2, fp 1 -> 4/5
    assert scores.t_f1 == 80.0
    # values: tp 1 (the image), fp 2, fn 1 -> 2/5
    assert scores.v_f1 == 40.0
    # no edges anywhere: undefined, not zero
    assert scores.edge_f1 is None


def test_nodes_outside_the_tool_list_count_on_neither_side():
    gold, _ = TOOLS.gold(_sample("chain", [("Summarization", ["a"]), ("Save Audio", ["<node-0>"])]))
    pred = TOOLS.predicted(Plan(tasks=[Task(id=0, task="summarization", args={"text": "a"})]))
    assert score([(gold, pred)], NAMES, drop_unparsed=True).node_f1 == 100.0


def test_edges_from_task_links_and_from_references_differ_on_noisy_labels():
    # A 1-based label: node 1 refers to itself, but task_links has the intended edge.
    gold, _ = TOOLS.gold(
        _sample(
            "chain",
            [("Automatic Speech Recognition", ["a.wav"]), ("Summarization", ["<node-1>"])],
            [("Automatic Speech Recognition", "Summarization")],
        )
    )
    plan = Plan(
        tasks=[
            Task(id=0, task="automatic-speech-recognition", args={"audio": "a.wav"}),
            Task(id=1, task="summarization", dep=[0], args={"text": "<resource>-0"}),
        ]
    )
    scores = score([(gold, TOOLS.predicted(plan))], NAMES, drop_unparsed=True)
    assert scores.edge_f1 == 100.0
    assert scores.edge_f1_args == 0.0


def test_variants_drop_or_count_unparsable_plans():
    gold_a, _ = TOOLS.gold(_sample("single", [("Summarization", ["text one"])]))
    gold_b, _ = TOOLS.gold(_sample("single", [("Text-to-Image", ["a cat"])]))
    pred_a = TOOLS.predicted(Plan(tasks=[Task(id=0, task="summarization", args={"text": "text one"})]))
    pairs: list[tuple[Graph, Graph | None]] = [(gold_a, pred_a), (gold_b, None)]
    dropped = score(pairs, NAMES, drop_unparsed=True)
    assert (dropped.samples, dropped.parsed, dropped.scored, dropped.parse_rate) == (2, 1, 1, 50.0)
    assert dropped.node_f1 == 100.0
    empty = score(pairs, NAMES, drop_unparsed=False)
    assert (empty.scored, empty.parse_rate) == (2, 50.0)
    assert empty.node_f1 == 66.67  # tp 1, fn 1
    assert empty.v_f1 == 66.67
