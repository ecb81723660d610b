"""Controller LLM backends behind one protocol, and the choice of backend from settings."""

from __future__ import annotations

from ..config import Settings
from .protocol import LLM, Completion, LLMError, Message, OutputTruncated, Usage, UsageMeter

__all__ = ["LLM", "Completion", "LLMError", "Message", "OutputTruncated", "Usage", "UsageMeter", "llm_from_settings"]


def llm_from_settings(settings: Settings) -> LLM:
    """The OpenAI-compatible backend when `llm_base_url` is set, else the embedded llama.cpp model (offline)."""
    if settings.llm_base_url:
        from .openai import OpenAICompatibleLLM

        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAICompatibleLLM(
            settings.llm_base_url,
            settings.llm_model,
            key,
            timeout=settings.llm_timeout,
            retries=settings.llm_retries,
        )
    from .embedded import EmbeddedLLM

    return EmbeddedLLM.from_settings(settings)
