"""HuggingGPT: a language model plans a request as a graph of AI tasks, picks expert models, runs them, and answers."""

from .config import Settings
from .errors import HuggingGPTError, LLMError, PlanError, WorkspaceError
from .pipeline import Conversation, HuggingGPT
from .types import Answer, Artifact, Event, ModelCard, Plan, Selection, Task, TaskResult

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "Artifact",
    "Conversation",
    "Event",
    "HuggingGPT",
    "HuggingGPTError",
    "LLMError",
    "ModelCard",
    "Plan",
    "PlanError",
    "Selection",
    "Settings",
    "Task",
    "TaskResult",
    "WorkspaceError",
]
