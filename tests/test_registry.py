"""ExpertRegistry lookups, and default_registry: the controller LLM's text experts plus the embedded experts."""

from helpers import ColourExpert, DrawExpert
from hugginggpt.config import Settings
from hugginggpt.experts.llm import LLM_TASKS
from hugginggpt.experts.registry import ExpertRegistry, default_registry
from hugginggpt.llm.scripted import ScriptedLLM


def test_registry_finds_experts_by_task_and_model():
    registry = ExpertRegistry([DrawExpert(), ColourExpert()])
    assert registry.get("text-to-image", "test/draw").card.task == "text-to-image"
    assert registry.get("text-to-image", "test/colour") is None
    assert {c.id for c in registry.cards()} == {"test/draw", "test/colour"}
    assert len(registry) == 2


def test_default_registry_holds_the_llm_and_the_embedded_experts():
    registry = default_registry(Settings(), ScriptedLLM())
    by_backend = {}
    for card in registry.cards():
        by_backend.setdefault(card.backend, set()).add(card.task)
    assert by_backend["llm"] == set(LLM_TASKS)
    assert {"image-to-text", "automatic-speech-recognition", "sentence-similarity"} <= by_backend["embedded"]
    assert registry.get("image-to-text", "rapidocr/PP-OCRv6-small") is not None
    assert len(registry.experts()) == len(registry)


def test_without_an_llm_the_registry_still_has_the_embedded_experts():
    registry = default_registry(Settings(), None)
    assert registry.cards()
    assert {card.backend for card in registry.cards()} == {"embedded"}
