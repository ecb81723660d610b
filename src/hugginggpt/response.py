"""Stage 4: the direct answer, written by the LLM from each task's short result and streamed only once checked."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from .errors import LLMError
from .experts.vision import plural
from .facts import TaskFacts, a_kind, total_counts
from .grounding import CheckedStream, Grounds, Removal, requested_kinds
from .llm.protocol import LLM, DeltaCallback, Message
from .prompts import render
from .types import MEDIA

MAX_TOKENS = 200  # a direct answer of a few sentences
FAILED = ("failed", "timeout")
# the text a final task of these types makes is what the user asked for: the answer gives it word for word
DELIVERED = {"translation": "Translation", "text-generation": "Written text"}


class Response(BaseModel):
    """The direct answer (what the user was sent, in full), what the check removed from the LLM's reply, and the
    LLM's error when it failed."""

    text: str
    removed: list[Removal] = Field(default_factory=list)
    error: str | None = None
    asked: bool = Field(True, description="whether the LLM was asked (not when no task succeeded)")


def _reason(error: str | None) -> str:
    return (error or "no reason was given").strip().rstrip(".")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def fact_line(fact: TaskFacts) -> str:
    """A task as the response LLM sees it: what it was and its short result, or that it could not be done and why.
    No paths, boxes or score lists."""
    head = f"Task {fact.id}, {fact.what}"
    if fact.ok:
        result = fact.result or "done"
        kinds = [a_kind(kind) for kind in fact.kinds()]
        return f"{head}: {result}" + (f" (it produced {' and '.join(kinds)})" if kinds else "")
    if fact.status in FAILED:
        return f"{head}: could not be done ({_reason(fact.error)})"
    if fact.status == "skipped":
        return f"{head}: not done ({_reason(fact.error)})"
    return f"{head}: not run"


def total_line(facts: Sequence[TaskFacts]) -> str | None:
    """The objects counted over several detections, added up by code (a small LLM adds badly), or None."""
    counted = [fact for fact in facts if fact.ok and fact.task == "object-detection" and fact.result]
    if len(counted) < 2:
        return None
    total = total_counts(counted)
    found = ", ".join(plural(label, n) for label, n in total.items()) or "no objects"
    return f"Added up over the {len(counted)} object detections: {found}"


def response_prefix() -> list[Message]:
    """The fixed start of every answer prompt `response_messages` builds: its system prompt."""
    return [Message(role="system", content=render("response_system.j2"))]


def response_messages(request: str, facts: Sequence[TaskFacts], history: Sequence[Message] = ()) -> list[Message]:
    lines = [fact_line(fact) for fact in facts]
    if total := total_line(facts):
        lines.append(total)
    results = "\n".join("- " + line for line in lines)
    return [
        *response_prefix(),
        *history,
        Message(role="user", content=render("response.j2", request=request, results=results)),
    ]


def could_not(fact: TaskFacts) -> str:
    """A plain sentence saying that a task's part could not be done, and why."""
    if fact.status == "skipped":
        return f"{_capital(fact.what)} was not done ({_reason(fact.error).split(': ', 1)[0]})."
    if fact.makes:
        kind = " or ".join(a_kind(kind) for kind in fact.makes)
        return f"I could not produce {kind} ({fact.what}): {_reason(fact.error)}."
    return f"{_capital(fact.what)} could not be done: {_reason(fact.error)}."


def unserved_answer(facts: Sequence[TaskFacts]) -> str:
    """The answer when no task succeeded: what could not be done and why, without asking the LLM."""
    return " ".join(could_not(fact) for fact in facts if fact.status != "skipped") or " ".join(map(could_not, facts))


def direct_text(facts: Sequence[TaskFacts]) -> str | None:
    """The answer without the LLM when the run was one task that wrote the text the user asked for (a translation,
    a written text): that text, word for word. None otherwise."""
    if len(facts) != 1:
        return None
    fact = facts[0]
    if not (fact.ok and fact.final and fact.task in DELIVERED and fact.result and fact.result.strip()):
        return None
    return f"{DELIVERED[fact.task]}: {fact.result.strip()}"


