import asyncio
import json
import re

import pytest

from helpers import AnswerExpert, ColourExpert, CrashExpert, DrawExpert, SleepExpert, role_of, write_png
from hugginggpt.account import split_answer
from hugginggpt.config import Settings
from hugginggpt.errors import LLMError
from hugginggpt.experts import ExpertRegistry, llm_experts
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import Conversation, HuggingGPT


def plan_json(*tasks):
    return json.dumps({"tasks": [{"task": t, "id": i, "dep": d, "args": a} for t, i, d, a in tasks]})


class Router:
    """Scripted LLM replies by stage: planning replies in order, selection picks the last candidate."""

    def __init__(self, *plans, answer="Here is your answer.", fail_response=False):
        self.plans = list(plans)
        self.answer = answer
        self.fail_response = fail_response
        self.stages = []

    def __call__(self, messages, schema):
        stage = role_of(messages)
        self.stages.append(stage)
        if stage == "planning":
            plan = self.plans.pop(0)
            return plan(messages) if callable(plan) else plan
        if stage == "selection":
            return json.dumps(
                {k: {"id": v["properties"]["id"]["enum"][-1], "reason": "r"} for k, v in schema["properties"].items()}
            )
        if stage == "response":
            if self.fail_response:
                raise LLMError("response model down")
            return self.answer
        return "expert text"


def pipeline(tmp_path, router, experts, **settings):
    llm = ScriptedLLM(fallback=router, chunk=4)
    return HuggingGPT(llm, ExpertRegistry(experts), settings=Settings(output_dir=tmp_path / "out", **settings)), llm


async def collect(gpt, request, **kwargs):
    return [event async for event in gpt.stream(request, **kwargs)]


async def test_two_task_plan_runs_end_to_end_with_two_llm_calls(tmp_path):
    router = Router(
        plan_json(
            ("text-to-image", 0, [], {"text": "a red square"}),
            ("image-classification", 1, [0], {"image": "<resource>-0"}),
        )
    )
    gpt, _ = pipeline(tmp_path, router, [DrawExpert(), ColourExpert()])
    answer = await gpt.run("draw a red square and classify it")
    assert [r.status for r in answer.results] == ["ok", "ok"]
    direct, account = split_answer(answer.text)
    assert direct == "Here is your answer."  # the LLM's reply; the account below it is rendered from the results
    assert "Task 0, text to image" in account and "model test/draw, ok" in account
    assert answer.artifacts()[0].path in account and "model test/colour, ok" in account and "Result: red" in account
    assert answer.llm_calls == 2 and [c.stage for c in answer.llm_usage] == ["planning", "response"]
    assert {"planning", "selection", "execution", "response", "total"} <= set(answer.timings)
    (artifact,) = answer.artifacts()
    assert artifact.path.startswith(str(tmp_path / "out")) and artifact.media_type == "image/png"
    assert [s.model_id for s in answer.selections] == ["test/draw", "test/colour"]


async def test_four_task_plan_needs_one_batched_selection_call(tmp_path):
    router = Router(
        plan_json(
            ("summarization", 0, [], {"text": "a"}),
            ("summarization", 1, [], {"text": "b"}),
            ("translation", 2, [0], {"text": "<resource>-0", "tgt_lang": "French"}),
            ("translation", 3, [1], {"text": "<resource>-1", "tgt_lang": "German"}),
        )
    )
    experts = [
        SleepExpert("summarization", "sum/a", 0, downloads=10),
        SleepExpert("summarization", "sum/b", 0, downloads=5),
        SleepExpert("translation", "tr/a", 0, downloads=10),
        SleepExpert("translation", "tr/b", 0, downloads=5),
    ]
    gpt, _ = pipeline(tmp_path, router, experts, selection="llm")
    answer = await gpt.run("summarise a and b, translate")
    assert [r.status for r in answer.results] == ["ok"] * 4
    assert [c.stage for c in answer.llm_usage] == ["planning", "selection", "response"]
    assert {s.model_id for s in answer.selections} == {"sum/b", "tr/b"}  # the LLM's picks, not the top-ranked
    assert all(s.strategy == "llm" for s in answer.selections)


