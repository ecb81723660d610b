"""The expert registry: which expert serves which (task, model), and the catalogue cards they contribute."""

from __future__ import annotations

from collections.abc import Iterable

from ..config import Settings
from ..llm.protocol import LLM
from ..types import ModelCard
from .protocol import Expert


class ExpertRegistry:
    """Experts keyed by (task type, model id)."""

    def __init__(self, experts: Iterable[Expert] = ()) -> None:
        self._experts: dict[tuple[str, str], Expert] = {}
        for expert in experts:
            self.register(expert)

    def register(self, expert: Expert) -> None:
        self._experts[(expert.card.task, expert.card.id)] = expert

    def get(self, task: str, model_id: str) -> Expert | None:
        return self._experts.get((task, model_id))

    def cards(self) -> list[ModelCard]:
        return [expert.card for expert in self._experts.values()]

    def experts(self) -> list[Expert]:
        return list(self._experts.values())

    def __len__(self) -> int:
        return len(self._experts)


def default_registry(settings: Settings, llm: LLM | None) -> ExpertRegistry:
    """The experts a default pipeline gets: the controller LLM for text tasks (unless `llm` is None), and the
    embedded (offline) experts."""
    from .embedded import embedded_experts
    from .llm import llm_experts
    from .vision import vision_experts

    registry = ExpertRegistry(llm_experts(llm) if llm is not None else ())
    for expert in embedded_experts(settings):
        registry.register(expert)
    for expert in vision_experts(settings):
        registry.register(expert)
    return registry
