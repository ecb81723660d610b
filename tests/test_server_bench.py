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