async def test_top_strategy_makes_no_selection_call(tmp_path):
    router = Router(plan_json(("summarization", 0, [], {"text": "a"})))
    gpt, _ = pipeline(
        tmp_path,
        router,
        [SleepExpert("summarization", "a", 0, 1), SleepExpert("summarization", "b", 0, 9)],
        selection="top",
    )
    answer = await gpt.run("summarise")
    assert answer.selections[0].model_id == "b" and answer.llm_calls == 2


async def test_tasks_start_while_the_plan_is_still_streaming(tmp_path):
    router = Router(plan_json(("summarization", 0, [], {"text": "a"}), ("text-classification", 1, [], {"text": "b"})))
    experts = [SleepExpert("summarization", "s", 0), SleepExpert("text-classification", "t", 0)]
    gpt, _ = pipeline(tmp_path, router, experts)
    events = await collect(gpt, "go")
    types = [e.type for e in events]
    assert types.index("task.start") < types.index("plan.done")
    assert types[-1] == "answer.done"
    streamed = "".join(e.data["text"] for e in events if e.type == "answer.token")
    assert streamed == events[-1].data["answer"]["text"]
    assert split_answer(streamed)[0] == "Here is your answer."


async def test_without_streaming_the_plan_comes_first(tmp_path):
    router = Router(plan_json(("summarization", 0, [], {"text": "a"})))
    gpt, _ = pipeline(tmp_path, router, [SleepExpert("summarization", "s", 0)], stream_plan=False)
    events = await collect(gpt, "go")
    types = [e.type for e in events]
    assert types.index("plan.done") < types.index("task.start")
    (start,) = [e for e in events if e.type == "task.start"]
    assert start.data["while_planning"] is False and start.data["at_s"] >= 0


async def test_a_task_start_says_it_came_while_the_plan_was_still_being_written(tmp_path):
    router = Router(plan_json(("summarization", 0, [], {"text": "a"}), ("text-classification", 1, [], {"text": "b"})))
    experts = [SleepExpert("summarization", "s", 0), SleepExpert("text-classification", "t", 0)]
    gpt, _ = pipeline(tmp_path, router, experts)
    events = await collect(gpt, "go")
    starts = {e.data["task_id"]: e for e in events if e.type == "task.start"}
    first = [e.type for e in events].index("task.start")
    assert first < [e.type for e in events].index("plan.done") and events[first].data["while_planning"] is True
    answer = events[-1].data["answer"]
    assert answer["timings"]["first_task"] == min(e.data["at_s"] for e in starts.values())
    assert answer["timings"]["first_task"] <= answer["timings"]["planning"]


async def test_independent_llm_served_text_tasks_run_at_the_same_time(tmp_path):
    plan = plan_json(
        ("translation", 0, [], {"text": "good morning", "tgt_lang": "French"}),
        ("summarization", 1, [], {"text": "a long text about the sea and the harbour at night"}),
    )
    router = Router(plan)
    words = " ".join(["word"] * 120)

    def reply(messages, schema):  # each text task's reply takes 0.3 s to generate
        return router(messages, schema) if router.plans or role_of(messages) != "expert" else words

    llm = ScriptedLLM(fallback=reply, tokens_per_second=400)
    gpt = HuggingGPT(llm, ExpertRegistry(llm_experts(llm)), settings=Settings(output_dir=tmp_path / "out"))
    events = await collect(gpt, "translate and summarise")
    kinds = [(e.type, e.data.get("task_id")) for e in events if e.type in ("task.start", "task.end")]
    assert kinds[:2] == [("task.start", 0), ("task.start", 1)] or kinds[:2] == [("task.start", 1), ("task.start", 0)]
    assert [r["status"] for r in events[-1].data["answer"]["results"]] == ["ok", "ok"]


async def test_repaired_plan_replaces_what_streamed(tmp_path):
    bad = plan_json(("summarization", 0, [], {"text": "a"}), ("translation", 1, [], {"text": "<resource>-5"}))
    good = plan_json(("translation", 0, [], {"text": "fixed"}))
    gpt, _ = pipeline(
        tmp_path, Router(bad, good), [SleepExpert("summarization", "s", 0.3), SleepExpert("translation", "t", 0)]
    )
    answer = await gpt.run("go")
    assert [(t.task, t.args) for t in answer.plan] == [("translation", {"text": "fixed"})]
    assert [(r.task, r.status) for r in answer.results] == [("translation", "ok")]
    # the one translation is the answer: no response call
    assert [c.stage for c in answer.llm_usage] == ["planning", "planning"]


