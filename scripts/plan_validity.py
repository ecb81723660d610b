"""Plan validity of the configured controller LLM on TaskBench instructions: how many plans parse and validate.

Usage: .venv/bin/python scripts/plan_validity.py [../shared/taskbench-data/data_huggingface/data_sample.jsonl]

Plans every `instruction` with all 25 task types available (as the planner would with every expert installed),
the one repair request included, and prints per-row results and the rates. Planning quality (node/edge F1) is
`hugginggpt eval taskbench`'s job; this only counts parseable and valid plans.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

from hugginggpt.config import Settings
from hugginggpt.errors import HuggingGPTError
from hugginggpt.jsontext import JSONNotFound, extract_json
from hugginggpt.llm import LLM, llm_from_settings
from hugginggpt.planning import Planner
from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "../shared/taskbench-data/data_huggingface/data_sample.jsonl"


class _Recording:
    """Passes calls through and keeps each raw reply, to count the ones that parse as JSON."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.name = llm.name
        self.replies: list[str] = []

    async def complete(self, messages, **kwargs):
        completion = await self.llm.complete(messages, **kwargs)
        self.replies.append(completion.text)
        return completion


async def main(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    llm = llm_from_settings(Settings())
    planner = Planner(llm, TaskTable(DEFAULT_TASK_TYPES))
    first_valid = parsed = valid = 0
    seconds = []
    for number, row in enumerate(rows, 1):
        recording = _Recording(llm)
        start = time.perf_counter()
        try:
            plan = await planner.plan(row["instruction"], llm=recording)
            outcome = "valid" + (" after repair" if len(recording.replies) > 1 else "")
            valid += 1
            first_valid += len(recording.replies) == 1
            detail = json.dumps([[t.task, t.dep] for t in plan.tasks])
        except HuggingGPTError as exc:
            outcome, detail = "invalid", str(exc)[:160]
        seconds.append(time.perf_counter() - start)
        try:
            extract_json(recording.replies[0])
            parsed += 1
        except (JSONNotFound, IndexError):
            pass
        print(f"{number:2d} {seconds[-1]:5.1f}s {outcome:18s} {detail}", flush=True)
    n = len(rows)
    print(
        f"\n{llm.name}: {n} instructions; first reply parses {parsed}/{n}; valid on first try {first_valid}/{n}; "
        f"valid after at most one repair {valid}/{n}; median {statistics.median(seconds):.1f} s per plan"
    )


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA))
