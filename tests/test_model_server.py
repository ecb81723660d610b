"""The model server (`hugginggpt serve-models`, a real uvicorn process on 127.0.0.1 hosting tiny transformers models)
and the controller's client backend for it: endpoints, files both ways, errors, routing, per-model serialisation."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from hugginggpt.errors import ExpertError
from hugginggpt.experts.protocol import ExpertContext, LocalExpert
from hugginggpt.experts.registry import ExpertRegistry, Router
from hugginggpt.experts.server import ServerBackend
from hugginggpt.experts.transformers import TransformersBackend
from hugginggpt.server.model_server import ModelHost, create_app
from hugginggpt.types import Artifact, ModelCard
from hugginggpt.workspace import Workspace
from localserver import free_port, serving
from parts import need_module

UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_module("PIL", "the transformers extra is not installed")
    import numpy as np
    from PIL import Image

    path = tmp_path_factory.mktemp("inputs") / "photo.png"
    Image.fromarray((np.random.default_rng(2).random((60, 80, 3)) * 255).astype("uint8")).save(path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`hugginggpt serve-models` in its own process, hosting three tiny models from a local HF cache."""
    need_module("transformers", "the transformers extra is not installed")
    import tinymodels

    folder = tmp_path_factory.mktemp("model-server")
    cache = folder / "cache"
    tinymodels.text_classifier(cache)
    tinymodels.object_detector(cache)
    tinymodels.image_classifier(cache)
    snapshot = folder / "snapshot.jsonl"
    rows = [
        {"id": "tiny/bert-sentiment", "task": "text-classification"},
        {"id": "tiny/yolos-zoo", "task": "object-detection"},
    ]
    snapshot.write_text("".join(json.dumps(r) + "\n" for r in rows))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HUGGINGGPT_") or k == "HUGGINGGPT_CACHE_DIR"}
    env = {
        **inherited,
        "HF_HUB_OFFLINE": "1",
        "HUGGINGGPT_TRANSFORMERS_CACHE_DIR": str(cache),
        "HUGGINGGPT_CATALOG_SNAPSHOT": str(snapshot),
        "HUGGINGGPT_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    }
    port = free_port()
    command = [sys.executable, "-m", "hugginggpt.cli", "serve-models", "--port", str(port)]
    command += ["--model", "image-classification=tiny/vit-animals"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"serve-models exited: {process.stdout.read()}")
        try:
            if httpx.get(f"{url}/running", timeout=1).json() == {"running": True}:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("serve-models did not start")
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def ctx(tmp_path: Path, photo: Path) -> ExpertContext:
    return ExpertContext(workspace=Workspace(tmp_path / "out", [tmp_path, photo.parent]), task_id=3, task="t")


# the server's endpoints ----------------------------------------------------------------------------------------


def test_it_lists_what_it_hosts_and_reports_health(server: str) -> None:
    cards = httpx.get(f"{server}/models").json()
    assert {(c["task"], c["id"], c["available"]) for c in cards if c["backend"] == "transformers"} == {
        ("text-classification", "tiny/bert-sentiment", True),
        ("object-detection", "tiny/yolos-zoo", True),
        ("image-classification", "tiny/vit-animals", True),
    }
    embedded = [c for c in cards if c["backend"] == "embedded"]
    assert embedded and all(c["available"] for c in embedded)  # the embedded experts that can run here
    assert {c["backend"] for c in cards} == {"transformers", "embedded"}
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["models"] == len(cards)


def test_a_model_loads_on_first_call_and_shows_in_status_and_memory(server: str) -> None:
    assert httpx.get(f"{server}/status/tiny/vit-animals").json()["loaded"] is False
    with pytest.raises(httpx.HTTPStatusError):
        httpx.get(f"{server}/status/nobody/model").raise_for_status()
    reply = httpx.post(
        f"{server}/models/tiny/bert-sentiment", json={"args": {"text": "good"}}, timeout=120
    ).raise_for_status()
    body = reply.json()
    assert body["task"] == "text-classification" and body["outputs"]["text"] == "POSITIVE (1.00)"
    status = httpx.get(f"{server}/status/tiny/bert-sentiment").json()
    assert status == {
        "model_id": "tiny/bert-sentiment",
        "tasks": ["text-classification"],
        "available": True,
        "loaded": True,
    }
    memory = httpx.get(f"{server}/memory").json()
    keys = [entry["key"] for entry in memory["pool"]["loaded"]]
    assert "tiny/bert-sentiment@cpu#pipeline" in keys
    assert memory["rss_mb"] > 0 and memory["pool"]["budgets_mb"]["cpu"] == 4096
    assert "tiny/bert-sentiment" in httpx.get(f"{server}/health").json()["loaded"]


def test_files_are_uploaded_and_artifacts_fetched_once(server: str, photo: Path) -> None:
    with photo.open("rb") as handle:
        reply = httpx.post(
            f"{server}/models/tiny/yolos-zoo", files={"image": ("photo.png", handle, "image/png")}, timeout=120
        )
    outputs = reply.raise_for_status().json()["outputs"]
    assert outputs["text"].endswith("zebra") and outputs["json"]["objects"]
    meta = outputs["image"]["artifact"]
    assert meta["modality"] == "image" and meta["media_type"] == "image/png" and meta["suffix"] == ".png"
    data = httpx.get(server + meta["url"]).raise_for_status().content
    assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["size"]
    assert httpx.get(server + meta["url"]).status_code == 404  # deleted once fetched


@pytest.mark.parametrize(
    ("call", "status", "message"),
    [
        ({"url": "/models/nobody/model", "json": {"args": {"text": "x"}}}, 404, "does not host nobody/model"),
        ({"url": "/models/tiny/yolos-zoo", "json": {"args": {"image": "/etc/passwd"}}}, 400, "as files, not text"),
        ({"url": "/models/tiny/bert-sentiment", "json": {"args": ["x"]}}, 400, "JSON object of strings"),
        ({"url": "/models/tiny/bert-sentiment", "json": {"args": {}}}, 422, "missing argument 'text'"),
        (
            {"url": "/models/tiny/bert-sentiment", "json": {"task": "summarization", "args": {}}},
            404,
            "for summarization",
        ),
        ({"url": "/models/tiny/bert-sentiment", "files": {"text": ("a.txt", b"hello")}}, 400, "not a media argument"),
        ({"url": "/models/tiny/vit-animals", "files": {"image": ("big.png", b"x" * (UPLOAD_LIMIT + 1))}}, 413, "limit"),
        ({"url": "/files/../../etc/passwd"}, 404, None),
        ({"url": "/files/0123456789abcdef0123456789abcdef/..%2f..%2fsecret"}, 404, None),
    ],
)
def test_bad_calls_get_clear_errors(server: str, call: dict, status: int, message: str | None) -> None:
    url = server + call.pop("url")
    reply = httpx.post(url, timeout=60, **call) if call else httpx.get(url)
    assert reply.status_code == status
    if message:
        assert message in reply.json()["detail"]


# the client backend --------------------------------------------------------------------------------------------


def test_the_client_sees_the_hosted_models_as_server_cards(server: str) -> None:
    backend = ServerBackend([server])
    hosted = {(c.task, c.id) for c in backend.cards()}
    assert {c.backend for c in backend.cards()} == {"server"}
    assert {
        ("text-classification", "tiny/bert-sentiment"),
        ("object-detection", "tiny/yolos-zoo"),
        ("image-classification", "tiny/vit-animals"),
    } <= hosted
    assert len(hosted) == len(httpx.get(f"{server}/models").json())
    assert backend.why_not(ModelCard(id="tiny/yolos-zoo", task="object-detection")) is None
    reason = backend.why_not(ModelCard(id="tiny/yolos-zoo", task="image-classification"))
    assert reason == "no model server hosts tiny/yolos-zoo for image-classification"


async def test_the_client_uploads_inputs_and_downloads_artifacts_into_the_workspace(server, ctx, photo) -> None:
    backend = ServerBackend([server])
    expert = backend.expert(ModelCard(id="tiny/yolos-zoo", task="object-detection"))
    out = await expert.run({"image": str(photo)}, ctx)
    image = out["image"]
    assert isinstance(image, Artifact) and image.modality == "image" and image.media_type == "image/png"
    path = Path(image.path)
    assert path.parent == ctx.workspace.root and path.name.startswith("3-t-") and path.suffix == ".png"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == image.sha256
    assert out["text"].endswith("zebra")


async def test_the_client_reports_server_errors_and_a_server_that_is_down(server, ctx) -> None:
    backend = ServerBackend([server])
    with pytest.raises(ExpertError, match=r"HTTP 422: .*missing argument 'text'"):
        await backend.expert(ModelCard(id="tiny/bert-sentiment", task="text-classification")).run({}, ctx)
    down = ServerBackend([f"http://127.0.0.1:{free_port()}"])
    reason = down.why_not(ModelCard(id="tiny/bert-sentiment", task="text-classification"))
    assert reason is not None and "did not answer" in reason


async def test_a_controller_routes_to_the_model_server_first(server, ctx, tmp_path) -> None:
    empty = TransformersBackend(cache_dir=tmp_path / "empty-cache", online=False)
    router = Router("hybrid", [empty, ServerBackend([server])])
    registry = ExpertRegistry(router=router)
    [card] = registry.route([ModelCard(id="tiny/bert-sentiment", task="text-classification")])
    assert card.availability == {"server": True, "transformers": False} and card.backend == "server"
    out = await registry.get("text-classification", "tiny/bert-sentiment").run({"text": "good"}, ctx)
    assert out["text"] == "POSITIVE (1.00)"


# serialisation per model, concurrency across models ------------------------------------------------------------


class Probe(LocalExpert):
    """Records how many calls to each model overlap; model `wait/for-b` blocks until model `b/model` has started.
    It runs without LocalExpert's own lock, so any serialisation seen is the server's."""

    active: ClassVar[dict[str, int]] = {}
    peak: ClassVar[dict[str, int]] = {}
    saw_b: ClassVar[list[bool]] = []
    b_started = threading.Event()
    guard = threading.Lock()

    def predict(self, args, ctx):
        model = self.card.id
        with self.guard:
            self.active[model] = self.active.get(model, 0) + 1
            self.peak[model] = max(self.peak.get(model, 0), self.active[model])
        try:
            if model == "b/model":
                self.b_started.set()
            if model == "wait/for-b":
                self.saw_b.append(self.b_started.wait(timeout=20))
            time.sleep(0.05)
            return {"text": model}
        finally:
            with self.guard:
                self.active[model] -= 1

    async def run(self, args, ctx):
        return await asyncio.to_thread(self.predict, args, ctx)


async def test_one_model_runs_one_call_at_a_time_and_different_models_run_together(tmp_path) -> None:
    cards = [ModelCard(id=i, task="text-classification", available=True) for i in ("a/model", "b/model", "wait/for-b")]
    host = ModelHost(ExpertRegistry([Probe(card) for card in cards]), tmp_path / "host")
    with serving(create_app(host)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:

            async def call(model: str) -> str:
                reply = await client.post(f"/models/{model}", json={"args": {"text": "x"}})
                return reply.raise_for_status().json()["outputs"]["text"]

            same = await asyncio.gather(*(call("a/model") for _ in range(4)))
            assert same == ["a/model"] * 4 and Probe.peak["a/model"] == 1
            both = await asyncio.gather(call("wait/for-b"), call("b/model"))
            assert both == ["wait/for-b", "b/model"] and Probe.saw_b == [True]