async def test_the_valid_part_of_a_plan_runs_and_the_answer_says_what_was_left_out(tmp_path):
    bad = plan_json(("summarization", 0, [], {"text": "a"}), ("translation", 1, [], {"text": "<resource>-5"}))
    gpt, _ = pipeline(
        tmp_path, Router(bad, bad), [SleepExpert("summarization", "s", 0), SleepExpert("translation", "t", 0)]
    )
    events = await collect(gpt, "summarise a, then translate")
    answer = events[-1].data["answer"]
    assert [(r["task"], r["status"]) for r in answer["results"]] == [("summarization", "ok")]
    assert answer["error"].startswith("part of the request could not be planned: task 1 (translation)")
    assert split_answer(answer["text"])[0] == "Here is your answer."  # answered from what ran
    assert any(e.type == "error" and "could not be planned" in e.data["message"] for e in events)


async def test_empty_plan_answers_directly(tmp_path):
    gpt, _ = pipeline(tmp_path, Router('{"tasks": []}', answer="Hello!"), [SleepExpert("summarization", "s", 0)])
    answer = await gpt.run("hi")
    assert answer.text == "Hello!" and answer.plan == [] and answer.llm_calls == 2 and answer.output_dir is None


async def test_unplannable_request_gives_an_answer_with_the_error(tmp_path):
    gpt, _ = pipeline(
        tmp_path, Router("no idea", "still no idea", "nor a single task"), [SleepExpert("summarization", "s", 0)]
    )
    events = await collect(gpt, "???")
    answer = events[-1].data["answer"]
    assert answer["error"].startswith("no JSON found")
    assert answer["text"].startswith("I could not plan this request: the planner's reply was not a valid plan")
    assert any(e.type == "error" and e.data["stage"] == "planning" for e in events)


async def test_a_plan_error_quoting_an_invented_file_stays_out_of_the_answer(tmp_path):
    bad = plan_json(("image-to-image", 0, [], {"image": "lighthouse_sunset.jpg", "text": "a lighthouse"}))
    gpt, _ = pipeline(tmp_path, Router(bad, bad, bad), [SleepExpert("summarization", "s", 0)], stream_plan=False)
    answer = await gpt.run("Draw a picture of a lighthouse at sunset.")
    assert "lighthouse_sunset.jpg" in answer.error and "lighthouse_sunset.jpg" not in answer.text


async def test_unreachable_llm_is_reported_not_raised(tmp_path):
    gpt = HuggingGPT(
        ScriptedLLM(fallback=LLMError("cannot connect")), ExpertRegistry([SleepExpert("summarization", "s", 0)])
    )
    answer = await gpt.run("x")
    assert answer.error == "cannot connect"


async def test_response_failure_falls_back_to_a_summary_of_results(tmp_path):
    router = Router(plan_json(("summarization", 0, [], {"text": "cats sleep"})), fail_response=True)
    gpt, _ = pipeline(tmp_path, router, [SleepExpert("summarization", "sum/model", 0)])
    answer = await gpt.run("summarise")
    direct, account = split_answer(answer.text)
    assert "I could not write the answer (response model down)" in direct
    assert '- Summarization of "cats sleep": summarization: cats sleep.' in direct
    assert "model sum/model, ok" in account


async def test_llm_expert_serves_text_tasks(tmp_path):
    router = Router(plan_json(("translation", 0, [], {"text": "good morning", "tgt_lang": "French"})))
    llm = ScriptedLLM(fallback=router)
    gpt = HuggingGPT(llm, ExpertRegistry(llm_experts(llm)), settings=Settings(output_dir=tmp_path))
    answer = await gpt.run("translate good morning to French")
    assert answer.results[0].outputs == {"text": "expert text"}
    expert_prompt = next(m for m, _ in llm.calls if role_of(m) == "expert")[0].content
    assert "into French" in expert_prompt and "good morning" in expert_prompt
    # the controller's own calls (the plan; the one translation is the answer), the expert's work is a task result
    assert answer.llm_calls == 1 and answer.text.startswith("Translation: expert text")


