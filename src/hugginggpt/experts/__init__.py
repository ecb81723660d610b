"""Expert models behind one protocol, and the registry that routes tasks to them."""

from .llm import LLM_TASKS, LLMExpert, llm_experts
from .protocol import Expert, ExpertContext, LocalExpert, Outputs
from .registry import ExpertRegistry

__all__ = [
    "LLM_TASKS",
    "Expert",
    "ExpertContext",
    "ExpertRegistry",
    "LLMExpert",
    "LocalExpert",
    "Outputs",
    "llm_experts",
]
