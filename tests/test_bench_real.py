"""Workload B of `hugginggpt bench` (the real stack, fresh process and warm), run here against a local
OpenAI-compatible server standing in for the controller LLM, so that only the mechanisms are checked."""

from __future__ import annotations

import json

import pytest

from helpers import OpenAIServer, Reply, role_of
from hugginggpt.config import Settings
from hugginggpt.eval.bench_real import EverydayRequest, run_fresh, run_workload_b
from hugginggpt.pipeline import HuggingGPT

TRANSLATE = "Translate 'good night' into French."
PLAN = json.dumps(
    {"tasks": [{"task": "translation", "id": 0, "dep": [], "args": {"text": "good night", "tgt_lang": "French"}}]}
)


def handler(body):
    stage = role_of(body["messages"])
    if stage == "planning":
        return Reply(PLAN)
    if stage == "expert":
        return Reply("Bonne nuit.")
    return Reply("The translation is: Bonne nuit.")


@pytest.fixture
def server(monkeypatch, tmp_path):
    with OpenAIServer(handler) as server:
        monkeypatch.setenv("HUGGINGGPT_LLM_BASE_URL", server.url)
        monkeypatch.setenv("HUGGINGGPT_DB", str(tmp_path / "db.sqlite"))
        yield server


def test_a_fresh_process_run_reports_its_wall_time_peak_rss_and_llm_calls(server, tmp_path):
    run = run_fresh(TRANSLATE, tmp_path, tmp_path / "out")
    assert run.ok, run.error
    assert run.mode == "ours-fresh" and run.wall_s > 0 and run.peak_rss_mib and run.peak_rss_mib > 10
    # the plan from the controller and the translation the LLM served, which is the answer
    assert (run.llm_calls, run.llm_tasks) == (2, 1)
    assert run.generated_tokens > 0 and run.plan_s > 0


def test_a_fresh_process_that_fails_is_a_failed_run_with_its_last_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HUGGINGGPT_LLM_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HUGGINGGPT_LLM_RETRIES", "0")
    run = run_fresh(TRANSLATE, tmp_path, tmp_path / "out", timeout=120)
    assert not run.ok and run.error


async def test_workload_b_runs_each_request_fresh_warm_staged_and_gives_its_bound(server, tmp_path):
    gpt = HuggingGPT.from_settings(Settings(output_dir=tmp_path / "out"))
    messages: list[str] = []
    requests = [EverydayRequest(name="translate", request=TRANSLATE)]
    report = await run_workload_b(gpt, tmp_path, tmp_path / "b", requests=requests, progress=messages.append)
    (runs,) = report.requests
    assert set(runs.modes) == {"ours-fresh", "ours-warm", "bound", "staged"}
    assert all(run.ok for run in runs.modes.values())
    warm, bound, staged = runs.modes["ours-warm"], runs.modes["bound"], runs.modes["staged"]
    # one candidate (the LLM): no selection call in either; ours answers with the translation, staged asks the LLM
    assert warm.llm_calls == 2 and staged.llm_calls == 3
    # the bound: plan + the chain of expert times + answer (ours can beat it: its tasks start while it plans)
    assert bound.wall_s > bound.plan_s + bound.answer_s and bound.llm_calls == warm.llm_calls
    assert set(report.ratios()) == {
        "warm / fresh process (worst; target <= 0.60)",
        "ours warm / bound (worst)",
        "staged / ours warm (least)",
    }
    assert any("fresh process" in m for m in messages) and any("staged" in m for m in messages)
