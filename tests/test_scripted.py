import pytest

from hugginggpt.errors import LLMError
from hugginggpt.llm.protocol import LLM, Message
from hugginggpt.llm.scripted import ScriptedLLM

HI = [Message(role="user", content="hi there")]


async def test_replies_in_order_then_fallback_then_error():
    llm = ScriptedLLM("one", lambda messages, schema: f"saw {messages[-1].content}", fallback="again")
    assert isinstance(llm, LLM)
    assert (await llm.complete(HI)).text == "one"
    assert (await llm.complete(HI)).text == "saw hi there"
    assert (await llm.complete(HI)).text == "again"
    assert len(llm.calls) == 3
    with pytest.raises(LLMError, match="no reply left"):
        await ScriptedLLM().complete(HI)


async def test_streams_in_chunks_and_counts_tokens():
    deltas = []
    completion = await ScriptedLLM("abcdefghij", chunk=4).complete(HI, on_delta=deltas.append)
    assert deltas == ["abcd", "efgh", "ij"]
    assert completion.usage.prompt_tokens == 2 and completion.usage.completion_tokens == 1


async def test_scripted_exceptions_are_raised():
    with pytest.raises(LLMError, match="boom"):
        await ScriptedLLM(LLMError("boom")).complete(HI)


async def test_prompt_reading_costs_only_what_no_earlier_prompt_or_warmed_prefix_started_with():
    rate = 1e6  # tokens per second: the accounting is exact, the sleeping negligible
    llm = ScriptedLLM(fallback="ok", prompt_tokens_per_second=rate)
    system = Message(role="system", content="you are a planner " * 50)  # 200 tokens
    await llm.warm([system])
    await llm.complete([system, Message(role="user", content="one two three")])
    assert 3 / rate <= llm.prompt_seconds <= 12 / rate  # only the request and its role tags, not the 200
    before = llm.prompt_seconds
    await llm.complete([Message(role="system", content="another prompt " * 100)])  # nothing in common
    assert llm.prompt_seconds - before >= 200 / rate
    with pytest.raises(ValueError):
        ScriptedLLM(prompt_tokens_per_second=0)
