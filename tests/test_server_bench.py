"""The server benchmark command: it starts a real server, measures both levels and reports ratios."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hugginggpt.cli import app


def test_bench_server_reports_percentiles_for_each_level():
    result = CliRunner().invoke(app, ["bench-server", "--requests", "6", "--concurrency", "3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    levels = report["levels"]
    assert [level["concurrency"] for level in levels] == [1, 3]
    for level in levels:
        assert level["requests"] == 6
        assert 0 < level["p50_ms"] <= level["p95_ms"]
        assert level["throughput_rps"] > 0
    assert set(report["ratios"]) == {"p50 x3 / x1", "p95 x3 / x1", "throughput x3 / x1"}


def test_the_shipped_pipeline_is_served_with_a_different_everyday_request_each_time(tmp_path):
    from helpers import OpenAIServer, Reply, role_of
    from hugginggpt.config import Settings
    from hugginggpt.server.bench import EVERYDAY, bench_server

    plan = json.dumps({"tasks": [{"task": "text-generation", "id": 0, "dep": [], "args": {"text": "a poem"}}]})

    def handler(body):
        return Reply(plan if role_of(body["messages"]) == "planning" else "A short reply.")

    with OpenAIServer(handler) as server:
        settings = Settings(llm_base_url=server.url, llm_slots=2)
        report = bench_server(requests=2, levels=(1, 2), embedded=True, settings=settings)
    assert report.pipeline == "shipped" and report.slots == 2
    assert [level.requests for level in report.levels] == [2, 2]
    planned = [b["messages"][-1]["content"] for b in server.requests if role_of(b["messages"]) == "planning"]
    assert len(planned) == 5 and set(planned) <= set(EVERYDAY)  # a warm-up, then 2 + 2 requests
    assert len(set(planned[1:])) == 4  # no request asked twice: none finds its whole prompt cached