async def test_follow_up_turn_uses_an_earlier_result(tmp_path):
    def follow_up(messages):
        earlier = re.search(r"Files: (\S+\.png)", messages[-2].content).group(1)
        return plan_json(("image-classification", 0, [], {"image": earlier}))

    router = Router(plan_json(("text-to-image", 0, [], {"text": "blue"})), follow_up)
    gpt, _ = pipeline(tmp_path, router, [DrawExpert(), ColourExpert()])
    conversation = Conversation()
    first = await gpt.run("draw something", conversation=conversation)
    second = await gpt.run("classify that picture", conversation=conversation)
    assert second.results[0].status == "ok"
    assert second.results[0].args["image"] == str(
        (tmp_path / "out").resolve() / first.artifacts()[0].path.split("/out/")[1]
    )
    assert len(conversation.messages) == 4


async def test_inputs_come_from_the_given_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_png(folder / "g.png", "green")
    router = Router(
        plan_json(
            ("image-classification", 0, [], {"image": "g.png"}), ("image-classification", 1, [], {"image": "../x.png"})
        )
    )
    gpt, _ = pipeline(tmp_path, router, [ColourExpert()])
    answer = await gpt.run("classify g.png and ../x.png", inputs=[folder])
    assert answer.results[0].outputs["text"] == "green"
    assert "outside the allowed input folders" in answer.results[1].error


async def test_stopping_the_stream_cancels_the_run(tmp_path):
    slow = SleepExpert("summarization", "s", 30)
    gpt, _ = pipeline(tmp_path, Router(plan_json(("summarization", 0, [], {"text": "a"}))), [slow])
    stream = gpt.stream("go")
    async for event in stream:
        if event.type == "task.start":
            break
    await stream.aclose()
    await asyncio.sleep(0)
    assert slow.intervals == []  # never finished
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


@pytest.mark.parametrize("strategy", ["fit", "llm", "top"])
async def test_task_type_without_any_model_is_planned_and_fails_saying_what_would_serve_it(tmp_path, strategy):
    plan = plan_json(
        ("summarization", 0, [], {"text": "a"}),
        ("translation", 1, [0], {"text": "<resource>-0"}),
        ("text-to-speech", 2, [1], {"text": "<resource>-1"}),
    )
    router = Router(plan)
    # translation is a known task type that no expert serves: it is still planned, as the user asked
    gpt, _ = pipeline(tmp_path, router, [SleepExpert("summarization", "s", 0)], selection=strategy)
    assert "translation" in gpt.task_types.names()
    answer = await gpt.run("sum up a, translate it and read it aloud")
    assert [t.task for t in answer.plan] == ["summarization", "translation", "text-to-speech"]
    assert [r.status for r in answer.results] == ["ok", "failed", "skipped"]
    failed = answer.results[1]
    assert failed.error.startswith("no installed model serves translation; what would serve it:")
    assert "Helsinki-NLP/opus-mt-en-fr" in failed.error and "HF_TOKEN" in failed.error
    assert "task 1 (translation) failed: no installed model serves translation" in answer.results[2].error


async def test_an_invented_file_in_the_reply_never_streams_and_an_error_event_says_what_was_removed(tmp_path):
    router = Router(
        plan_json(("summarization", 0, [], {"text": "cats sleep"})),
        answer="Cats sleep a lot. I saved the summary as 0-summarization-123456.txt.",
    )
    gpt, _ = pipeline(tmp_path, router, [SleepExpert("summarization", "sum/model", 0)])
    conversation = Conversation()
    events = await collect(gpt, "summarise: cats sleep", conversation=conversation)
    streamed = "".join(e.data["text"] for e in events if e.type == "answer.token")
    answer = events[-1].data["answer"]
    assert streamed == answer["text"] and "123456" not in streamed
    direct, account = split_answer(answer["text"])
    assert direct == "Cats sleep a lot." and "model sum/model, ok" in account
    (removed,) = [e.data for e in events if e.type == "error" and e.data["stage"] == "grounding"]
    assert "0-summarization-123456.txt" in removed["sentence"] and "did not produce" in removed["reason"]
    assert answer["removed"] == [{k: removed[k] for k in answer["removed"][0]}]  # the Answer records it too
    assert conversation.messages[1].content == "Cats sleep a lot."  # the account stays out of later prompts


async def test_when_every_task_failed_the_answer_says_why_without_a_response_call(tmp_path):
    router = Router(plan_json(("text-to-image", 0, [], {"text": "a lighthouse"})), answer="I drew a lighthouse.")
    gpt, _ = pipeline(tmp_path, router, [CrashExpert("text-to-image", "test/crash")])
    answer = await gpt.run("draw a lighthouse")
    direct, account = split_answer(answer.text)
    assert direct == 'I could not produce an image (text to image of "a lighthouse"): RuntimeError: model exploded.'
    assert "model test/crash, failed" in account and "drew" not in answer.text
    assert [c.stage for c in answer.llm_usage] == ["planning"]


