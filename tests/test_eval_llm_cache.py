"""The evaluations' LLM call cache: a real SQLite file, a scripted model behind it."""

from __future__ import annotations

from hugginggpt.eval.llm_cache import CachedLLM
from hugginggpt.llm.protocol import Message
from hugginggpt.llm.scripted import ScriptedLLM

ASK = [Message(role="user", content="Plan: describe a.jpg")]


async def test_a_call_made_before_is_answered_from_the_file_even_in_a_new_process(tmp_path):
    inner = ScriptedLLM("first", "second", "third")
    cached = CachedLLM(inner, tmp_path / "calls.sqlite")
    assert (await cached.complete(ASK, max_tokens=10)).text == "first"
    assert (await cached.complete(ASK, max_tokens=10)).text == "first"  # the same call: from the file
    assert (await cached.complete(ASK, max_tokens=11)).text == "second"  # another limit is another call
    assert (await cached.complete(ASK, max_tokens=10, json_schema={"type": "object"})).text == "third"
    assert (cached.hits, cached.misses, len(inner.calls)) == (1, 3, 3)
    cached.close()
    again = CachedLLM(ScriptedLLM(), tmp_path / "calls.sqlite")  # a later run: the model is never asked
    seen: list[str] = []
    assert (await again.complete(ASK, max_tokens=11, on_delta=seen.append)).text == "second"
    assert seen == ["second"] and again.hits == 1


async def test_a_sampled_call_is_never_answered_from_the_file(tmp_path):
    cached = CachedLLM(ScriptedLLM("one", "two"), tmp_path / "calls.sqlite")
    assert (await cached.complete(ASK, temperature=0.7)).text == "one"
    assert (await cached.complete(ASK, temperature=0.7)).text == "two"
    assert cached.hits == 0


async def test_another_model_does_not_get_the_first_ones_answers(tmp_path):
    first = ScriptedLLM("from one")
    first.name = "model-one"
    await CachedLLM(first, tmp_path / "c.sqlite").complete(ASK)
    second = ScriptedLLM("from two")
    second.name = "model-two"
    cached = CachedLLM(second, tmp_path / "c.sqlite")
    assert (await cached.complete(ASK)).text == "from two" and cached.misses == 1


def test_it_says_whether_the_model_behind_takes_a_grammar(tmp_path):
    assert CachedLLM(ScriptedLLM(accepts_grammar=True), tmp_path / "a.sqlite").accepts_grammar
    assert not CachedLLM(ScriptedLLM(), tmp_path / "b.sqlite").accepts_grammar
