"""The prompt-cache step: the controller LLM's processed planning prompt, saved in the user cache."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import HuggingGPTError
from .steps import PROMPT_CACHE_STEP, SetupReport


def prompt_cache_step(settings: Settings, force: bool) -> SetupReport:
    """Process the planning prompt's fixed start with the embedded LLM and save its KV state in the user cache, so
    every later process restores it instead (`force`: again, even when a saved state is intact)."""
    from ..llm.embedded import EmbeddedLLM
    from ..pipeline import HuggingGPT

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
        warmup = asyncio.run(gpt.llm.warm(gpt.planner.prefix(), rebuild=force))
    except HuggingGPTError as exc:
        return report("failed", str(exc))
    if warmup.status == "failed":
        return report("failed", f"the planning prompt could not be processed: {warmup.detail}")
    if warmup.status not in ("restored", "saved") or warmup.path is None:
        return report("unavailable", warmup.detail or "the prompt state was not saved")
    path = Path(warmup.path)
    try:
        sizes = {path.name: path.stat().st_size}
    except OSError:
        sizes = {}
    detail = f"{warmup.tokens} tokens of the planning prompt processed by {gpt.llm.name}, in {path.parent}"
    return report("cached" if warmup.status == "restored" else "ready", detail, sizes=sizes)
