"""The account of a run's workflow, rendered by code from the results: every model id and file path in it is real."""

from __future__ import annotations

from collections.abc import Sequence

from .facts import TaskFacts

HEADING = "How this was done:"
SEPARATOR = "\n\n" + HEADING + "\n"
RESULT_CHARS = 200  # of a task's result shown in the account


def _result(facts: TaskFacts) -> str:
    text = " ".join(facts.result.split())
    return text if len(text) <= RESULT_CHARS else text[: RESULT_CHARS - 1].rstrip() + "…"


def account_lines(facts: Sequence[TaskFacts]) -> list[str]:
    """One line per task: its model, status and time, its result, the files it produced and what failed and why."""
    lines = []
    for fact in facts:
        model = f"model {fact.model_id}" if fact.model_id else "no model"
        line = f"- Task {fact.id}, {fact.what}: {model}, {fact.status}"
        if fact.seconds is not None:
            line += f" in {fact.seconds:.2f} s"
        if fact.ok:
            if fact.result:
                line += f". Result: {_result(fact)}"
            if fact.produced:
                files = ", ".join(f"{artifact.path} ({artifact.media_type})" for artifact in fact.produced)
                line += f". Produced: {files}"
        elif fact.error:
            line += f": {fact.error}"
        lines.append(line + ("" if line.endswith((".", "…")) else "."))
    return lines


def render_account(facts: Sequence[TaskFacts]) -> str:
    """The workflow part of an answer (heading included), or '' when no task was planned."""
    if not facts:
        return ""
    return SEPARATOR + "\n".join(account_lines(facts))


def split_answer(text: str) -> tuple[str, str]:
    """(direct answer, account) of an Answer's text; the account is '' when there is none."""
    direct, found, account = text.partition(SEPARATOR)
    return (direct, HEADING + "\n" + account) if found else (text, "")
