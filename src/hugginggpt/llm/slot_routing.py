"""Which llama.cpp slot a call of the embedded LLM runs in, so that a saved prompt prefix survives other work.

A call that starts with a warmed prefix (the planning prompt) goes to a free slot that holds it; if none does, to
one that holds nothing, whose KV state the prefix's saved state is restored into first (a fraction of a second,
where processing the prefix again takes tens). Any other call goes first to a slot that holds no prefix, so the
slots that do keep it. The first prefix warmed (the planning prompt) goes into every slot, a later one (the answer's
system prompt) into the last slot only. Without this, llama.cpp picks slots itself, and under concurrent requests a
plan could land in a slot an answer had just overwritten and process the whole prefix again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .prompt_cache import StateRecord


@dataclass(frozen=True)
class SavedPrefix:
    """A prefix whose KV state is saved: its messages, and the state file (name in llama.cpp's slot folder)."""

    messages: list[dict[str, Any]]
    state: str
    record: StateRecord


class SlotTable:
    """The slots' bookkeeping: which are free, and which saved prefix each one's KV cache starts with."""

    def __init__(self, slots: int) -> None:
        self._lock = threading.Lock()
        self._free = set(range(slots))
        self._holds: dict[int, str | None] = dict.fromkeys(range(slots))
        self._prefixes: dict[str, SavedPrefix] = {}

    def remember(self, digest: str, prefix: SavedPrefix, slots: Sequence[int] | None = None) -> None:
        """`prefix` was just put into `slots` (None: into every slot), restored or processed and saved."""
        with self._lock:
            self._prefixes[digest] = prefix
            for slot in self._holds if slots is None else slots:
                self._holds[slot] = digest

    def place(self, digest: str) -> int | None:
        """Where the prefix `digest` goes when it is warmed: None (every slot) when no other prefix is saved, else
        the last slot only, so the other slots keep the prefixes warmed before it (a call that needs it in another
        slot gets it restored there)."""
        with self._lock:
            return None if set(self._prefixes) <= {digest} else len(self._holds) - 1

    def prefix_of(self, messages: Sequence[dict[str, Any]]) -> str | None:
        """The digest of the saved prefix `messages` starts with, if any."""
        with self._lock:
            for digest, prefix in self._prefixes.items():
                if list(messages[: len(prefix.messages)]) == prefix.messages:
                    return digest
        return None

    def saved(self, digest: str) -> SavedPrefix:
        with self._lock:
            return self._prefixes[digest]

    def acquire(self, digest: str | None) -> tuple[int, bool]:
        """A free slot for a call starting with `digest` (None: with no saved prefix), and whether the prefix's
        state must be restored into it first. The caller runs at most as many calls at once as there are slots."""
        with self._lock:
            if not self._free:
                raise RuntimeError("no free slot: more calls in flight than slots")
            empty = [s for s in self._free if self._holds[s] is None]
            if digest is not None:
                holding = [s for s in self._free if self._holds[s] == digest]
                slot = min(holding or empty or self._free)
            else:
                slot = min(empty or self._free)
            self._free.discard(slot)
            return slot, digest is not None and self._holds[slot] != digest

    def release(self, slot: int, holds: str | None) -> None:
        """The call in `slot` is over; the slot's KV cache now starts with the prefix `holds` (None: with none)."""
        with self._lock:
            self._holds[slot] = holds
            self._free.add(slot)

    def holder(self, slot: int) -> str | None:
        with self._lock:
            return self._holds[slot]
