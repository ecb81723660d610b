"""`hugginggpt models`: every card as JSON, the per-task table, and the timing of the embedded experts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hugginggpt.cli import app
from hugginggpt.tasks import PAPER_TASKS


@pytest.fixture
def runner(monkeypatch, tmp_path):
    monkeypatch.delenv("HUGGINGGPT_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("HUGGINGGPT_CONFIG", raising=False)
    monkeypatch.setenv("HUGGINGGPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_models_json_lists_every_card_with_task_id_backend_and_availability(runner):
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    cards = json.loads(result.stdout)
    for card in cards:
        assert {"task", "id", "backend", "available"} <= card.keys()
    embedded = {(c["task"], c["id"]) for c in cards if c["backend"] == "embedded" and c["available"]}
    assert ("image-to-text", "rapidocr/PP-OCRv6-small") in embedded
    assert ("automatic-speech-recognition", "openai/whisper-tiny.en") in embedded
    assert not [c for c in cards if c["backend"] == "llm"]  # no controller LLM configured here


def test_models_json_includes_the_llm_experts_when_an_llm_is_configured(runner, monkeypatch):
    monkeypatch.setenv("HUGGINGGPT_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    cards = json.loads(runner.invoke(app, ["models", "--json", "--task", "summarization"]).stdout)
    assert {c["backend"] for c in cards} == {"llm", "embedded"}
    assert all(c["task"] == "summarization" for c in cards)


def test_models_table_shows_each_task_type_and_counts_those_that_can_run(runner):
    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for task in PAPER_TASKS:
        assert task in result.stdout
    assert "rapidocr/PP-OCRv6-small" in result.stdout
    assert f"of the paper's {len(PAPER_TASKS)} task types can run now" in result.output


@pytest.mark.integration
def test_models_measure_times_every_embedded_expert(runner):
    result = runner.invoke(app, ["models", "--measure", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    timings = report["experts"]
    assert {t["task"] for t in timings} >= {"image-to-text", "automatic-speech-recognition", "text-to-speech"}
    for timing in timings:
        assert timing["error"] is None, timing
        assert timing["load_s"] >= 0 and timing["latency_s"] >= 0 and timing["runs"] == 3
    shared = [t for t in timings if t["shares_model_with"]]
    assert {t["id"] for t in shared} == {"sentence-transformers/all-MiniLM-L6-v2"}
    assert report["peak_rss_mib"] > 0
