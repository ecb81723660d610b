"""The Ray executor: the pipeline on both executors with the same results, expert actors and their pools, faults,
cancellation, files through the object store. A local Ray instance (2 CPUs, no dashboard, offline) starts once for
the module; the experts are built in the actors from this module's specs (Ray's workers import this module)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import aclosing
from functools import partial
from pathlib import Path

import pytest

from helpers import ColourExpert, CrashExpert, DrawExpert, card, role_of
from hugginggpt.config import Settings
from hugginggpt.execution import LocalExecutor
from hugginggpt.experts.registry import ExpertRegistry
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import HuggingGPT
from hugginggpt.types import Resources
from parts import need_module

ray = need_module("ray", "the Ray executor's tests need the ray extra: pip install -e '.[ray]'")

from hugginggpt.distributed import NAMESPACE, ActorPools, RayExecutor, cluster_status  # noqa: E402
from hugginggpt.distributed.actors import actor_options  # noqa: E402
from hugginggpt.distributed.parcels import Shelf  # noqa: E402


class ClockExpert:
    """Any task: waits, then says when it ran (wall clock, the same across processes) and in which process."""

    def __init__(self, task: str, model_id: str, seconds: float) -> None:
        self.card = card(task, model_id)
        self.seconds = seconds

    async def run(self, args, ctx):
        start = time.time()
        await asyncio.sleep(self.seconds)
        return {
            "text": f"{self.card.task}: {args.get('text', '')}",
            "json": {"start": start, "end": time.time(), "pid": os.getpid()},
        }


class MeetExpert:
    """Any task: leaves a file named after its model in `folder`, then waits (up to a minute) for the file of the
    model `other`: two of them both end only when they run at the same time."""

    def __init__(self, task: str, model_id: str, folder: str, other: str) -> None:
        self.card = card(task, model_id)
        self.folder = Path(folder)
        self.other = other

    async def run(self, args, ctx):
        (self.folder / self.card.id.replace("/", "_")).touch()
        waited = time.monotonic()
        while not (self.folder / self.other.replace("/", "_")).exists():
            if time.monotonic() - waited > 60:
                raise TimeoutError(f"{self.other} never ran while {self.card.id} did")
            await asyncio.sleep(0.05)
        return {"text": f"{self.card.task}: {args.get('text', '')}"}


class StuckOnceExpert:
    """Any task: the first call in `folder` hangs until its actor is killed; every later one (the rerun in the
    restarted actor) ends at once, saying in which process it ran."""

    def __init__(self, task: str, model_id: str, folder: str) -> None:
        self.card = card(task, model_id)
        self.marker = Path(folder) / "first-call"

    async def run(self, args, ctx):
        if not self.marker.exists():
            self.marker.touch()
            await asyncio.sleep(60)
        return {"text": f"{self.card.task}: {args.get('text', '')}", "json": {"pid": os.getpid()}}


class WaitExpert:
    """summarization: waits a minute; cancelled, it leaves a file named `cancelled` in `folder`."""

    def __init__(self, folder: str) -> None:
        self.card = card("summarization", "test/wait")
        self.folder = folder

    async def run(self, args, ctx):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            Path(self.folder, "cancelled").write_text(str(os.getpid()))
            raise
        return {"text": "too late"}


def make_registry(specs) -> ExpertRegistry:
    """The experts of `specs` ((class, args) pairs): what the controller holds and each actor builds."""
    return ExpertRegistry(cls(*args) for cls, args in specs)


SPECS = (
    (DrawExpert, ()),
    (ColourExpert, ()),
    (ClockExpert, ("summarization", "test/sum", 0.6)),
    (ClockExpert, ("text-classification", "test/cls", 0.6)),
    (CrashExpert, ("translation", "test/crash")),
)


def plan_json(*tasks) -> str:
    return json.dumps({"tasks": [{"task": t, "id": i, "dep": d, "args": a} for t, i, d, a in tasks]})


def on_ray(experts: ExpertRegistry, pools, tmp_path, *tasks, **settings) -> HuggingGPT:
    """A pipeline on the Ray executor with `pools`, whose scripted LLM plans `tasks`."""
    return HuggingGPT(
        scripted(plan_json(*tasks)),
        experts,
        settings=Settings(output_dir=tmp_path / "out", **settings),
        executor=RayExecutor(experts, pools),
    )


def scripted(plan: str) -> ScriptedLLM:
    def reply(messages, schema):
        stage = role_of(messages)
        if stage == "planning":
            return plan
        if stage == "selection":
            return json.dumps(
                {k: {"id": v["properties"]["id"]["enum"][0], "reason": "r"} for k, v in schema["properties"].items()}
            )
        return "Done."

    return ScriptedLLM(fallback=reply, chunk=8)


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray instance for this module's tests (the only ones that use Ray), shut down after them, so the rest
    of the suite runs without it."""
    tests = str(Path(__file__).parent)
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    env = {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2, include_dashboard=False, namespace=NAMESPACE, log_to_driver=False, runtime_env={"env_vars": env}
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def shared_pools(ray_session):
    """One pool per model for the whole module: later tests reuse the actors earlier ones started."""
    pools = ActorPools(partial(make_registry, SPECS), size=1, idle_seconds=600)
    yield pools
    pools.close()


@pytest.fixture
def own_pools(ray_session):
    """Pools of a test's own, closed after it."""
    made: list[ActorPools] = []

    def make(specs, **options) -> ActorPools:
        made.append(ActorPools(partial(make_registry, specs), **options))
        return made[-1]

    yield make
    for pools in made:
        pools.close()


@pytest.fixture(params=["local", "ray"])
def build(request, tmp_path):
    """Builds a pipeline on the parametrised executor: `build(plan, specs=SPECS, pools=None)`."""

    def build(plan: str, specs=SPECS, pools: ActorPools | None = None) -> HuggingGPT:
        experts = make_registry(specs)
        if request.param == "ray":
            executor = RayExecutor(experts, pools or request.getfixturevalue("shared_pools"))
        else:
            executor = LocalExecutor(experts)
        settings = Settings(output_dir=tmp_path / "out", task_timeout=60)
        return HuggingGPT(scripted(plan), experts, settings=settings, executor=executor)

    build.kind = request.param
    return build


async def until_running(executor: RayExecutor, seconds: float = 20.0) -> list:
    """Wait until an actor of `executor` is running a call (it may be starting); the actors' statuses."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses = await executor.status()
        if any(s.running for s in statuses):
            return statuses
        await asyncio.sleep(0.05)
    raise AssertionError("no actor started running its call")


# --- the same pipeline on both executors ---------------------------------------------------------------------


async def test_parallel_branches_overlap_and_their_join_waits_for_both(build, own_pools, tmp_path):
    meet = str(tmp_path)
    specs = (
        (DrawExpert, ()),
        (MeetExpert, ("summarization", "test/meet-a", meet, "test/meet-b")),
        (MeetExpert, ("text-classification", "test/meet-b", meet, "test/meet-a")),
    )
    plan = plan_json(
        ("summarization", 0, [], {"text": "a"}),
        ("text-classification", 1, [], {"text": "b"}),
        ("text-to-image", 2, [0, 1], {"text": "<resource>-0 and <resource>-1"}),
    )
    gpt = build(plan, specs=specs, pools=own_pools(specs) if build.kind == "ray" else None)
    answer = await gpt.run("sum up a, classify b, and draw both")
    first, second, join = answer.results
    # each branch waits for the other to start: both end only if they ran at the same time
    assert [r.status for r in answer.results] == ["ok", "ok", "ok"], [r.error for r in answer.results]
    assert join.args["text"] == "summarization: a and text-classification: b"
    assert join.started_at >= max(first.finished_at, second.finished_at)
    assert Path(join.outputs["image"].path).is_file()


async def test_a_failing_expert_fails_its_task_skips_its_dependents_and_spares_the_rest(build):
    gpt = build(
        plan_json(
            ("summarization", 0, [], {"text": "a"}),
            ("translation", 1, [0], {"text": "<resource>-0", "tgt_lang": "French"}),
            ("text-to-image", 2, [1], {"text": "<resource>-1"}),
            ("text-classification", 3, [], {"text": "b"}),
        )
    )
    answer = await gpt.run("sum up a, translate it, draw it, and classify b")
    first, crash, dependent, other = answer.results
    assert first.status == other.status == "ok"
    assert crash.status == "failed" and crash.error == "RuntimeError: model exploded"
    assert dependent.status == "skipped"
    assert dependent.error == "task 1 (translation) failed: RuntimeError: model exploded"


async def test_a_file_one_expert_made_is_read_by_another(build, tmp_path):
    gpt = build(
        plan_json(
            ("text-to-image", 0, [], {"text": "a red square"}),
            ("image-classification", 1, [0], {"image": "<resource>-0"}),
        )
    )
    answer = await gpt.run("draw and classify")
    draw, classify = answer.results
    assert draw.status == classify.status == "ok"
    assert classify.outputs["json"]["size"] == [160, 80]  # it read the image the other one drew
    (image,) = answer.artifacts()
    path = Path(image.path)
    assert path.is_file() and path.is_relative_to(tmp_path / "out") and path.stat().st_size == image.size
    assert classify.args["image"] == image.path
    if build.kind == "ray":
        hosts = {s.model_id: s.pid for s in await gpt.executor.status()}
        assert hosts["test/draw"] != hosts["test/colour"] != os.getpid()  # two actors, neither this process
        assert image.sha256 in gpt.executor.shelf  # the drawn file stays in the object store for the next task


async def test_files_can_go_through_a_shared_folder_instead(shared_pools, tmp_path):
    experts = make_registry(SPECS)
    shared = tmp_path / "shared"
    gpt = HuggingGPT(
        scripted(
            plan_json(
                ("text-to-image", 0, [], {"text": "a red square"}),
                ("image-classification", 1, [0], {"image": "<resource>-0"}),
            )
        ),
        experts,
        settings=Settings(output_dir=tmp_path / "out"),
        executor=RayExecutor(experts, shared_pools, shelf=Shelf(shared=shared)),
    )
    answer = await gpt.run("draw and classify")
    draw, classify = answer.results
    assert draw.status == classify.status == "ok"
    assert classify.outputs["json"]["size"] == [160, 80]
    (image,) = answer.artifacts()
    assert Path(image.path).is_relative_to(tmp_path / "out")  # the request's copy
    assert [p.name for p in shared.iterdir()] == [f"{image.sha256}.png"]  # the one the actors passed on
    assert len(gpt.executor.shelf) == 0  # nothing went through the object store


async def test_cancelling_a_request_cancels_its_running_expert(build, tmp_path, own_pools):
    marks = tmp_path / "marks"
    marks.mkdir()
    specs = ((WaitExpert, (str(marks),)),)
    pools = own_pools(specs) if build.kind == "ray" else None
    gpt = build(plan_json(("summarization", 0, [], {"text": "a"})), specs=specs, pools=pools)
    async with aclosing(gpt.stream("go")) as events:
        async for event in events:
            if event.type == "task.start":
                break
        await until_running(gpt.executor) if build.kind == "ray" else await asyncio.sleep(0.1)
    for _ in range(100):
        if (marks / "cancelled").exists():
            break
        await asyncio.sleep(0.1)
    assert (marks / "cancelled").exists(), "the expert's call was not cancelled"
    where = int((marks / "cancelled").read_text())
    assert (where == os.getpid()) == (build.kind == "local")


# --- actors, pools and faults --------------------------------------------------------------------------------


async def test_two_concurrent_requests_share_one_actor(shared_pools, tmp_path):
    experts = make_registry(SPECS)
    gpt = on_ray(experts, shared_pools, tmp_path, ("summarization", 0, [], {"text": "a"}))
    one, two = await asyncio.gather(gpt.run("first"), gpt.run("second"))
    a, b = one.results[0].outputs["json"], two.results[0].outputs["json"]
    assert one.results[0].status == two.results[0].status == "ok"
    assert a["pid"] == b["pid"] != os.getpid()  # the same actor served both requests
    assert a["start"] < b["end"] and b["start"] < a["end"]  # at the same time
    assert [a.key[1] for a in shared_pools.actors()].count("test/sum") == 1


async def test_a_killed_actor_is_restarted_and_its_task_runs_again(own_pools, tmp_path):
    specs = ((StuckOnceExpert, ("summarization", "test/slow", str(tmp_path))),)
    pools = own_pools(specs, max_restarts=1)
    experts = make_registry(specs)
    gpt = on_ray(experts, pools, tmp_path, ("summarization", 0, [], {"text": "a"}), task_timeout=60)
    running = asyncio.create_task(gpt.run("go"))
    (before,) = await until_running(gpt.executor)
    (actor,) = pools.actors()
    ray.kill(actor.handle, no_restart=False)
    answer = await running
    (result,) = answer.results
    assert result.status == "ok", result.error
    assert result.outputs["json"]["pid"] != before.pid  # run again, by the restarted actor
    (after,) = await gpt.executor.status()
    assert after.name == before.name and after.pid == result.outputs["json"]["pid"]


async def test_an_actor_that_stays_dead_fails_its_task_like_any_failure(own_pools, tmp_path):
    specs = ((StuckOnceExpert, ("summarization", "test/slow", str(tmp_path))),)
    pools = own_pools(specs, max_restarts=0)
    experts = make_registry(specs)
    plan = (("summarization", 0, [], {"text": "a"}), ("text-to-image", 1, [0], {"text": "<resource>-0"}))
    gpt = on_ray(experts, pools, tmp_path, *plan, task_timeout=60)
    running = asyncio.create_task(gpt.run("sum up a and draw the summary"))
    await until_running(gpt.executor)
    ray.kill(pools.actors()[0].handle, no_restart=False)
    died, skipped = (await running).results
    assert died.status == "failed" and died.error.startswith("the Ray actor of test/slow died")
    assert skipped.status == "skipped"
    assert pools.actors() == []  # the next call starts a new actor


async def test_an_actor_that_cannot_build_its_expert_fails_the_task_saying_why(own_pools, tmp_path):
    from hugginggpt.jobs import Job
    from hugginggpt.workspace import Workspace

    experts = make_registry(SPECS)
    executor = RayExecutor(experts, own_pools(()))  # its actors build no experts at all
    job = Job(task_id=0, task="summarization", model_id="test/sum", args={"text": "a"})
    with pytest.raises(Exception, match="the Ray actor of test/sum could not start: .*no backend can run it"):
        await executor.run(job, Workspace(tmp_path / "out", []))
    assert executor.pools.actors() == []


async def test_idle_actors_are_released(own_pools, tmp_path):
    specs = ((ClockExpert, ("summarization", "test/idle", 0)),)
    pools = own_pools(specs, idle_seconds=0.5)
    experts = make_registry(specs)
    gpt = HuggingGPT(
        scripted(plan_json(("summarization", 0, [], {"text": "a"}))),
        experts,
        settings=Settings(output_dir=tmp_path / "out"),
        executor=RayExecutor(experts, pools),
    )
    assert (await gpt.run("go")).results[0].status == "ok"
    (actor,) = pools.actors()
    for _ in range(100):
        if not pools.actors():
            break
        await asyncio.sleep(0.1)
    assert pools.actors() == []
    assert actor.name not in ray.util.list_named_actors()


async def test_the_status_shows_each_actor_its_node_and_memory(shared_pools, tmp_path):
    experts = make_registry(SPECS)
    gpt = on_ray(experts, shared_pools, tmp_path, ("summarization", 0, [], {"text": "a"}))
    await gpt.run("go")
    status = await asyncio.to_thread(cluster_status)
    (node,) = status.nodes
    assert node.alive and node.cpus == 2
    summary = next(a for a in status.actors if a.model_id == "test/sum")
    assert summary.node_id == node.node_id and summary.rss_mib > 10 and summary.jobs >= 1
    assert summary.name.startswith("expert:summarization:test/sum:")


async def test_text_tasks_of_the_controller_llm_stay_in_the_controller(own_pools, tmp_path):
    from hugginggpt.experts import llm_experts
    from hugginggpt.jobs import Job
    from hugginggpt.workspace import Workspace

    llm = scripted(plan_json())
    experts = ExpertRegistry(llm_experts(llm))
    pools = own_pools(())
    executor = RayExecutor(experts, pools)
    expert = experts.experts()[0]
    job = Job(task_id=0, task=expert.card.task, model_id=expert.card.id, args={"text": "hello"})
    result = await executor.run(job, Workspace(tmp_path / "out", []))
    assert result.outputs["text"] == "Done."
    assert pools.actors() == []


async def test_the_default_experts_run_in_actors_built_from_the_settings(ray_session, tmp_path):
    from hugginggpt.jobs import Job
    from hugginggpt.pipeline import default_experts
    from hugginggpt.workspace import Workspace

    settings = Settings(executor="ray", output_dir=tmp_path / "out", ray_idle_seconds=60)
    experts, _ = default_experts(settings, None)
    if experts.get("text-classification", "cjhutto/vaderSentiment") is None:
        pytest.skip("the vaderSentiment expert is not installed")
    executor = RayExecutor.from_settings(settings, experts)
    try:
        job = Job(task_id=0, task="text-classification", model_id="cjhutto/vaderSentiment", args={"text": "I love it"})
        workspace = Workspace(tmp_path / "out", [])
        on_ray = await executor.run(job, workspace)
        here = await LocalExecutor(experts).run(job, workspace)
        assert on_ray.outputs == here.outputs and on_ray.outputs
        (status,) = await executor.status()
        assert status.model_id == "cjhutto/vaderSentiment" and status.pid != os.getpid()
    finally:
        executor.close()


def test_the_server_on_ray_serves_concurrent_requests_from_the_same_actors(own_pools, tmp_path):
    """`hugginggpt serve --executor ray`: a live server whose requests share one pool per model."""
    openai = need_module("openai", "the openai client is a dependency")
    need_module("fastapi", "the server tests need the server extra: pip install -e '.[server]'")
    from concurrent.futures import ThreadPoolExecutor

    from hugginggpt.experts.llm import llm_experts
    from hugginggpt.server.app import create_app
    from hugginggpt.server.completions import MODEL_ID
    from serverkit import Describer, LiveServer, Painter, controller, settings_for

    specs = ((Painter, ()), (Describer, ()))
    pools = own_pools(specs)
    settings = settings_for(tmp_path, executor="ray")
    llm = ScriptedLLM(fallback=controller, chunk=6)
    experts = make_registry(specs)
    for expert in llm_experts(llm):
        experts.register(expert)
    gpt = HuggingGPT(llm, experts, settings=settings, executor=RayExecutor(experts, pools))

    def ask(colour: str) -> str:
        with openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=60) as client:
            messages = [{"role": "user", "content": f"draw a {colour} kite and describe it"}]
            return client.chat.completions.create(model=MODEL_ID, messages=messages).choices[0].message.content

    with LiveServer(create_app(gpt, settings)) as live, ThreadPoolExecutor(2) as threads:
        red, blue = threads.map(ask, ["red", "blue"])
    assert "a 96x64 red image" in red and "a 96x64 blue image" in blue
    statuses = [ray.get(actor.handle.status.remote()) for actor in pools.actors()]
    assert sorted((s["model_id"], s["jobs"]) for s in statuses) == [("test/describer", 2), ("test/painter", 2)]


# --- settings and errors -------------------------------------------------------------------------------------


def test_actor_options_ask_for_what_the_card_or_the_settings_say():
    plain = card("summarization", "m/a")
    assert actor_options(plain, None, 3) == {"max_restarts": 3, "max_task_retries": 1}
    gpu = plain.model_copy(update={"resources": Resources(num_gpus=1, memory_mb=2048)})
    assert actor_options(gpu, None, 0) == {
        "max_restarts": 0,
        "max_task_retries": 1,
        "num_gpus": 1,
        "memory": 2048 * 2**20,
    }
    assert actor_options(gpu, Resources(num_cpus=2), 1)["num_cpus"] == 2  # the setting wins over the card
    settings = Settings(ray_resources={"m/a": {"num_gpus": 0.5}})
    assert settings.ray_resources["m/a"].num_gpus == 0.5


def test_an_unreachable_cluster_is_a_one_line_error_naming_its_address(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "HUGGINGGPT_RAY_ADDRESS": address, "HUGGINGGPT_EXECUTOR": "ray", "COLUMNS": "300"}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hugginggpt", "models"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the Ray cluster at {address}"), done.stderr
    assert time.monotonic() - start < 30
