"""Running our planner over TaskBench rows: predictions, repair accounting, reports, and the CLI command."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hugginggpt.cli import app
from hugginggpt.errors import LLMError
from hugginggpt.eval.runner import evaluate, predict, run_taskbench, save_predictions
from hugginggpt.eval.taskbench import TaskBenchTools, Tool, load_samples
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.planning import Planner

TOOLS = {
    "nodes": [
        {"id": "Automatic Speech Recognition", "desc": "", "input-type": ["audio"], "output-type": ["text"]},
        {"id": "Summarization", "desc": "", "input-type": ["text"], "output-type": ["text"]},
        {"id": "Text-to-Image", "desc": "", "input-type": ["text"], "output-type": ["image"]},
    ]
}
ROWS = [
    {"id": "1", "type": "chain", "instruction": "Transcribe talk.wav and summarise it.",
     "task_nodes": [{"task": "Automatic Speech Recognition", "arguments": ["talk.wav"]},
                    {"task": "Summarization", "arguments": ["<node-0>"]}],
     "task_links": [{"source": "Automatic Speech Recognition", "target": "Summarization"}]},
    {"id": "2", "type": "single", "instruction": "Draw a red fox.",
     "task_nodes": [{"task": "Text-to-Image", "arguments": ["a red fox"]}], "task_links": []},
]  # fmt: skip
PLANS = {
    "Transcribe talk.wav and summarise it.": [
        {"task": "automatic-speech-recognition", "id": 0, "dep": [], "args": {"audio": "talk.wav"}},
        {"task": "summarization", "id": 1, "dep": [0], "args": {"text": "<resource>-0"}},
    ],
    # a task type the tool list lacks: invalid, and so are the repair and the single task (the same reply)
    "Draw a red fox.": [{"task": "fox-drawing", "id": 0, "dep": [], "args": {"text": "a red fox"}}],
}


def _reply(messages, schema) -> str:
    """The plan for the latest request in PLANS; a repair request gets the same plan again."""
    request = next((m.content for m in reversed(messages) if m.content in PLANS), None)
    return json.dumps({"tasks": PLANS.get(request, [])})


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    (tmp_path / "tool_desc.json").write_text(json.dumps(TOOLS), encoding="utf-8")
    return path


def _tools() -> TaskBenchTools:
    return TaskBenchTools([Tool.model_validate(t) for t in TOOLS["nodes"]])


async def test_run_scores_parsed_and_unparsable_plans(data):
    llm = ScriptedLLM(fallback=_reply)
    report, predictions = await run_taskbench(lambda tb: Planner(llm, tb.table, demos=[]), data, llm="scripted")
    assert [p.id for p in predictions] == ["1", "2"]
    assert [t.task for t in predictions[0].plan] == ["automatic-speech-recognition", "summarization"]
    assert predictions[0].llm_calls == 1
    assert predictions[1].plan is None
    assert "unknown task type 'fox-drawing'" in predictions[1].error
    assert "nor that task on the request's own inputs" in predictions[1].error
    assert predictions[1].llm_calls == 3  # the plan, the one repair request, then the single-task fallback
    overall = report.variants["taskbench"]["overall"]
    assert (overall.samples, overall.parsed, overall.parse_rate) == (2, 1, 50.0)
    assert overall.node_f1 == overall.edge_f1 == overall.t_f1 == overall.v_f1 == 100.0
    ours = report.variants["ours"]["overall"]
    assert ours.node_f1 == 80.0  # tp 2, fn 1
    assert report.variants["ours"]["single"].node_f1 == 0.0
    assert "dag" not in report.variants["ours"]
    assert report.repaired == 0
    assert report.unmatched_tools == [] and report.outside_tools == {}


async def test_the_prompt_lists_the_taskbench_tools_as_task_types(data):
    llm = ScriptedLLM(fallback=_reply)
    await run_taskbench(lambda tb: Planner(llm, tb.table), data, limit=1)
    messages, schema = llm.calls[0]
    assert len(llm.calls) == 1
    assert "- automatic-speech-recognition(audio) -> text" in messages[0].content
    assert "object-detection(" not in messages[0].content
    assert messages[-1].content == ROWS[0]["instruction"]
    branches = schema["$defs"]["task-0"]["anyOf"]
    assert [b["properties"]["task"]["enum"] for b in branches] == [
        ["automatic-speech-recognition"],
        ["summarization"],
        ["text-to-image"],
    ]
    assert branches[0]["properties"]["args"]["required"] == ["audio"]


async def test_a_repaired_plan_is_counted(data):
    samples = load_samples(data)[1:]
    good = json.dumps({"tasks": [{"task": "text-to-image", "id": 0, "dep": [], "args": {"text": "a red fox"}}]})
    llm = ScriptedLLM(json.dumps({"tasks": PLANS["Draw a red fox."]}), good)
    predictions = await predict(Planner(llm, _tools().table, demos=[]), samples)
    assert predictions[0].plan is not None and predictions[0].llm_calls == 2
    report = evaluate(samples, predictions, _tools())
    assert report.repaired == 1
    assert report.variants["taskbench"]["overall"].v_f1 == 100.0


async def test_a_plan_written_in_taskbench_terms_is_read(data):
    samples = load_samples(data)[:1]
    theirs = json.dumps({"task_nodes": PLANS[samples[0].instruction]}).replace("<resource>-0", "<node-0>")
    predictions = await predict(Planner(ScriptedLLM(theirs), _tools().table, demos=[]), samples)
    assert [t.model_dump(exclude={"step"}) for t in predictions[0].plan] == PLANS[samples[0].instruction]
    assert predictions[0].llm_calls == 1


async def test_an_unreachable_llm_stops_the_run(data):
    llm = ScriptedLLM(LLMError("the LLM at http://x is unreachable"))
    with pytest.raises(LLMError, match="unreachable"):
        await predict(Planner(llm, _tools().table), load_samples(data))


async def test_evaluate_needs_a_prediction_per_sample(data):
    with pytest.raises(ValueError, match="no prediction for 2 samples"):
        evaluate(load_samples(data), [], _tools())


async def test_save_predictions_writes_our_plan_format(data, tmp_path):
    llm = ScriptedLLM(fallback=_reply)
    predictions = await predict(Planner(llm, _tools().table), load_samples(data))
    out = tmp_path / "pred.jsonl"
    save_predictions(predictions, out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["id"] == "1"
    assert lines[0]["plan"][1] == {"id": 1, "task": "summarization", "dep": [0], "args": {"text": "<resource>-0"}}
    assert lines[1]["plan"] is None and lines[1]["error"]
    assert [line["llm_calls"] for line in lines] == [1, 3]  # the second: plan, repair, single-task fallback


class _OpenAIHandler(BaseHTTPRequestHandler):
    posts = 0  # chat completions asked for, over all servers of this test module

    def do_POST(self) -> None:
        type(self).posts += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = next((m["content"] for m in reversed(body["messages"]) if m["content"] in PLANS), None)
        text = json.dumps({"tasks": PLANS.get(request, [])})
        reply = json.dumps(
            {
                "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_cli_prints_a_json_report_and_saves_predictions(data, endpoint, tmp_path):
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(
        app,
        ["--base-url", endpoint, "eval", "taskbench", "--data", str(data), "--json", "--save-predictions", str(out)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["samples"] == 2
    assert report["variants"]["taskbench"]["chain"]["edge_f1"] == 100.0
    assert report["prompt_tokens_per_sample"] == 200.0  # 100, and 300 for the plan, its repair and the fallback
    assert report["generated_tokens_per_sample"] == 40.0  # 20, and 60
    assert report["planner"] == "ours" and "planners" not in report
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2 and "planner" not in lines[0]


def test_cli_runs_the_plain_baseline(data, endpoint, tmp_path):
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(
        app,
        ["--base-url", endpoint, "eval", "taskbench", "--data", str(data), "--planner", "plain", "--json",
         "--save-predictions", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["planner"] == "plain" and report["samples"] == 2
    assert report["variants"]["taskbench"]["chain"]["edge_f1"] == 100.0
    assert report["variants"]["ours"]["overall"]["parse_rate"] == 50.0  # the fox's image argument: not repaired
    assert report["repaired"] == 0
    assert report["prompt_tokens_per_sample"] == 100.0  # one call a row, the invalid one too
    assert report["generated_tokens_per_sample"] == 20.0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["id"], line["planner"], line["plan"] is None) for line in lines] == [
        ("1", "plain", False),
        ("2", "plain", True),
    ]


def test_cli_reports_both_planners_on_the_same_rows(data, endpoint, tmp_path):
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(
        app,
        ["--base-url", endpoint, "eval", "taskbench", "--data", str(data), "--planner", "both", "--json",
         "--save-predictions", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["planner"] == "both" and report["samples"] == 2
    assert list(report["planners"]) == ["ours", "plain"]
    ours, plain = report["planners"]["ours"], report["planners"]["plain"]
    assert (ours["planner"], plain["planner"]) == ("ours", "plain")
    assert ours["samples"] == plain["samples"] == 2
    assert (ours["prompt_tokens_per_sample"], plain["prompt_tokens_per_sample"]) == (200.0, 100.0)
    assert (ours["generated_tokens_per_sample"], plain["generated_tokens_per_sample"]) == (40.0, 20.0)
    assert "seconds_per_sample" in ours and "seconds_per_sample" in plain
    assert ours["variants"]["ours"]["overall"]["samples"] == plain["variants"]["ours"]["overall"]["samples"] == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["planner"], line["id"]) for line in lines] == [
        ("ours", "1"),
        ("ours", "2"),
        ("plain", "1"),
        ("plain", "2"),
    ]


def test_cli_prints_both_planners_side_by_side(data, endpoint):
    result = CliRunner().invoke(
        app, ["--base-url", endpoint, "eval", "taskbench", "--data", str(data), "--planner", "both"]
    )
    assert result.exit_code == 0, result.output
    assert "TaskBench (unparsable dropped)" in result.stdout
    assert "ours (unparsable = empty plan)" in result.stdout
    lines = [line.strip("│ ").split() for line in result.stdout.splitlines()]
    overall = [n for n, cells in enumerate(lines) if cells[:1] == ["overall"]]
    assert len(overall) == 2  # one per variant table: each split's row of ours, then plain's right under it
    for n in overall:
        assert [cell for cell in lines[n] if cell != "│"][:3] == ["overall", "2", "ours"]
        assert [cell for cell in lines[n + 1] if cell != "│"][:2] == ["2", "plain"]
    assert "ours: " in result.stdout and "200 prompt and 40 generated tokens a row" in result.stdout
    assert "plain: " in result.stdout and "100 prompt and 20 generated tokens a row" in result.stdout


def test_cli_prints_tables(data, endpoint):
    result = CliRunner().invoke(app, ["--base-url", endpoint, "eval", "taskbench", "--data", str(data), "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert "TaskBench (unparsable dropped)" in result.stdout
    assert "ours (unparsable = empty plan)" in result.stdout
    assert "gold edges from task_links" in result.stdout


def test_cli_reports_a_missing_file_without_a_traceback(tmp_path, endpoint):
    result = CliRunner().invoke(
        app, ["--base-url", endpoint, "eval", "taskbench", "--data", str(tmp_path / "none.jsonl")]
    )
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert "Traceback" not in result.output


def test_cli_answers_calls_made_before_from_the_llm_cache(data, endpoint, tmp_path):
    cache = tmp_path / "calls.sqlite"
    command = ["--base-url", endpoint, "eval", "taskbench", "--data", str(data), "--json", "--llm-cache", str(cache)]
    before = _OpenAIHandler.posts
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    made = _OpenAIHandler.posts - before
    assert made == 4  # row 1: one call; row 2: the plan, its repair and the fallback
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert _OpenAIHandler.posts - before == made  # every call answered from the file
    assert "LLM calls: 4 answered from" in again.stderr
    scores = [json.loads(r.stdout.strip().splitlines()[-1])["variants"] for r in (first, again)]
    assert scores[0] == scores[1]


def test_cli_leaves_out_the_plan_repairs_it_is_told_to_and_refuses_unknown_ones(data, endpoint):
    base = ["--base-url", endpoint, "eval", "taskbench", "--data", str(data), "--json"]
    result = CliRunner().invoke(app, [*base, "--without", "repeats", "--without", "pass-through"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*base, "--without", "everything"])
    assert result.exit_code == 1 and "nothing to leave out named everything; known: ordered" in result.output
    result = CliRunner().invoke(app, [*base, "--without", "ordered", "--without", "last-resort"])
    assert result.exit_code == 0, result.output
