"""The controller LLM as an expert for text tasks (summarization, translation, QA, generation), as in the paper."""

from __future__ import annotations

from ..llm.protocol import LLM, Message
from ..prompts import render
from ..types import ModelCard
from .protocol import ExpertContext, Outputs

LLM_TASKS = (
    "summarization",
    "translation",
    "question-answering",
    "text-generation",
    "conversational",
    "text2text-generation",
)


class LLMExpert:
    """Answers one text task type with the controller LLM."""

    def __init__(self, llm: LLM, task: str, max_tokens: int = 512) -> None:
        if task not in LLM_TASKS:
            raise ValueError(f"the LLM expert does not serve {task!r}; it serves {', '.join(LLM_TASKS)}")
        self.llm = llm
        self.max_tokens = max_tokens
        self.card = ModelCard(
            id=f"llm:{llm.name}",
            task=task,
            backend="llm",
            available=True,
            description=f"the controller LLM ({llm.name}) doing {task} from an instruction prompt",
        )

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        prompt = render("expert_llm.j2", task=self.card.task, args=args)
        completion = await self.llm.complete([Message(role="user", content=prompt)], max_tokens=self.max_tokens)
        return {"text": completion.text.strip()}


def llm_experts(llm: LLM) -> list[LLMExpert]:
    return [LLMExpert(llm, task) for task in LLM_TASKS]