def plain_summary(facts: Sequence[TaskFacts], error: str | None = None) -> str:
    """An answer built without the LLM: each task's short result, or why it could not be done."""
    if not facts:
        if error:
            return f"I could not answer this request: the language model failed ({error})."
        return "I have no answer to give: the language model's reply could not be checked against any result."
    head = f"I could not write the answer ({error}). " if error else ""
    lines = [head + "Here is what the models returned:"]
    for fact in facts:
        if fact.ok:
            lines.append(f"- {_capital(fact.what)}: {fact.result or 'done'}.")
        else:
            lines.append(f"- {could_not(fact)}")
    if total := total_line(facts):
        lines.append(f"- {total}.")
    return "\n".join(lines)


def _notes(request: str, facts: Sequence[TaskFacts]) -> list[str]:
    """Sentences the code adds to the LLM's: each artifact the request asked for and did not get, and why (the
    failed task's error, or that no task was planned to make it)."""
    notes = [could_not(fact) for fact in facts if fact.makes and fact.status in FAILED]
    missing = {kind for fact in facts if fact.status in FAILED for kind in fact.makes}
    produced = {kind for fact in facts for kind in fact.kinds()}
    for kind in (*MEDIA, "file"):
        if kind in requested_kinds(request) and kind not in missing | produced and not (kind == "file" and produced):
            notes.append(
                f"No {'file' if kind == 'file' else kind} was produced in this run: no task was planned to make one."
            )
    return notes


def _said(text: str, reply: str) -> bool:
    """Whether the reply already gives the text (its start, spacing and case aside)."""

    def norm(value: str) -> str:
        return " ".join(value.lower().split())

    return norm(text)[:40] in norm(reply)


def delivered(facts: Sequence[TaskFacts], reply: str) -> list[str]:
    """The texts the user asked to be made (a translation, a written text: a final task's output) that the reply
    does not give word for word, each as a line for the answer."""
    return [
        f"{DELIVERED[fact.task]}: {fact.result}"
        for fact in facts
        if fact.ok and fact.final and fact.task in DELIVERED and fact.result and not _said(fact.result, reply)
    ]


async def respond(
    llm: LLM,
    request: str,
    facts: Sequence[TaskFacts],
    *,
    grounds: Grounds | None = None,
    history: Sequence[Message] = (),
    on_delta: DeltaCallback | None = None,
    max_tokens: int = MAX_TOKENS,
    direct: bool = True,
) -> Response:
    """The direct answer to `request` from `facts`. The LLM's reply streams to `on_delta` sentence by sentence, each
    only after the grounding check let it through; when nothing of it is left, or the LLM fails, the answer is the
    plain summary. When no task succeeded, or (`direct`) the one task wrote the text asked for (`direct_text`),
    the LLM is not asked."""
    stream = CheckedStream(grounds or Grounds.of(facts, [request, *(m.content for m in history)]), on_delta)
    if facts and not any(fact.ok for fact in facts):
        stream.add(unserved_answer(facts))
        return Response(text=stream.text, asked=False)
    if direct and (text := direct_text(facts)) is not None:
        stream.add(text)
        for note in _notes(request, facts):
            stream.add(note)
        return Response(text=stream.text, asked=False)
    error: str | None = None
    try:
        await llm.complete(response_messages(request, facts, history), max_tokens=max_tokens, on_delta=stream.feed)
    except LLMError as exc:
        error = str(exc)
    stream.close()
    if error is None and not stream.text and not stream.removed:
        error = "the language model returned an empty answer"
    notes = _notes(request, facts)
    if error is not None or (not stream.text and (facts or not notes)):
        stream.add(plain_summary(facts, error), separator="\n\n")
    else:
        for line in delivered(facts, stream.text):
            stream.add(line, separator="\n\n")
    for note in notes:
        stream.add(note)
    return Response(text=stream.text, removed=stream.removed, error=error)
