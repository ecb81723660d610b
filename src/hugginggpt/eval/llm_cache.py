"""A cache of LLM calls for evaluations: a call made before (same model, messages, constraint and limits) is
answered from a SQLite file instead of the model, so an ablation that changes one part of the planner runs only
the calls that part changes. With greedy decoding (temperature 0) the answer is the one the model gives."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..llm.protocol import LLM, Completion, Message


class CachedLLM:
    """`inner` with its calls kept in `path` (SQLite; created if missing, shared safely by several processes).
    A call with a temperature above 0 is never answered from the cache. `hits` and `misses` count the calls."""

    def __init__(self, inner: LLM, path: Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, completion TEXT NOT NULL)")
        self._db.commit()
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def accepts_grammar(self) -> bool:
        return bool(getattr(self.inner, "accepts_grammar", False))

    def _key(self, messages: Sequence[Message], kwargs: dict[str, Any]) -> str:
        call = {"llm": self.name, "messages": [m.model_dump() for m in messages], **kwargs}
        return hashlib.sha256(json.dumps(call, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
        on_delta = kwargs.pop("on_delta", None)
        key = self._key(messages, kwargs)
        greedy = kwargs.get("temperature", 0.0) == 0.0
        row = self._db.execute("SELECT completion FROM calls WHERE key = ?", (key,)).fetchone() if greedy else None
        if row is not None:
            self.hits += 1
            completion = Completion.model_validate_json(row[0])
            if on_delta is not None:
                on_delta(completion.text)
            return completion
        self.misses += 1
        completion = await self.inner.complete(messages, **kwargs, **({"on_delta": on_delta} if on_delta else {}))
        if greedy:
            self._db.execute(
                "INSERT OR REPLACE INTO calls (key, completion) VALUES (?, ?)", (key, completion.model_dump_json())
            )
            self._db.commit()
        return completion

    def close(self) -> None:
        self._db.close()
