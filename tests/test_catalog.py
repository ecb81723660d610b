import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from helpers import http_server
from hugginggpt.catalog import ModelCatalog, card_from_row, load_snapshot, refresh_snapshot
from hugginggpt.errors import CatalogError
from hugginggpt.types import ModelCard

SHARED_SNAPSHOT = Path(__file__).resolve().parents[2] / "shared" / "jarvis-data" / "p0_models.jsonl"


def row(model_id, task, downloads, **extra):
    return {"id": model_id, "task": task, "downloads": downloads, "likes": 1, "description": "d " * 400, **extra}


def test_rows_in_the_jarvis_format_become_cards(tmp_path):
    path = tmp_path / "models.jsonl"
    rows = [
        row("a/detr", "object-detection", 100, meta={"tags": ["detr"], "license": "apache-2.0"}),
        row("b/yolo", "object-detection", 300, pipeline_tag="object-detection"),
        {"id": "c/tts", "pipeline_tag": "text-to-speech", "downloads": 5},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    cards = load_snapshot(path)
    assert [c.id for c in cards] == ["a/detr", "b/yolo", "c/tts"]
    assert cards[0].tags == ["detr"] and cards[0].license == "apache-2.0"
    assert len(cards[0].description) <= 300
    assert cards[2].task == "text-to-speech"
    assert all(not c.available and c.backend == "inference" for c in cards)


def test_malformed_snapshot_line_is_named(tmp_path):
    path = tmp_path / "models.jsonl"
    path.write_text(json.dumps(row("a", "summarization", 1)) + "\n{not json\n")
    with pytest.raises(CatalogError, match="models.jsonl:2"):
        load_snapshot(path)
    with pytest.raises(CatalogError, match="needs 'id'"):
        card_from_row({"downloads": 3})
    with pytest.raises(CatalogError, match="catalog refresh"):
        load_snapshot(tmp_path / "missing.jsonl")


def test_candidates_are_available_cards_ranked_by_downloads_top_k():
    catalog = ModelCatalog(
        [
            ModelCard(id="low", task="summarization", downloads=1, available=True),
            ModelCard(id="high", task="summarization", downloads=9, available=True),
            ModelCard(id="mid", task="summarization", downloads=5, available=True),
            ModelCard(id="offline", task="summarization", downloads=99, available=False),
            ModelCard(id="other", task="translation", downloads=50, available=True),
        ]
    )
    assert [c.id for c in catalog.candidates("summarization", k=2)] == ["high", "mid"]
    assert catalog.candidates("depth-estimation") == []
    assert catalog.available_tasks() == {"summarization", "translation"}


def test_an_unavailable_card_never_hides_an_available_one():
    catalog = ModelCatalog([ModelCard(id="m", task="summarization", available=True, backend="embedded")])
    catalog.add([ModelCard(id="m", task="summarization", available=False)])
    assert catalog.get("summarization", "m").available


@pytest.mark.needs(SHARED_SNAPSHOT.is_file(), reason="../shared/jarvis-data is not present in this checkout")
def test_the_original_systems_snapshot_loads():
    cards = load_snapshot(SHARED_SNAPSHOT)
    assert len(cards) == 673
    assert len({c.task for c in cards}) == 24


class _Hub(BaseHTTPRequestHandler):
    requests: ClassVar[list] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        _Hub.requests.append((url.path, query))
        if url.path != "/api/models":
            self.send_response(404)
            self.end_headers()
            return
        tag = query["pipeline_tag"][0]
        if tag == "broken":
            self.send_response(400)
            self.end_headers()
            return
        limit = int(query["limit"][0])
        models = [
            {
                "id": f"org/{tag}-{i}",
                "modelId": f"org/{tag}-{i}",
                "pipeline_tag": tag,
                "downloads": 1000 - i,
                "likes": i,
                "tags": ["pytorch", tag],
                "cardData": {"license": "mit"},
            }
            for i in range(limit)
        ]
        body = json.dumps(models).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hub(online_hub):
    _Hub.requests = []
    with http_server(_Hub) as url:
        yield url


def test_refresh_lists_models_by_task_sorted_by_downloads(tmp_path, hub):
    path = tmp_path / "cache" / "models.jsonl"
    count = refresh_snapshot(path, ["object-detection", "summarization"], per_task=3, endpoint=hub)
    assert count == 6
    cards = load_snapshot(path)
    assert [c.id for c in cards[:3]] == ["org/object-detection-0", "org/object-detection-1", "org/object-detection-2"]
    assert cards[0].license == "mit" and cards[3].task == "summarization"
    paths_and_queries = _Hub.requests
    assert all(q["sort"] == ["downloads"] for _, q in paths_and_queries)


def test_refresh_reads_hf_endpoint_from_the_environment(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", hub)
    assert refresh_snapshot(tmp_path / "s.jsonl", ["translation"], per_task=2) == 2


def test_refresh_failure_keeps_the_old_snapshot(tmp_path, hub):
    path = tmp_path / "models.jsonl"
    path.write_text(json.dumps(row("kept", "summarization", 1)) + "\n")
    with pytest.raises(CatalogError, match="could not list broken models"):
        refresh_snapshot(path, ["summarization", "broken"], endpoint=hub)
    assert [c.id for c in load_snapshot(path)] == ["kept"]


def test_a_card_that_needs_a_parameter_is_a_candidate_only_when_given_it_and_then_first():
    catalog = ModelCatalog(
        [
            ModelCard(id="vader", task="text-classification", available=True),
            ModelCard(id="zero-shot", task="text-classification", available=True, requires=["labels"]),
        ]
    )
    assert [c.id for c in catalog.candidates("text-classification", args={"text": "x"})] == ["vader"]
    labelled = catalog.candidates("text-classification", args={"text": "x", "labels": "sport, food"})
    assert [c.id for c in labelled] == ["zero-shot", "vader"]


def test_priority_breaks_ties_so_narrow_models_come_last():
    catalog = ModelCatalog(
        [
            ModelCard(id="a/faces", task="object-detection", available=True, priority=-1),
            ModelCard(id="z/coco", task="object-detection", available=True),
        ]
    )
    assert [c.id for c in catalog.candidates("object-detection")] == ["z/coco", "a/faces"]
