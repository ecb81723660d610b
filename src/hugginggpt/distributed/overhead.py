"""The Ray executor's overhead against the local one, on workload A's scripted requests (`hugginggpt bench`).

Each request of workload A (the scripted controller, experts that sleep for set times) runs through the shipped
pipeline with the local executor and with the Ray executor on a local Ray instance, in this process, turn about;
the timed experts run in Ray actors (started by a first, discarded round), the controller LLM's text tasks here.
What the Ray executor adds is the actor calls and the files through the object store. Run it with
`python -m hugginggpt.distributed.overhead`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from pydantic import BaseModel

from ..config import Settings
from ..eval.bench_workload import EXPERT_SECONDS, REQUESTS, TOKENS_PER_SECOND, BenchRequest, TimedExpert, workload_parts
from ..execution import LocalExecutor
from ..experts.registry import ExpertRegistry
from ..pipeline import HuggingGPT
from .actors import ActorPools
from .cluster import connect
from .executor import RayExecutor


def timed_experts(time_scale: float) -> ExpertRegistry:
    """Workload A's timed experts (what its actors build; the controller LLM's text experts stay out)."""
    return ExpertRegistry(
        TimedExpert(task, f"bench/{task}-{variant}", seconds * time_scale)
        for task, seconds in EXPERT_SECONDS.items()
        for variant in ("a", "b")
    )


class RequestOverhead(BaseModel):
    """One request: the median seconds on each executor, and the first Ray run (its actors starting)."""

    name: str
    tasks: int
    local_s: float
    ray_s: float
    ray_first_s: float

    @property
    def ratio(self) -> float:
        return self.ray_s / self.local_s


class OverheadReport(BaseModel):
    time_scale: float
    repeats: int
    requests: list[RequestOverhead]

    def ratio(self) -> float:
        """Ray over local, the requests' medians summed."""
        return sum(r.ray_s for r in self.requests) / sum(r.local_s for r in self.requests)

    def lines(self) -> list[str]:
        rows = [f"{'request':10} {'tasks':>5} {'local s':>8} {'ray s':>8} {'ray/local':>9} {'first ray s':>11}"]
        rows += [
            f"{r.name:10} {r.tasks:>5} {r.local_s:>8.3f} {r.ray_s:>8.3f} {r.ratio:>9.3f} {r.ray_first_s:>11.3f}"
            for r in self.requests
        ]
        rows.append(
            f"all requests: ray / local = {self.ratio():.3f} (medians of {self.repeats}, time scale "
            f"{self.time_scale:g})"
        )
        return rows


async def _run(request: BenchRequest, out: Path, time_scale: float, pools: ActorPools | None) -> float:
    llm, experts = workload_parts(TOKENS_PER_SECOND, time_scale)
    executor = RayExecutor(experts, pools) if pools is not None else LocalExecutor(experts)
    gpt = HuggingGPT(llm, experts, settings=Settings.model_construct(output_dir=out), executor=executor)
    start = time.perf_counter()
    answer = await gpt.run(request.request, output_dir=out)
    seconds = time.perf_counter() - start
    if answer.error or any(r.status != "ok" for r in answer.results):
        failed = [f"{r.task_id}: {r.error}" for r in answer.results if r.status != "ok"]
        raise RuntimeError(f"{request.name} did not run cleanly: {answer.error or '; '.join(failed)}")
    return seconds


async def measure_overhead(
    output_dir: Path, *, time_scale: float = 0.25, repeats: int = 3, requests: Sequence[BenchRequest] = REQUESTS
) -> OverheadReport:
    """Every request on both executors, `repeats` times turn about, after a first round that starts the actors."""
    connect(None)
    from . import overhead  # by its module name, not __main__, so the actors import what they build from

    pools = ActorPools(partial(overhead.timed_experts, time_scale), idle_seconds=3600)
    try:
        first = {r.name: await _run(r, output_dir / "first" / r.name, time_scale, pools) for r in requests}
        results = []
        for request in requests:
            local, remote = [], []
            for turn in range(repeats):
                out = output_dir / request.name / str(turn)
                local.append(await _run(request, out / "local", time_scale, None))
                remote.append(await _run(request, out / "ray", time_scale, pools))
            results.append(
                RequestOverhead(
                    name=request.name,
                    tasks=len(request.tasks),
                    local_s=statistics.median(local),
                    ray_s=statistics.median(remote),
                    ray_first_s=first[request.name],
                )
            )
    finally:
        pools.close()
    return OverheadReport(time_scale=time_scale, repeats=repeats, requests=results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hugginggpt.distributed.overhead", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--time-scale", type=float, default=0.25, help="workload A's times scaled by this")
    parser.add_argument("--repeats", type=int, default=3, help="runs per request and executor (the median is kept)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hugginggpt-ray-overhead-") as folder:
        report = asyncio.run(measure_overhead(Path(folder), time_scale=args.time_scale, repeats=args.repeats))
    if args.json:
        data = {**report.model_dump(), "ratio": report.ratio(), "ratios": {r.name: r.ratio for r in report.requests}}
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        sys.stdout.write("\n".join(report.lines()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
