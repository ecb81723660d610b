"""`hugginggpt bench`: the measurements and ratios of one run, on a real pipeline with a scripted controller."""

import json

from typer.testing import CliRunner

from helpers import role_of
from hugginggpt.config import Settings
from hugginggpt.eval.bench import run_bench
from hugginggpt.experts import ExpertRegistry, llm_experts
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import HuggingGPT

PLAN = json.dumps({"tasks": [{"task": "summarization", "id": 0, "dep": [], "args": {"text": "Cats sleep."}}]})


def reply(messages, schema):
    return PLAN if role_of(messages) == "planning" else "Cats sleep a lot."


def pipeline(tmp_path) -> HuggingGPT:
    llm = ScriptedLLM(fallback=reply, delay=0.01)
    return HuggingGPT(llm, ExpertRegistry(llm_experts(llm)), settings=Settings(output_dir=tmp_path))


async def test_bench_times_cold_and_warm_plans_and_both_kinds_of_run(tmp_path):
    messages = []
    report = await run_bench(pipeline(tmp_path), tmp_path, warm_requests=["a", "b"], progress=messages.append)

    assert report.llm == "scripted"
    assert report.cold.tasks == 1 and report.cold.error is None
    assert [s.request for s in report.warm] == ["a", "b"]
    assert all(s.first_task_seconds is not None and s.first_task_seconds <= s.seconds for s in report.warm)
    assert report.run_streamed_seconds and report.run_sequential_seconds
    assert report.rss_mib > 0 and report.peak_rss_mib > 0
    ratios = report.ratios()
    assert ratios["warm / cold plan latency"] > 0
    assert 0 < ratios["first streamed task / whole plan (warm)"] <= 1
    assert ratios["prompt tokens served from cache (warm)"] is None  # the scripted LLM has no cache counts
    assert ratios["run with plan streaming / without"] > 0
    assert "cold plan (the whole prompt is new)" in messages


async def test_a_failing_plan_is_reported_not_raised(tmp_path):
    llm = ScriptedLLM(fallback="not json at all")
    gpt = HuggingGPT(llm, ExpertRegistry(llm_experts(llm)), settings=Settings(output_dir=tmp_path))
    report = await run_bench(gpt, tmp_path, warm_requests=["a"], run_request=None)
    assert report.cold.error and "no JSON" in report.cold.error
    assert report.run_streamed_seconds is None
    assert report.ratios()["run with plan streaming / without"] is None


def test_the_bench_command_prints_the_ratios(tmp_path, monkeypatch):
    from helpers import OpenAIServer, Reply

    def handler(body):
        stage = role_of(body["messages"])
        return Reply(PLAN if stage == "planning" else "Cats sleep a lot.")

    with OpenAIServer(handler) as server:
        monkeypatch.setenv("HUGGINGGPT_LLM_BASE_URL", server.url)
        from hugginggpt.cli import app

        result = CliRunner().invoke(app, ["bench", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["ratios"]) == {
        "warm / cold plan latency",
        "first streamed task / whole plan (warm)",
        "prompt tokens served from cache (warm)",
        "run with plan streaming / without",
    }
    assert data["cold"]["tasks"] == 1
