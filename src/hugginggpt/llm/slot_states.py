"""Saving and restoring a fixed prompt prefix's KV state through llama.cpp's slot actions on its loopback listener."""

from __future__ import annotations

from typing import Any

import httpx

from .prompt_cache import StateRecord


class SlotError(Exception):
    """llama.cpp refused to render, process, save or restore a prompt prefix."""


def _post(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise SlotError(f"the loopback listener did not answer {url}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code != 200 or not isinstance(data, dict):
        message = error_message(data.get("error")) if isinstance(data, dict) and data.get("error") else response.text
        raise SlotError(f"{url}: HTTP {response.status_code}: {message[:200]}")
    return data


def prefix_prompt(client: httpx.Client, messages: list[dict[str, str]]) -> str:
    """The text the chat template renders for `messages` that every longer conversation starting with them shares:
    the common start of two renderings that differ only in a following user turn."""
    prompts = [
        str(_post(client, "/apply-template", {"messages": [*messages, {"role": "user", "content": x}]}).get("prompt"))
        for x in ("a", "b")
    ]
    first, second = prompts
    shared = next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), min(map(len, prompts)))
    return first[:shared]


def process_prefix(server: Any, prompt: str, slot: int = 0) -> int:
    """Process `prompt` into `slot`'s KV cache (nothing worth generating); the number of prompt tokens."""
    replies: list[dict[str, Any]] = []
    request = {"prompt": prompt, "n_predict": 0, "temperature": 0.0, "cache_prompt": True, "id_slot": slot}
    try:
        server.handle_completions(request, replies.append)
    except (ValueError, RuntimeError) as exc:
        raise SlotError(f"llama.cpp could not process the prompt prefix: {exc}") from None
    for reply in replies:
        if isinstance(reply, dict) and reply.get("error"):
            raise SlotError(f"llama.cpp could not process the prompt prefix: {error_message(reply['error'])}")
    usage = next((r.get("usage") for r in replies if isinstance(r, dict) and r.get("usage")), None) or {}
    return int(usage.get("prompt_tokens") or 0)


def _slot_ids(client: httpx.Client) -> list[int]:
    try:
        response = client.get("/slots")
        slots = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        slots = None
    if not isinstance(slots, list):
        return [0]
    return [int(slot["id"]) for slot in slots if isinstance(slot, dict) and isinstance(slot.get("id"), int)] or [0]


def save_slot(client: httpx.Client, filename: str, slot: int = 0) -> int:
    """Have llama.cpp save `slot`'s KV state as `filename` in its slot folder; the number of tokens saved."""
    reply = _post(client, f"/slots/{slot}?action=save", {"filename": filename})
    tokens = int(reply.get("n_saved") or 0)
    if tokens <= 0:
        raise SlotError("llama.cpp saved an empty slot")
    return tokens


def restore_slots(client: httpx.Client, filename: str, record: StateRecord, skip: tuple[int, ...] = ()) -> None:
    """Load the checked state `filename` into every slot (but `skip`), so any slot a request lands on starts with
    the prefix."""
    for slot in _slot_ids(client):
        if slot not in skip:
            restore_slot(client, filename, record, slot)


def restore_slot(client: httpx.Client, filename: str, record: StateRecord, slot: int) -> None:
    """Load the checked state `filename` into `slot` (which no call is using)."""
    reply = _post(client, f"/slots/{slot}?action=restore", {"filename": filename})
    if int(reply.get("n_restored") or 0) != record.tokens:
        raise SlotError(f"slot {slot} restored {reply.get('n_restored')} tokens, not {record.tokens}")


def error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = str(error.get("message") or error)
        if error.get("type") == "exceed_context_size_error":
            message += "; raise HUGGINGGPT_LLM_CONTEXT or shorten the request"
        return message
    return str(error)
