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

        result = CliRunner().invoke(app, ["bench", "--json", "--workload", "llm"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)["llm"]
        assert set(data["ratios"]) == {
            "warm / cold plan latency",
            "first streamed task / whole plan (warm)",
            "prompt tokens served from cache (warm)",
            "run with plan streaming / without",
        }
        assert data["cold"]["tasks"] == 1
        result = CliRunner().invoke(app, ["bench", "--json", "--workload", "a", "--time-scale", "0.01"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"wall_s", "llm_calls"} <= set(data["ours"]) & set(data["staged"]) & set(data["bound"])  # workload A
    assert CliRunner().invoke(app, ["bench", "--workload", "z"]).exit_code != 0


# workload A: the modes compared on a scripted LLM and timed experts (mechanisms only, no timing thresholds)

FAST = 0.01  # time scale: every workload-A time a hundredth


def test_the_bound_is_plan_plus_the_longest_chain_plus_the_answer():
    from hugginggpt.eval.bench_workload import critical_path

    durations = {0: 1.0, 1: 2.0, 2: 0.5, 3: 0.25}
    deps = {0: [], 1: [0], 2: [0], 3: [1, 2]}
    assert critical_path(1.0, 0.5, durations, deps) == 1.0 + (1.0 + 2.0 + 0.25) + 0.5
    assert critical_path(1.0, 0.5, {0: 0.4, 1: 0.3}, {0: [], 1: []}) == 1.0 + 0.4 + 0.5  # fan-out: the longer
    assert critical_path(2.0, 1.0, {}, {0: []}) == 3.0  # a task that did not run counts 0
    import pytest

    with pytest.raises(ValueError, match="cycle"):
        critical_path(0.0, 0.0, {0: 1.0, 1: 1.0}, {0: [1], 1: [0]})


async def test_staged_makes_a_selection_call_per_task_and_ours_none(tmp_path):
    from hugginggpt.eval.bench_modes import bound_of, run_ours, run_staged
    from hugginggpt.eval.bench_workload import REQUESTS, workload_parts

    chain, fan_out, single = REQUESTS
    for request, ours_calls, staged_calls in [(chain, 2, 5), (fan_out, 3, 6), (single, 2, 3)]:
        # ours: plan + answer (+ the translation a later task needs); staged adds one selection per task with two
        # candidates (the translation has one, the LLM)
        ours = await run_ours(request, tmp_path / request.name / "o", tokens_per_second=50, time_scale=FAST)
        llm, experts = workload_parts(50, FAST)
        staged = await run_staged(request.request, tmp_path / request.name / "s", llm=llm, experts=experts, poll=0)
        assert ours.ok and staged.ok
        assert (ours.llm_calls, staged.llm_calls) == (ours_calls, staged_calls)
        assert staged.generated_tokens > ours.generated_tokens
        assert set(ours.expert_s) == set(staged.expert_s) == {t["id"] for t in request.tasks}
        bound = bound_of(request.deps, ours)
        assert bound.llm_calls == ours.llm_calls and bound.wall_s > bound.plan_s + bound.answer_s


async def test_the_staged_poller_starts_a_task_only_once_its_dependency_is_done(tmp_path):
    from hugginggpt.eval.bench_modes import PollingScheduler
    from hugginggpt.eval.bench_workload import TimedExpert
    from hugginggpt.execution import LocalExecutor
    from hugginggpt.experts.registry import ExpertRegistry
    from hugginggpt.types import Selection, Task
    from hugginggpt.workspace import Workspace

    experts = ExpertRegistry([TimedExpert("text-to-image", "a", 0.05), TimedExpert("image-to-text", "b", 0)])
    models = {"text-to-image": "a", "image-to-text": "b"}

    async def choose(task):
        return Selection(task_id=task.id, model_id=models[task.task], reason="", strategy="test")

    scheduler = PollingScheduler(
        poll=0.01, executor=LocalExecutor(experts), workspace=Workspace(tmp_path, [tmp_path]), choose=choose
    )
    scheduler.add(Task(task="text-to-image", id=0, dep=[], args={"text": "a cat"}))
    scheduler.add(Task(task="image-to-text", id=1, dep=[0], args={"image": "<resource>-0"}))
    first, second = await scheduler.wait()
    assert first.status == second.status == "ok"
    assert scheduler.polls >= 1  # the dependent task looked, found its dependency running, and slept
    assert second.started_at >= first.finished_at


async def test_the_per_task_selector_asks_once_for_each_task_with_two_candidates():
    from hugginggpt.catalog import ModelCatalog
    from hugginggpt.eval.bench_modes import PerTaskSelector
    from hugginggpt.eval.bench_workload import TimedExpert, scripted_reply
    from hugginggpt.types import Task

    cards = [TimedExpert(t, f"{t}-{v}", 0).card for t in ("text-to-image", "text-to-speech") for v in "ab"]
    llm = ScriptedLLM(fallback=scripted_reply())
    selector = PerTaskSelector(ModelCatalog(cards), llm, "draw and speak", strategy="llm")
    futures = [
        selector.submit(Task(task="text-to-image", id=0, args={"text": "a cat"})),
        selector.submit(Task(task="text-to-speech", id=1, args={"text": "hello"})),
    ]
    await selector.flush()
    assert len(llm.calls) == 2  # the batched strategy would ask once
    assert [f.result().model_id for f in futures] == ["text-to-image-a", "text-to-speech-a"]
    assert (await selector.select(Task(task="text-to-image", id=2, args={"text": "a dog"}))).strategy == "llm"
    assert len(llm.calls) == 3


async def test_a_rated_scripted_llm_streams_every_token_of_its_reply():
    text = '{"tasks": [{"id": 0}]} done  '
    deltas = []
    completion = await ScriptedLLM(text, tokens_per_second=10_000).complete([], on_delta=deltas.append)
    assert "".join(deltas) == completion.text == text
    assert len(deltas) == completion.usage.completion_tokens
    assert (await ScriptedLLM(text, tokens_per_second=10_000).complete([])).text == text  # no stream: at the end


def test_bench_workload_a_json_has_the_modes_with_wall_time_and_llm_calls():
    from hugginggpt.cli import app

    result = CliRunner().invoke(app, ["bench", "--workload", "a", "--json", "--time-scale", str(FAST)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for mode in ("ours", "ours-no-stream", "ours-code", "staged", "bound"):
        assert {"wall_s", "llm_calls", "generated_tokens", "ratio_to_bound"} <= set(data[mode])
    assert data["ours-code"]["generated_tokens"] < data["ours"]["generated_tokens"]  # code costs fewer tokens
    assert data["staged"]["llm_calls"] > data["ours"]["llm_calls"]
    assert data["bound"]["ratio_to_bound"] == 1.0
    workload = data["workload_a"]
    assert [r["name"] for r in workload["requests"]] == ["chain", "fan-out", "single"]
    assert set(workload["requests"][0]["modes"]) == {"ours", "ours-no-stream", "ours-code", "staged", "bound"}
    assert len(workload["ratios"]) == 3
    assert "cold" not in data  # the controller-LLM bench did not run


def test_bench_workload_a_prints_its_table():
    from hugginggpt.cli import app

    result = CliRunner().invoke(app, ["bench", "--workload", "a", "--time-scale", str(FAST)])
    assert result.exit_code == 0, result.output
    assert "workload A" in result.stdout and "staged" in result.stdout and "bound" in result.stdout
