"""The prompt-cache step: the controller LLM's processed planning prompt and answer system prompt, saved in the
user cache."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import HuggingGPTError
from .steps import PROMPT_CACHE_STEP, SetupReport


def prompt_cache_step(settings: Settings, force: bool) -> SetupReport:
    """Process the planning prompt's fixed start and the answer's system prompt with the embedded LLM and save their
    KV states in the user cache, so every later process restores them instead (`force`: again, even when a saved
    state is intact)."""
    from ..llm.embedded import EmbeddedLLM
    from ..pipeline import HuggingGPT
    from ..response import response_prefix

    start = time.perf_counter()

    def report(status: Any, detail: str, **extra: Any) -> SetupReport:
        return SetupReport(
            step=PROMPT_CACHE_STEP, status=status, detail=detail, seconds=time.perf_counter() - start, **extra
        )

    if settings.llm_base_url:
        return report("unavailable", "the controller LLM is an endpoint (HUGGINGGPT_LLM_BASE_URL), not embedded")
    if not settings.llm_prompt_cache:
        return report("unavailable", "the prompt cache is off (HUGGINGGPT_LLM_PROMPT_CACHE=false)")
    try:
        gpt = HuggingGPT.from_settings(settings)
        assert isinstance(gpt.llm, EmbeddedLLM)
        llm = gpt.llm

        async def both() -> list[Any]:
            return [await llm.warm(prefix, rebuild=force) for prefix in (gpt.planner.prefix(), response_prefix())]

        warmups = asyncio.run(both())
    except HuggingGPTError as exc:
        return report("failed", str(exc))
    for warmup, what in zip(warmups, ("planning prompt", "answer's system prompt"), strict=True):
        if warmup.status == "failed":
            return report("failed", f"the {what} could not be processed: {warmup.detail}")
        if warmup.status not in ("restored", "saved") or warmup.path is None:
            return report("unavailable", warmup.detail or f"the {what}'s state was not saved")
    paths = [Path(w.path) for w in warmups]
    try:
        sizes = {path.name: path.stat().st_size for path in paths}
    except OSError:
        sizes = {}
    tokens = " and ".join(str(w.tokens) for w in warmups)
    detail = (
        f"{tokens} tokens of the planning prompt and the answer's system prompt processed by {llm.name}, "
        f"in {paths[0].parent}"
    )
    restored = all(w.status == "restored" for w in warmups)
    return report("cached" if restored else "ready", detail, sizes=sizes)
