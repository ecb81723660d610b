"""The chat history the planning prompt shows: the most recent turns that fit a token budget."""

from __future__ import annotations

from collections.abc import Sequence

from ..llm.protocol import Message


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token) for trimming history."""
    return len(text) // 4 + 1


def trim_history(history: Sequence[Message], budget: int) -> list[Message]:
    """The most recent messages that fit in `budget` tokens, dropping the oldest first."""
    kept: list[Message] = []
    used = 0
    for message in reversed(history):
        cost = estimate_tokens(message.content)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return kept
