from helpers import ColourExpert, DrawExpert
from hugginggpt.config import Settings
from hugginggpt.experts.registry import ExpertRegistry, default_registry
from hugginggpt.llm.scripted import ScriptedLLM


def test_registry_finds_experts_by_task_and_model():
    registry = ExpertRegistry([DrawExpert(), ColourExpert()])
    assert registry.get("text-to-image", "test/draw").card.task == "text-to-image"
    assert registry.get("text-to-image", "test/colour") is None
    assert {c.id for c in registry.cards()} == {"test/draw", "test/colour"}
    assert len(registry) == 2


def test_default_registry_serves_text_tasks_with_the_llm():
    registry = default_registry(Settings(), ScriptedLLM())
    tasks = {c.task for c in registry.cards() if c.backend == "llm"}
    assert {"summarization", "translation", "question-answering"} <= tasks
