"""The model catalogue: cards from registered experts, a JSONL snapshot of Hub metadata, or a fresh Hub listing."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from .config import cache_dir
from .errors import CatalogError
from .tasks import normalize_task_name
from .types import ModelCard

DEFAULT_SNAPSHOT_NAME = "models.jsonl"


def default_snapshot_path() -> Path:
    return cache_dir() / "catalog" / DEFAULT_SNAPSHOT_NAME


def _description(row: dict) -> str:
    text = " ".join(str(row.get("description") or "").split())
    return text[:300]


def card_from_row(row: dict) -> ModelCard:
    """A card from one snapshot row (the JARVIS `p0_models.jsonl` format, or what `refresh_snapshot` writes)."""
    task = row.get("task") or row.get("pipeline_tag")
    if not row.get("id") or not task:
        raise CatalogError(f"snapshot row needs 'id' and 'task' or 'pipeline_tag': {str(row)[:100]}")
    meta = row.get("meta") or {}
    tags = row.get("tags") or meta.get("tags") or []
    license_ = row.get("license") or meta.get("license")
    return ModelCard(
        id=row["id"],
        task=normalize_task_name(task),
        downloads=int(row.get("downloads") or 0),
        likes=int(row.get("likes") or 0),
        tags=[str(t) for t in tags][:20] if isinstance(tags, list) else [],
        description=_description(row),
        backend="inference",
        available=False,
        license=license_ if isinstance(license_, str) else None,
    )


def load_snapshot(path: Path) -> list[ModelCard]:
    """Cards from a JSONL snapshot. Blank lines are skipped; a malformed line is an error naming its number."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"catalogue snapshot {path} not found; run `hugginggpt catalog refresh` to make one")
    cards = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                cards.append(card_from_row(json.loads(line)))
            except (json.JSONDecodeError, ValidationError, CatalogError, ValueError) as exc:
                raise CatalogError(f"{path}:{number}: {exc}") from None
    return cards


def refresh_snapshot(
    path: Path,
    tasks: Iterable[str],
    *,
    per_task: int = 50,
    endpoint: str | None = None,
    token: str | None = None,
) -> int:
    """List the most downloaded Hub models for each task type and write them as a snapshot. Returns the row count.

    `endpoint` defaults to `HF_ENDPOINT` (as huggingface_hub reads it). The file is replaced atomically.
    """
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    rows = []
    for task in tasks:
        try:
            models = api.list_models(pipeline_tag=task, sort="downloads", limit=per_task, cardData=True)
            for info in models:
                card = info.card_data.to_dict() if getattr(info, "card_data", None) else {}
                rows.append(
                    {
                        "id": info.id,
                        "task": task,
                        "pipeline_tag": info.pipeline_tag or task,
                        "downloads": info.downloads or 0,
                        "likes": info.likes or 0,
                        "tags": list(info.tags or [])[:20],
                        "license": card.get("license") if isinstance(card.get("license"), str) else None,
                        "description": "",
                    }
                )
        except Exception as exc:  # huggingface_hub raises several HTTP and connection error types
            raise CatalogError(f"could not list {task} models from the Hub: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".snapshot-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    os.replace(tmp, path)
    return len(rows)


class ModelCatalog:
    """Cards by task type. Candidates for a task are its available cards, most downloaded first."""

    def __init__(self, cards: Iterable[ModelCard] = ()) -> None:
        self._cards: dict[tuple[str, str], ModelCard] = {}
        self.add(cards)

    def add(self, cards: Iterable[ModelCard]) -> None:
        """Add cards; a card for a (task, id) already present replaces it only if the new one is available."""
        for card in cards:
            key = (card.task, card.id)
            old = self._cards.get(key)
            if old is None or card.available or not old.available:
                self._cards[key] = card

    def cards(self, task: str | None = None) -> list[ModelCard]:
        return [c for c in self._cards.values() if task is None or c.task == task]

    def get(self, task: str, model_id: str) -> ModelCard | None:
        return self._cards.get((task, model_id))

    def candidates(self, task: str, k: int | None = 5, args: dict[str, str] | None = None) -> list[ModelCard]:
        """Available cards for `task` whose required parameters `args` gives, ranked: models that use a given
        parameter first, then by downloads, likes and priority."""
        given = set(args or {})
        ranked = sorted(
            (c for c in self._cards.values() if c.task == task and c.available and set(c.requires) <= given),
            key=lambda c: (-len(c.requires), -c.downloads, -c.likes, -c.priority, c.id),
        )
        return ranked[:k]

    def available_tasks(self) -> set[str]:
        return {c.task for c in self._cards.values() if c.available}

    def __len__(self) -> int:
        return len(self._cards)
