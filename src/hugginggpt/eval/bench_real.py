"""Workload B of `hugginggpt bench`: the real embedded stack on everyday requests, the demo among them.

Each request runs twice over: in a **fresh process** (`hugginggpt run --json`, the way a CLI user runs it: the
LLM loads, the planning prefix comes from the prompt cache, the experts load), and **warm** in this process (the
pipeline loaded once, a discarded first run of each request so its experts are loaded). Warm, the same requests
also run in the `staged` mode (the paper's pipeline, `bench_modes.run_staged` on the real parts), and `bound` is
the critical path of the warm `ours` run: its plan generation + the longest chain of expert times + its answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..pipeline import HuggingGPT
from ..setup.files import DEMO_REQUEST
from ..types import Answer
from .bench_modes import ModeRun, bound_of, run_staged, stage_seconds
from .bench_workload import CountingLLM


class EverydayRequest(BaseModel):
    name: str
    request: str


EVERYDAY = (
    EverydayRequest(name="demo", request=DEMO_REQUEST),
    EverydayRequest(name="one-task", request="What objects can you see in kite.jpg?"),
    EverydayRequest(name="translate", request="Translate 'the train leaves at nine tomorrow morning' into German."),
    EverydayRequest(name="describe-speak", request="Describe dog.jpg and read the description aloud."),
)


class RealRun(ModeRun):
    """One request in one mode on the real stack: LLM calls are the controller's plus one per LLM-served text task,
    generated tokens the controller's (an LLM-served task's are not counted by it); a fresh process also has its peak
    RSS, a failed one its last error line."""

    llm_calls: int = 0
    generated_tokens: int = 0
    peak_rss_mib: float | None = None
    error: str | None = None


class RealRequestRuns(BaseModel):
    name: str
    request: str
    modes: dict[str, RealRun]

    def ratio(self, mode: str, to: str) -> float | None:
        if mode not in self.modes or to not in self.modes or not self.modes[to].wall_s:
            return None
        return self.modes[mode].wall_s / self.modes[to].wall_s


class WorkloadBReport(BaseModel):
    llm: str
    requests: list[RealRequestRuns]

    def ratios(self) -> dict[str, float | None]:
        def worst(mode: str, to: str) -> float | None:
            values = [x for r in self.requests if (x := r.ratio(mode, to)) is not None]
            return max(values) if values else None

        staged = [x for r in self.requests if (x := r.ratio("staged", "ours-warm")) is not None]
        return {
            "warm / fresh process (worst; target <= 0.60)": worst("ours-warm", "ours-fresh"),
            "ours warm / bound (worst)": worst("ours-warm", "bound"),
            "staged / ours warm (least)": min(staged) if staged else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "ratios": self.ratios()}


def _from_answer(mode: str, wall: float, answer: Answer) -> RealRun:
    llm_tasks = sum(1 for s in answer.selections if s.backend == "llm")
    return RealRun(
        mode=mode,
        wall_s=wall,
        llm_calls=answer.llm_calls + llm_tasks,
        generated_tokens=sum(call.completion_tokens for call in answer.llm_usage),
        llm_tasks=llm_tasks,
        # planning as the run saw it: restoring the prompt cache and the planning call
        plan_s=answer.timings.get("planning", 0.0),
        answer_s=stage_seconds(answer, "response"),
        first_expert_s=answer.timings.get("first_task"),
        expert_s={r.task_id: r.seconds for r in answer.results if r.seconds is not None},
        ok=answer.error is None and all(r.status == "ok" for r in answer.results),
        error=answer.error,
    )


def run_fresh(request: str, inputs: Path, output_dir: Path, timeout: float = 600.0) -> RealRun:
    """`hugginggpt run --json` in a new process: its wall time from start to exit and its peak RSS."""
    argv = [sys.executable, "-m", "hugginggpt", "run", request, "--inputs", str(inputs), "--json"]
    argv += ["--output-dir", str(output_dir)]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=stdout, stderr=stderr)
        deadline = start + timeout
        while (waited := os.wait4(process.pid, os.WNOHANG))[0] == 0:
            if time.perf_counter() > deadline:
                process.kill()
                waited = os.wait4(process.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
        _, status, usage = waited
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        text, errors = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    try:
        answer = Answer.model_validate_json(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = errors.strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
        return RealRun(mode="ours-fresh", wall_s=wall, peak_rss_mib=peak, ok=False, error=last[0][:300])
    return _from_answer("ours-fresh", wall, answer).model_copy(update={"peak_rss_mib": peak})


async def run_staged_real(gpt: HuggingGPT, request: str, inputs: Path, output_dir: Path) -> RealRun:
    """The staged ablation on the real parts (its LLM calls counted, text tasks included)."""
    llm = CountingLLM(gpt.llm)
    run: ModeRun = await run_staged(
        request, output_dir, llm=llm, experts=gpt.experts, catalog=gpt.catalog, table=gpt.planner.table, inputs=[inputs]
    )
    # an LLM-served task calls the LLM directly, not the counted one
    return RealRun(**{**run.model_dump(), "llm_calls": run.llm_calls + run.llm_tasks})


async def run_workload_b(
    gpt: HuggingGPT,
    inputs: Path,
    output_dir: Path,
    *,
    requests: Sequence[EverydayRequest] = EVERYDAY,
    staged: bool = True,
    progress: Callable[[str], None] = lambda _: None,
) -> WorkloadBReport:
    """Fresh-process runs first (nothing of this process's LLM is loaded yet, so they do not share the CPU with
    it), then the warm runs: a discarded one per request, the measured one, the staged one."""
    runs: dict[str, dict[str, RealRun]] = {r.name: {} for r in requests}
    for item in requests:
        progress(f"workload B, {item.name}: a fresh process")
        runs[item.name]["ours-fresh"] = run_fresh(item.request, inputs, output_dir / item.name / "fresh")
    load = getattr(gpt.llm, "load", None)
    if load is not None:
        progress("workload B: loading the controller LLM in this process")
        await load()
    for item in requests:
        out = output_dir / item.name
        progress(f"workload B, {item.name}: warm-up run")
        await gpt.run(item.request, inputs=[inputs], output_dir=out / "warm-up")
        progress(f"workload B, {item.name}: warm")
        start = time.perf_counter()
        answer = await gpt.run(item.request, inputs=[inputs], output_dir=out / "warm")
        warm = _from_answer("ours-warm", time.perf_counter() - start, answer)
        runs[item.name]["ours-warm"] = warm
        runs[item.name]["bound"] = bound_of({t.id: t.dep for t in answer.plan}, warm)
        if staged:
            progress(f"workload B, {item.name}: staged")
            runs[item.name]["staged"] = await run_staged_real(gpt, item.request, inputs, out / "staged")
    return WorkloadBReport(
        llm=gpt.llm.name,
        requests=[RealRequestRuns(name=r.name, request=r.request, modes=runs[r.name]) for r in requests],
    )
