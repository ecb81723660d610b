"""Latency benchmark of the controller LLM and the pipeline: ratios measured in one run (`hugginggpt bench`)."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from ..pipeline import HuggingGPT
from ..types import Answer, Task

COLD_REQUEST = "Translate 'good morning, my friend' into French."
WARM_REQUESTS = (
    "Summarize this text: the meeting moved from Monday to Thursday because the manager was ill.",
    "Translate 'see you tomorrow at the station' into German, and write a two-line poem about a station.",
    "Write a two-line poem about the sea.",
)
RUN_REQUEST = "Translate 'the weather is lovely today' into Spanish."
RUN_REPEATS = 2


class PlanSample(BaseModel):
    """One planning call: wall time, when the first task streamed out, and llama.cpp's counts where known."""

    request: str
    seconds: float
    first_task_seconds: float | None = None
    tasks: int = 0
    prompt_tokens: int = 0
    cached_tokens: int | None = None
    prompt_per_second: float | None = None
    generated_tokens: int = 0
    generation_per_second: float | None = None
    error: str | None = None


class BenchReport(BaseModel):
    """What `hugginggpt bench` measured; the ratios compare numbers taken in the same process, minutes apart."""

    llm: str
    load_seconds: float
    cold: PlanSample
    warm: list[PlanSample]
    run_streamed_seconds: float | None = None
    run_sequential_seconds: float | None = None
    rss_mib: float
    peak_rss_mib: float

    @property
    def warm_median(self) -> float:
        return statistics.median(s.seconds for s in self.warm)

    def ratios(self) -> dict[str, float | None]:
        warm_first = [s.first_task_seconds / s.seconds for s in self.warm if s.first_task_seconds and s.seconds]
        cached = [s.cached_tokens / (s.cached_tokens + s.prompt_tokens) for s in self.warm if s.cached_tokens]
        streamed, sequential = self.run_streamed_seconds, self.run_sequential_seconds
        return {
            "warm / cold plan latency": self.warm_median / self.cold.seconds if self.cold.seconds else None,
            "first streamed task / whole plan (warm)": statistics.median(warm_first) if warm_first else None,
            "prompt tokens served from cache (warm)": statistics.median(cached) if cached else None,
            "run with plan streaming / without": streamed / sequential if streamed and sequential else None,
        }


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _plan(gpt: HuggingGPT, request: str) -> PlanSample:
    start = time.perf_counter()
    first: list[float] = []

    def on_task(task: Task) -> None:
        if not first:
            first.append(time.perf_counter() - start)

    sample = PlanSample(request=request, seconds=0.0)
    try:
        plan = await gpt.planner.plan(request, on_task=on_task)
        sample.tasks = len(plan.tasks)
    except Exception as exc:  # a failed plan is still a timed LLM call; report it and go on
        sample.error = str(exc)
    sample.seconds = time.perf_counter() - start
    sample.first_task_seconds = first[0] if first else None
    timings = getattr(gpt.llm, "last_timings", None)  # the embedded backend's own counts of its last call
    if timings is not None:
        sample.prompt_tokens = timings.prompt_tokens
        sample.cached_tokens = timings.cached_tokens
        sample.prompt_per_second = timings.prompt_per_second or None
        sample.generated_tokens = timings.generated_tokens
        sample.generation_per_second = timings.generation_per_second or None
    return sample


async def _run(gpt: HuggingGPT, request: str, output_dir: Path) -> tuple[float, Answer]:
    start = time.perf_counter()
    answer = await gpt.run(request, output_dir=output_dir)
    return time.perf_counter() - start, answer


async def run_bench(
    gpt: HuggingGPT,
    output_dir: Path,
    *,
    cold_request: str = COLD_REQUEST,
    warm_requests: Sequence[str] = WARM_REQUESTS,
    run_request: str | None = RUN_REQUEST,
    run_repeats: int = RUN_REPEATS,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchReport:
    """Load the LLM, plan once cold and several times warm, then run one request with and without plan streaming.

    The runs alternate (without, with, without, with, …) after a warm-up run, and the fastest of each kind counts,
    so that a burst of load from other processes on the machine skews the ratio less."""
    start = time.perf_counter()
    load = getattr(gpt.llm, "load", None)
    if load is not None:
        progress("loading the controller LLM")
        await load()
    load_seconds = time.perf_counter() - start
    progress("cold plan (the whole prompt is new)")
    cold = await _plan(gpt, cold_request)
    warm = []
    for request in warm_requests:
        progress(f"warm plan: {request}")
        warm.append(await _plan(gpt, request))
    report = BenchReport(
        llm=gpt.llm.name, load_seconds=load_seconds, cold=cold, warm=warm, rss_mib=0.0, peak_rss_mib=0.0
    )
    if run_request:
        sequential = HuggingGPT(
            gpt.llm,
            gpt.experts,
            catalog=gpt.catalog,
            settings=gpt.settings.model_copy(update={"stream_plan": False}),
            executor=gpt.executor,
        )
        progress("warm-up run")
        await _run(gpt, run_request, output_dir)
        without, with_ = [], []
        for _ in range(max(1, run_repeats)):
            progress("run without plan streaming")
            without.append((await _run(sequential, run_request, output_dir))[0])
            progress("run with plan streaming")
            with_.append((await _run(gpt, run_request, output_dir))[0])
        report.run_sequential_seconds, report.run_streamed_seconds = min(without), min(with_)
    report.rss_mib = _rss_mib()
    report.peak_rss_mib = _peak_rss_mib()
    return report
