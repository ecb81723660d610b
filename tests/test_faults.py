"""Faults a long-running server must survive: an expert that raises, a model server killed in the middle of a call,
the controller LLM's endpoint dropping its stream or going away, and a full disk. Each time the run that met the
fault says what happened, nothing else is lost, and the next request works. (A model that hangs past its timeout:
tests/test_execution.py and tests/test_transformers.py.)"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from faultkit import Controller, ModelServerProcess
from hugginggpt.catalog import ModelCatalog
from hugginggpt.errors import ExpertError
from hugginggpt.experts.llm import llm_experts
from hugginggpt.experts.protocol import ExpertContext, LocalExpert, Outputs
from hugginggpt.experts.registry import ExpertRegistry, Router
from hugginggpt.experts.server import ServerBackend
from hugginggpt.llm.openai import OpenAICompatibleLLM
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import HuggingGPT
from hugginggpt.server.app import create_app
from hugginggpt.server.completions import MODEL_ID
from hugginggpt.types import ModelCard
from hugginggpt.workspace import Workspace
from parts import need
from serverkit import Describer, Gate, LiveServer, Painter, Speaker, controller, make_pipeline, settings_for, wait_for


def _ask(url: str, text: str, conversation_id: str | None = None) -> dict:
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": text}], "conversation_id": conversation_id}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _results(reply: dict) -> list[tuple[str, str | None]]:
    return [(r["status"], r["error"]) for r in reply["hugginggpt"]["results"]]


# an expert that raises -------------------------------------------------------------------------------------------


class Raiser(LocalExpert):
    """text-classification whose model code raises what the text asks for (in its worker thread)."""

    def __init__(self) -> None:
        super().__init__(ModelCard(id="test/gate", task="text-classification", backend="embedded", available=True))

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        if "memory" in args["text"]:
            raise MemoryError("the model ran out of memory")
        if "bug" in args["text"]:
            raise KeyError("logits")
        return {"text": "label: fine"}


def test_an_expert_that_raises_fails_its_task_and_the_server_and_model_go_on(tmp_path):
    settings = settings_for(tmp_path)
    llm = ScriptedLLM(fallback=controller)
    gpt = HuggingGPT(llm, ExpertRegistry([Raiser(), Painter(), *llm_experts(llm)]), settings=settings)
    with LiveServer(create_app(gpt, settings)) as server:
        assert _results(_ask(server.url, "gate out of memory")) == [
            ("failed", "MemoryError: the model ran out of memory")
        ]
        assert _results(_ask(server.url, "gate a bug")) == [("failed", "KeyError: 'logits'")]
        assert _results(_ask(server.url, "gate a good text")) == [("ok", None)]
        assert _results(_ask(server.url, "draw a red ball")) == [("ok", None)]


# a model server killed mid-call ----------------------------------------------------------------------------------


def _served_pipeline(tmp: Path, url: str) -> HuggingGPT:
    registry = ExpertRegistry(router=Router("local", [ServerBackend([url], timeout=60)]))
    cards = registry.route([ModelCard(id="test/slow-label", task="text-classification")])
    return HuggingGPT(
        ScriptedLLM(fallback=controller), registry, catalog=ModelCatalog(cards), settings=settings_for(tmp)
    )


async def test_a_model_server_killed_mid_call_fails_the_task_and_a_restarted_one_is_used_again(tmp_path):
    models = ModelServerProcess(tmp_path).start()
    try:
        gpt = _served_pipeline(tmp_path, models.url)
        assert [r.status for r in (await gpt.run("gate a first text")).results] == ["ok"]

        running = asyncio.create_task(gpt.run("gate hang here"))
        while not models.entered.exists():
            assert not running.done()
            await asyncio.sleep(0.02)
        models.kill()
        [result] = (await running).results
        assert result.status == "failed"
        assert f"model server {models.url} stopped answering during the call to test/slow-label" in result.error

        [down] = (await gpt.run("gate while it is down")).results
        assert down.status == "failed" and f"cannot reach model server {models.url}" in down.error

        models.start()  # the same port: the controller's next call reconnects
        again = await gpt.run("gate after the restart")
        assert [(r.status, r.outputs.get("text")) for r in again.results] == [("ok", "label: 17 characters")]
    finally:
        models.kill()


async def test_a_call_hung_on_a_model_server_does_not_leave_the_calls_behind_it_to_run_later(tmp_path):
    models = ModelServerProcess(tmp_path).start()
    try:
        card = ModelCard(id="test/slow-label", task="text-classification")
        impatient = ServerBackend([models.url], timeout=1.0)
        ctx = ExpertContext(workspace=Workspace(tmp_path / "out", [tmp_path]), task_id=0, task="text-classification")
        with pytest.raises(ExpertError, match="gave no answer for test/slow-label within 1 s"):
            await impatient.call(card, {"text": "hang on"}, ctx)
        # queued behind the hung call on the server, this one is given up too, and must leave the queue with it
        with pytest.raises(ExpertError, match="gave no answer"):
            await impatient.call(card, {"text": "queued behind it"}, ctx)
        time.sleep(0.5)  # the server sees the hang-up within milliseconds; then the hung call ends (for nobody)
        models.release.touch()
        later = await ServerBackend([models.url], timeout=30).call(card, {"text": "later"}, ctx)
        assert later == {"text": "label: 5 characters"}
        assert models.calls.read_text().splitlines() == ["hang on", "later"]  # never "queued behind it"
    finally:
        models.kill()


# the controller LLM's endpoint dropping its stream or going away ---------------------------------------------------


def test_the_llm_endpoint_dropping_mid_stream_fails_that_answer_clearly_and_the_next_one_works(tmp_path):
    settings = settings_for(tmp_path)
    with Controller(answer_break_after=2) as endpoint:
        llm = OpenAICompatibleLLM(endpoint.url, retries=2, timeout=30)
        registry = ExpertRegistry([Painter(), Speaker(), Describer(), *llm_experts(llm)])
        with LiveServer(create_app(HuggingGPT(llm, registry, settings=settings), settings)) as server:
            broken = _ask(server.url, "say hello there")
            run = broken["hugginggpt"]
            assert _results(broken) == [("ok", None)]  # the task ran; only the answer's stream broke
            events = httpx.get(f"{server.url}{run['events_url']}").text
            assert "broke after 10 characters" in events  # said in an error event of the response stage
            text = broken["choices"][0]["message"]["content"]
            assert text.startswith(
                f"Done: say\n\nI could not write the answer (the stream from the LLM at {endpoint.url}"
            )
            assert text.count("Done: say") == 1  # what had arrived is never repeated by a retry
            assert len(endpoint.requests) == 2  # the plan, and the answer once: it was not re-sent

            endpoint.plan_break_after = 6  # the plan's stream breaks in the middle of its first task
            unplanned = _ask(server.url, "say something else", run["conversation_id"])["hugginggpt"]
            assert unplanned["plan"] == [] and "broke after 30 characters" in unplanned["error"]
            assert len(endpoint.requests) == 3  # the plan was not asked again

            endpoint.answer_break_after = endpoint.plan_break_after = None
            whole = _ask(server.url, "say it again", run["conversation_id"])
            assert whole["choices"][0]["message"]["content"].startswith("Done: say it again. It went as planned.")

        endpoint_url = endpoint.url
    # the endpoint gone altogether: the request is answered with why, and the server stays up
    llm = OpenAICompatibleLLM(endpoint_url, retries=1, timeout=5)
    gpt = HuggingGPT(llm, ExpertRegistry([Speaker(), *llm_experts(llm)]), settings=settings)
    with LiveServer(create_app(gpt, settings)) as server:
        reply = _ask(server.url, "say hello")
        assert f"the LLM at {endpoint_url} is unreachable" in reply["hugginggpt"]["error"]
        assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"


# a full disk -----------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs of its own (needs root); the test fills it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    ok = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)]).returncode == 0
    )
    need(ok, "a full-disk test mounts a small tmpfs, which needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to make room again)."""
    ballast = folder / "ballast"
    handle = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(handle, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(handle)
    return ballast


@pytest.mark.parametrize("db_on_full_disk", [False, True], ids=["files-full", "files-and-db-full"])
def test_a_full_disk_fails_what_writes_there_and_loses_nothing(tmp_path, small_disk, db_on_full_disk):
    db = (small_disk if db_on_full_disk else tmp_path) / "server.db"
    settings = settings_for(tmp_path, db=db, files_dir=small_disk / "files")
    gate = Gate()
    with LiveServer(create_app(make_pipeline(settings, gate), settings)) as server:
        before = _ask(server.url, "draw a red ball and describe it")
        conversation = before["hugginggpt"]["conversation_id"]
        [drawing] = before["hugginggpt"]["artifacts"]
        upload = httpx.post(
            f"{server.url}/v1/files", files={"file": ("a.txt", b"kept " * 50)}, data={"conversation_id": conversation}
        ).json()
        waiting: list[dict] = []  # a run in flight while the disk fills, ending once it is full
        thread = threading.Thread(target=lambda: waiting.append(_ask(server.url, "gate block now", conversation)))
        thread.start()
        assert gate.entered.wait(20)
        ballast = _fill(small_disk)

        full = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": MODEL_ID,
                "messages": [{"role": "user", "content": "draw a blue ball"}],
                "conversation_id": conversation,
            },
            timeout=60,
        )
        if db_on_full_disk:  # nothing could be recorded, so nothing was started: the client is told why
            assert full.status_code == 507 and full.json()["error"]["code"] == "disk_full"
            assert "the server's disk is full" in full.json()["error"]["message"]
        else:  # the run was recorded; its task could not write the image and says so
            assert _results(full.json()) == [("failed", "OSError: [Errno 28] No space left on device")]
        refused = httpx.post(
            f"{server.url}/v1/files", files={"file": ("b.txt", b"lost " * 5000)}, data={"conversation_id": conversation}
        )
        assert refused.status_code == 507 and refused.json()["error"]["code"] == "disk_full"
        uploads = small_disk / "files" / conversation / "uploads"
        assert sorted(p.name for p in uploads.iterdir()) == ["a.txt"]  # the refused upload's part is not kept
        gate.opened.set()
        thread.join(30)
        [blocked] = waiting  # answered in full from memory, though the disk was full when it ended
        assert _results(blocked) == [("ok", None)] and blocked["hugginggpt"]["status"] == "done"
        assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"

        ballast.unlink()
        turns = 2 if db_on_full_disk else 3

        def replies() -> int:  # the messages come from the database: a reply there is a run's recorded end
            view = httpx.get(f"{server.url}/v1/conversations/{conversation}").json()
            return [m["role"] for m in view["messages"]].count("assistant")

        wait_for(lambda: replies() == turns, "the end of the run that met the full disk to be recorded")
        view = httpx.get(f"{server.url}/v1/conversations/{conversation}").json()
        roles = [m["role"] for m in view["messages"]]  # two runs overlapped: their messages interleave
        assert roles.count("user") == roles.count("assistant") == turns
        assert [r["status"] for r in view["runs"]] == ["done"] * turns
        assert {f["id"] for f in view["files"]} == {drawing["file_id"], upload["id"]}
        assert hashlib.sha256(httpx.get(server.url + drawing["url"]).content).hexdigest() == drawing["sha256"]
        assert httpx.get(f"{server.url}/v1/files/{upload['id']}/content").content == b"kept " * 50
        after = _ask(server.url, "draw a green ball and describe it", conversation)
        assert _results(after) == [("ok", None), ("ok", None)]
