"""Task types matched across tables: which task type of another table does the same job as one of ours.

A demo written for our task types teaches nothing to a planner whose table names its tools differently (a
downloader/editor tool set, a Hub refresh with new pipeline tags). `TypeMatcher` finds, for a task type, the one
task type of the target table with the same input and output modalities whose description says the most similar
thing (cosine of sentence embeddings), when that similarity is high enough; demos are then rewritten with the
matched names (`demos.retarget_demo`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from ..tasks import TaskTable, TaskType
from ..types import MEDIA, arg_modality

# Cosine of MiniLM embeddings of two "name: description" texts above which they are taken to name the same job.
MIN_SIMILARITY = 0.5


class Embedder(Protocol):
    """Anything that maps texts to unit vectors, one row per text (e.g. `embedding.SentenceEmbedder`)."""

    def embed(self, texts: Sequence[str]) -> Any: ...


def signature(task_type: TaskType) -> tuple[tuple[str, ...], str]:
    """What a task type takes and gives: the modalities of its required inputs (sorted) and its first output."""
    inputs = sorted(arg_modality(key) or "text" for key in task_type.inputs)
    return tuple(inputs), task_type.outputs[0] if task_type.outputs else "text"


def describe(task_type: TaskType) -> str:
    return f"{task_type.name.replace('-', ' ')}: {task_type.description}"


class TypeMatcher:
    """Matches task types of `source` (e.g. ours) onto `target`: the same name, else the target type with the same
    `signature` and the most similar description, at least `min_similarity`, else none."""

    def __init__(
        self,
        source: Iterable[TaskType],
        target: TaskTable,
        embedder: Embedder,
        *,
        min_similarity: float = MIN_SIMILARITY,
    ) -> None:
        self.target = target
        self.min_similarity = min_similarity
        self._source = {t.name: t for t in source}
        self._embedder = embedder
        self._matches: dict[str, str | None] | None = None

    def match(self, name: str) -> str | None:
        """The target task type doing what `name` does, or None."""
        if self.target.get(name) is not None:
            return name
        if self._matches is None:
            self._matches = self._match_all()
        return self._matches.get(name)

    def _match_all(self) -> dict[str, str | None]:
        missing = [t for name, t in self._source.items() if name not in self.target]
        candidates = list(self.target)
        if not missing or not candidates:
            return {}
        vectors = self._embedder.embed([describe(t) for t in [*missing, *candidates]])
        ours, theirs = vectors[: len(missing)], vectors[len(missing) :]
        matches: dict[str, str | None] = {}
        for i, task_type in enumerate(missing):
            best, best_score = None, self.min_similarity
            for j, candidate in enumerate(candidates):
                if signature(candidate) != signature(task_type):
                    continue
                score = float(sum(a * b for a, b in zip(ours[i], theirs[j], strict=True)))
                if score >= best_score:
                    best, best_score = candidate.name, score
            matches[task_type.name] = best
        return matches

    def editors(self) -> frozenset[str]:
        """The target types whose output is their input changed (`TaskType.edits`): those flagged, those named as a
        flagged source type, and each other type that makes a kind it reads whose description is nearest to a
        flagged one's among the source types that make a kind they read (a colorizer is nearer image-to-image than
        depth-estimation)."""
        flagged = {name for name, t in self._source.items() if t.edits}
        found = {t.name for t in self.target if t.edits or t.name in flagged}
        unknown = [t for t in self.target if t.name not in self._source and not t.edits and _remakes(t)]
        known = [t for t in self._source.values() if _remakes(t)]
        if not unknown or not flagged & {t.name for t in known}:
            return frozenset(found)
        vectors = self._embedder.embed([describe(t) for t in [*unknown, *known]])
        theirs, ours = vectors[: len(unknown)], vectors[len(unknown) :]
        for i, task_type in enumerate(unknown):
            scores = [float(sum(a * b for a, b in zip(theirs[i], v, strict=True))) for v in ours]
            if known[max(range(len(known)), key=scores.__getitem__)].edits:
                found.add(task_type.name)
        return frozenset(found)


def _remakes(task_type: TaskType) -> bool:
    """Whether a task type makes a media kind it reads (an image from an image)."""
    reads = {arg_modality(key) for key in task_type.inputs}
    return bool(reads & {arg_modality(o) for o in task_type.outputs} & set(MEDIA))
