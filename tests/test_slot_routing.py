"""Slot routing of the embedded LLM: plans go where their prefix is, other calls where none is."""

import pytest

from hugginggpt.llm.prompt_cache import StateRecord
from hugginggpt.llm.slot_routing import SavedPrefix, SlotTable

PREFIX = [{"role": "system", "content": "You plan."}, {"role": "user", "content": "demo"}]
RECORD = StateRecord(format=1, key="k", model="m", runtime="r", tokens=10, size=1, sha256="0" * 64)


def table(slots=2):
    slots_table = SlotTable(slots)
    slots_table.remember("plan", SavedPrefix(PREFIX, "state.bin", RECORD))
    return slots_table


def test_a_call_starting_with_a_saved_prefix_is_recognised_and_others_are_not():
    slots = table()
    assert slots.prefix_of([*PREFIX, {"role": "user", "content": "draw a cat"}]) == "plan"
    assert slots.prefix_of([{"role": "user", "content": "draw a cat"}]) is None
    assert slots.prefix_of(PREFIX[:1]) is None


def test_other_calls_take_the_slots_without_the_prefix_first_so_plans_keep_finding_it():
    slots = table()
    first, restore = slots.acquire(None)  # every slot holds the prefix: one of them must give it up
    assert (first, restore) == (0, False)
    slots.release(first, None)
    again, _ = slots.acquire(None)
    assert again == 0  # the slot that already lost the prefix, not slot 1
    plan, restore = slots.acquire("plan")
    assert (plan, restore) == (1, False)  # slot 1 still holds it: nothing to restore
    slots.release(again, None)
    slots.release(plan, "plan")


def test_a_plan_in_a_slot_that_lost_its_prefix_is_told_to_restore_it():
    slots = table()
    a, _ = slots.acquire(None)
    b, _ = slots.acquire(None)
    slots.release(a, None)
    slots.release(b, None)  # both slots overwritten
    plan, restore = slots.acquire("plan")
    assert restore and slots.holder(plan) is None
    slots.release(plan, "plan")
    assert slots.holder(plan) == "plan" and slots.acquire("plan") == (plan, False)


def test_more_calls_than_slots_is_a_bug_not_a_wait():
    slots = table(1)
    slots.acquire(None)
    with pytest.raises(RuntimeError, match="no free slot"):
        slots.acquire("plan")


def test_a_second_prefix_takes_the_last_slot_and_the_first_keeps_the_others():
    slots = table(3)
    assert slots.place("plan") is None  # warmed again: into every slot
    assert slots.place("answer") == 2
    slots.remember("answer", SavedPrefix([{"role": "system", "content": "You answer."}], "answer.bin", RECORD), [2])
    assert [slots.holder(s) for s in range(3)] == ["plan", "plan", "answer"]
    answer, restore = slots.acquire("answer")
    assert (answer, restore) == (2, False)
    other, restore = slots.acquire("answer")  # the slot holding it is busy: another gets it restored
    assert restore and other in (0, 1)
    slots.release(answer, "answer")
    slots.release(other, "answer")
    plan, restore = slots.acquire("plan")
    assert not restore and slots.holder(plan) == "plan"
