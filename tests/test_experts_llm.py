import pytest

from hugginggpt.experts.llm import LLM_TASKS, LLMExpert, llm_experts
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.workspace import Workspace


@pytest.fixture
def ctx(tmp_path):
    return ExpertContext(workspace=Workspace(tmp_path), task_id=0, task="question-answering")


async def test_question_answering_prompt_carries_question_and_context(ctx):
    llm = ScriptedLLM("  Paris \n")
    outputs = await LLMExpert(llm, "question-answering").run(
        {"text": "Capital?", "text_2": "France's capital is Paris."}, ctx
    )
    assert outputs == {"text": "Paris"}
    prompt = llm.calls[0][0][0].content
    assert "Question: Capital?" in prompt and "Context: France's capital is Paris." in prompt


async def test_each_text_task_gets_its_own_instruction(ctx):
    llm = ScriptedLLM(fallback="ok")
    prompts = {}
    for expert in llm_experts(llm):
        await expert.run({"text": "some text", "tgt_lang": "Spanish"}, ctx)
        prompts[expert.card.task] = llm.calls[-1][0][0].content
    assert set(prompts) == set(LLM_TASKS)
    assert "Summarise" in prompts["summarization"] and "into Spanish" in prompts["translation"]
    assert prompts["conversational"] == "some text"
    assert all(card.backend == "llm" and card.available for card in (e.card for e in llm_experts(llm)))


def test_non_text_task_is_refused():
    with pytest.raises(ValueError, match="does not serve 'object-detection'"):
        LLMExpert(ScriptedLLM(), "object-detection")