# --- a question the labels could not answer goes on to a question-answering model -----------------------------------


def _question_setup(tmp_path, answer, doc_answer, vqa_answer):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_png(folder / "bike.png", "red")
    router = Router(plan_json(("image-classification", 0, [], {"image": "bike.png"})), answer=answer)
    doc = AnswerExpert("document-question-answering", "test/doc-qa", doc_answer)
    vqa = AnswerExpert("visual-question-answering", "test/vqa", vqa_answer)
    gpt, _ = pipeline(tmp_path, router, [ColourExpert(), doc, vqa])
    return gpt, folder, doc, vqa


async def test_an_unanswered_question_about_an_image_is_asked_of_a_qa_model(tmp_path):
    gpt, folder, doc, vqa = _question_setup(
        tmp_path, "The colour of the bicycle is not provided in the results.", None, "The bicycle is red."
    )
    events = await collect(gpt, "What colour is the bicycle in bike.png?", inputs=[folder])
    answer = events[-1].data["answer"]
    direct, account = split_answer(answer["text"])
    assert direct == "The bicycle is red."  # the first reply never reached the user
    assert "not provided" not in "".join(e.data["text"] for e in events if e.type == "answer.token")
    assert [(t["task"], t["args"]) for t in answer["plan"]] == [
        ("image-classification", {"image": "bike.png"}),
        ("document-question-answering", {"image": "bike.png", "text": "What colour is the bicycle in bike.png?"}),
        ("visual-question-answering", {"image": "bike.png", "text": "What colour is the bicycle in bike.png?"}),
    ]
    assert [r["status"] for r in answer["results"]] == ["ok", "failed", "ok"]  # no text on it: the VQA answered
    assert "no readable text found in bike.png" in account and "model test/vqa, ok" in account
    assert len(doc.asked) == len(vqa.asked) == 1


async def test_a_document_answer_stops_there(tmp_path):
    gpt, folder, _, vqa = _question_setup(tmp_path, "The results do not say what the total is.", "216.48", "x")
    answer = await gpt.run("What is the total on bike.png?", inputs=[folder])
    assert split_answer(answer.text)[0] == "216.48"
    assert [r.task for r in answer.results][-1] == "document-question-answering" and vqa.asked == []


async def test_an_answered_question_asks_no_qa_model(tmp_path):
    gpt, folder, doc, vqa = _question_setup(tmp_path, "The image is red.", "x", "y")
    answer = await gpt.run("What colour is bike.png?", inputs=[folder])
    assert split_answer(answer.text)[0] == "The image is red." and len(answer.plan) == 1
    assert doc.asked == vqa.asked == []


async def test_when_no_qa_model_answers_the_first_reply_stands(tmp_path):
    gpt, folder, _, _ = _question_setup(
        tmp_path, "The colour is not provided in the results.", None, 'The text of bike.png does not say: "x".'
    )
    answer = await gpt.run("What colour is the bicycle in bike.png?", inputs=[folder])
    assert split_answer(answer.text)[0] == "The colour is not provided in the results."
    assert [r.status for r in answer.results] == ["ok", "failed", "ok"]


async def test_a_planned_vqa_that_could_not_answer_is_followed_by_document_qa(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_png(folder / "letter.png", "white")
    question = "In letter.png, what is my room number?"
    plan = plan_json(("visual-question-answering", 0, [], {"image": "letter.png", "text": "What is my room number?"}))
    router = Router(plan, answer="letter.png does not contain any information about the room number.")
    doc = AnswerExpert("document-question-answering", "test/doc-qa", '214 (from the line "Your room is 214.")')
    vqa = AnswerExpert("visual-question-answering", "test/vqa", "The facts do not give the room number.")
    gpt, _ = pipeline(tmp_path, router, [doc, vqa])
    answer = await gpt.run(question, inputs=[folder])
    assert split_answer(answer.text)[0].startswith("214")
    assert [t.task for t in answer.plan] == ["visual-question-answering", "document-question-answering"]
    assert [a["text"] for a in doc.asked] == [question] and len(vqa.asked) == 1
