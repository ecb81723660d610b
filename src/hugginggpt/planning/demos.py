"""The demo bank: planning demonstrations picked per request by similarity (sentence embeddings or word overlap)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol

from ..errors import PlanError
from ..tasks import TaskTable
from ..types import arg_modality
from .matching import TypeMatcher
from .rules import validate_plan

_WORD = re.compile(r"[a-z0-9]+")
Demo = dict[str, Any]


class Embedder(Protocol):
    """Anything that maps texts to unit vectors, one row per text (e.g. `embedding.SentenceEmbedder`)."""

    def embed(self, texts: Sequence[str]) -> Any: ...


def load_bank() -> list[Demo]:
    """The demo bank shipped with the package (`prompts/demo_bank.json`): our own requests with their plans."""
    source = resources.files("hugginggpt.prompts").joinpath("demo_bank.json")
    return json.loads(source.read_text(encoding="utf-8"))


def fit_demo(demo: Demo, table: TaskTable, matcher: TypeMatcher | None = None) -> Demo | None:
    """`demo` as it must look for `table`: a task type the table lacks is renamed to the table's type doing the same
    job when `matcher` finds one, and parameters the table's task types lack are dropped; None when a task type is
    still missing or the demo is not a valid plan for the table."""
    tasks = []
    for task in demo["tasks"]:
        name = task["task"] if matcher is None else matcher.match(task["task"])
        task_type = table.get(name) if name is not None else None
        if task_type is None:
            return None
        args = {k: v for k, v in task["args"].items() if k in task_type.arg_keys or arg_modality(k) is not None}
        tasks.append({**task, "task": task_type.name, "args": args})
    try:
        validate_plan({"tasks": tasks}, table)
    except PlanError:
        return None
    return {**demo, "tasks": tasks}


def fit_demos(demos: Sequence[Demo], table: TaskTable, matcher: TypeMatcher | None = None) -> list[Demo]:
    """The demos usable with `table`, each fitted to it (see `fit_demo`)."""
    return [fitted for demo in demos if (fitted := fit_demo(demo, table, matcher)) is not None]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class DemoBank:
    """Demonstrations to show the planner, most similar to the request last (nearest the request in the prompt).

    Similarity is the cosine of sentence embeddings when an `embedder` is given, else of TF-IDF word vectors.
    """

    def __init__(self, demos: Sequence[Demo], embedder: Embedder | None = None) -> None:
        self.demos = list(demos)
        self.embedder = embedder
        self._vectors: Any = None
        documents = [Counter(_words(d["request"])) for d in self.demos]
        frequency = Counter(word for doc in documents for word in doc)
        count = len(documents)
        self._idf = {word: math.log((1 + count) / (1 + n)) + 1 for word, n in frequency.items()}
        self._tfidf = [self._weigh(doc) for doc in documents]

    def fit(self, table: TaskTable, matcher: TypeMatcher | None = None) -> DemoBank:
        """The demos usable with `table` (see `fit_demo`), sharing this bank's embedder."""
        return DemoBank(fit_demos(self.demos, table, matcher), self.embedder)

    def _weigh(self, counts: Counter[str]) -> dict[str, float]:
        vector = {w: n * self._idf.get(w, 0.0) for w, n in counts.items()}
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        return {w: v / norm for w, v in vector.items()}

    def similarities(self, request: str) -> list[float]:
        """Cosine similarity of `request` to each demo's request."""
        if not self.demos:
            return []
        if self.embedder is not None:
            if self._vectors is None:
                self._vectors = self.embedder.embed([d["request"] for d in self.demos])
            query = self.embedder.embed([request])[0]
            return [float(sum(a * b for a, b in zip(row, query, strict=True))) for row in self._vectors]
        query = self._weigh(Counter(_words(request)))
        return [sum(weight * doc.get(w, 0.0) for w, weight in query.items()) for doc in self._tfidf]

    def select(self, request: str, k: int) -> list[Demo]:
        """The `k` demos most similar to `request`, least similar first."""
        scores = self.similarities(request)
        best = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        return [self.demos[i] for i in reversed(best)]
