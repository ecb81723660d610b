"""The expert registry: which expert serves which (task, model), and the catalogue cards they contribute."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol

from ..config import Settings
from ..errors import ExpertError
from ..llm.protocol import LLM
from ..types import ModelCard
from .protocol import Expert, ExpertContext, Outputs


class ExpertRegistry:
    """Experts keyed by (task type, model id). With a `router`, catalogue cards can be routed to backends."""

    def __init__(self, experts: Iterable[Expert] = (), router: Router | None = None) -> None:
        self._experts: dict[tuple[str, str], Expert] = {}
        self.router = router
        for expert in experts:
            self.register(expert)

    def register(self, expert: Expert) -> None:
        self._experts[(expert.card.task, expert.card.id)] = expert

    def get(self, task: str, model_id: str) -> Expert | None:
        return self._experts.get((task, model_id))

    def find(self, task: str, model_id: str, backend: str | None = None) -> Expert:
        """The expert that runs `model_id` for `task`, its routes on `backend` (where selection found it runnable)
        tried first; ExpertError when there is none. Experts load their models lazily and keep them."""
        expert = self.get(task, model_id)
        if expert is None:
            raise ExpertError(f"model {model_id} is in the catalogue but no backend can run it")
        if backend is not None and isinstance(expert, RoutedExpert):
            return expert.starting_at(backend)
        return expert

    def cards(self) -> list[ModelCard]:
        return [expert.card for expert in self._experts.values()]

    def experts(self) -> list[Expert]:
        return list(self._experts.values())

    def __len__(self) -> int:
        return len(self._experts)

    def route(self, cards: Iterable[ModelCard]) -> list[ModelCard]:
        """Catalogue cards marked with where they can run now; each gets a routed expert here. No router: as given."""
        if self.router is None:
            return list(cards)
        routed = []
        for card in cards:
            marked, expert = self.router.route(card, self.get(card.task, card.id))
            if expert is not None:
                self.register(expert)
            routed.append(marked)
        return routed


# ---------------------------------------------------------------------------------------------------------------
# Routing catalogue models to backends (local first, remote fallback)

ROUTING_MODES = ("local", "remote", "hybrid")


class ExpertBackend(Protocol):
    """A way to run catalogue models: on this machine or a model server (`local`), or on HF Inference (remote)."""

    name: str
    local: bool

    def why_not(self, card: ModelCard) -> str | None:
        """Why the card cannot run here now, or None when it can. Cheap: answers are cached."""
        ...

    def expert(self, card: ModelCard) -> Expert: ...


class RoutedExpert:
    """A catalogue model and the experts that may run it, in routing order; a call runs on the first that works.

    Each backend's availability is checked again at call time (cached answers), so a model that cannot run
    locally now, or fails locally, goes to the next backend (remote in hybrid mode). All failing is one error.
    """

    def __init__(self, card: ModelCard, chain: Sequence[tuple[ExpertBackend | None, Expert]]) -> None:
        self.card = card
        self.chain = list(chain)

    def starting_at(self, backend: str) -> RoutedExpert:
        """The same routes, those on `backend` first and the others after them, in order."""
        on = [link for link in self.chain if _name(link) == backend]
        order = on + [link for link in self.chain if _name(link) != backend]
        return self if order == self.chain else RoutedExpert(self.card, order)

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        problems = []
        for backend, expert in self.chain:
            name = _name((backend, expert))
            if backend is not None:
                reason = await asyncio.to_thread(backend.why_not, self.card)
                if reason is not None:
                    problems.append(f"{name}: {reason}")
                    continue
            try:
                return await expert.run(args, ctx)
            except Exception as exc:  # any backend failure moves on to the next one; all failing is reported
                problems.append(f"{name}: {exc}")
        raise ExpertError(f"{self.card.id} could not run ({'; '.join(problems) or 'no backend'})")


def _name(link: tuple[ExpertBackend | None, Expert]) -> str:
    backend, expert = link
    return backend.name if backend is not None else expert.card.backend


class Router:
    """Routes catalogue models to backends by mode: `local` (this machine and model servers), `remote` (HF
    Inference), `hybrid` (local first, remote fallback, as the paper). Experts already registered for a card
    (e.g. embedded ones) come first."""

    def __init__(self, mode: str, backends: Iterable[ExpertBackend]) -> None:
        if mode not in ROUTING_MODES:
            raise ValueError(f"unknown routing mode {mode!r}; choose one of {', '.join(ROUTING_MODES)}")
        self.mode = mode
        allowed = [b for b in backends if mode == "hybrid" or b.local == (mode == "local")]
        self.backends = [b for b in allowed if b.local] + [b for b in allowed if not b.local]

    def cards(self) -> list[ModelCard]:
        """Cards that backends bring themselves (models hosted by model servers)."""
        return [card for backend in self.backends for card in getattr(backend, "cards", list)()]

    def route(self, card: ModelCard, existing: Expert | None = None) -> tuple[ModelCard, RoutedExpert | None]:
        """The card marked with its availability per backend (and the first available one as `backend`),
        and the expert that routes calls to them."""
        chain: list[tuple[ExpertBackend | None, Expert]] = []
        availability: dict[str, bool] = {}
        if existing is not None and not isinstance(existing, RoutedExpert):
            chain.append((None, existing))
            availability[existing.card.backend] = existing.card.available
        elif isinstance(existing, RoutedExpert):
            chain.extend((b, e) for b, e in existing.chain if b is None)
            availability.update({e.card.backend: e.card.available for b, e in chain})
        for backend in self.backends:
            availability[backend.name] = backend.why_not(card) is None
            chain.append((backend, backend.expert(card)))
        first = next((name for name, ok in availability.items() if ok), None)
        marked = card.model_copy(
            update={"availability": availability, "available": first is not None, "backend": first or card.backend}
        )
        return marked, RoutedExpert(marked, chain) if chain else None


def default_registry(settings: Settings, llm: LLM | None) -> ExpertRegistry:
    """The experts a default pipeline gets: the controller LLM for text tasks (unless `llm` is None), the
    embedded (offline) experts, and, with an LLM, the experts composed of both (document QA, VQA)."""
    from .composed import composed_experts
    from .embedded import embedded_experts
    from .llm import llm_experts
    from .nanodet import nanodet_experts
    from .segmentation import segmentation_experts
    from .vision import vision_experts

    registry = ExpertRegistry(llm_experts(llm) if llm is not None else ())
    for expert in embedded_experts(settings):
        registry.register(expert)
    for expert in [*nanodet_experts(settings), *segmentation_experts(settings), *vision_experts(settings)]:
        registry.register(expert)
    if llm is not None:
        for expert in composed_experts(registry.experts(), llm):
            registry.register(expert)

    # Catalogue models on transformers, model servers and HF Inference, routed by `settings.routing`.
    registry.router = router_from_settings(settings)
    registry.route(registry.router.cards())
    return registry


def router_from_settings(settings: Settings) -> Router:
    """A router over the backends the settings allow: model servers and transformers (local), HF Inference."""
    from .inference import InferenceBackend
    from .server import ServerBackend
    from .transformers import TransformersBackend

    backends: list[ExpertBackend] = []
    if settings.model_servers:
        backends.append(ServerBackend.from_settings(settings))
    backends.append(TransformersBackend.from_settings(settings))
    backends.append(InferenceBackend.from_settings(settings))
    return Router(settings.routing, backends)
