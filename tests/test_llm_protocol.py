import pytest

from hugginggpt.errors import LLMError
from hugginggpt.llm.protocol import Message, UsageMeter
from hugginggpt.llm.scripted import ScriptedLLM


async def test_meter_records_each_call_by_stage_including_failures():
    meter = UsageMeter()
    llm = ScriptedLLM("a plan", LLMError("down"))
    await meter.bind(llm, "planning").complete([Message(role="user", content="x y")])
    with pytest.raises(LLMError):
        await meter.bind(llm, "response").complete([Message(role="user", content="z")])
    planning, response = meter.calls
    assert (planning.stage, planning.ok, planning.prompt_tokens, planning.completion_tokens) == ("planning", True, 2, 2)
    assert (response.stage, response.ok) == ("response", False)
    assert planning.seconds >= 0
