"""Find JSON in LLM text (code fences, prose around it) and pick array elements out of a stream as they close."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


class JSONNotFound(ValueError):
    """The text holds no parseable JSON value."""


def extract_json(text: str) -> Any:
    """The first JSON object or array in `text`, tolerating code fences and prose before or after it."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for match in re.finditer(r"[\[{]", candidate):
            try:
                value, _ = decoder.raw_decode(candidate, match.start())
            except json.JSONDecodeError:
                continue
            if isinstance(value, (list, dict)):
                return value
    preview = stripped[:120] + ("…" if len(stripped) > 120 else "")
    raise JSONNotFound(f"no JSON found in the reply: {preview!r}")


class ArrayElementStream:
    """Feed text chunks; get back each object of the first JSON array as soon as its closing brace arrives."""

    def __init__(self) -> None:
        self._depth = 0
        self._array_depth = 0  # depth of the first array once it opens; 0 before
        self._finished = False
        self._in_string = False
        self._escaped = False
        self._element: list[str] | None = None

    def close(self) -> list[dict[str, Any]]:
        """The end of the text: an object closes only with its brace, so none is left to give."""
        return []

    def feed(self, chunk: str) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        for char in chunk:
            if self._element is not None:
                self._element.append(char)
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
                continue
            if char == '"':
                self._in_string = True
            elif char in "[{":
                self._depth += 1
                if char == "[" and not self._array_depth and not self._finished:
                    self._array_depth = self._depth
                elif char == "{" and self._array_depth and self._depth == self._array_depth + 1:
                    self._element = ["{"]
            elif char in "]}":
                if char == "}" and self._element is not None and self._depth == self._array_depth + 1:
                    try:
                        value = json.loads("".join(self._element))
                    except json.JSONDecodeError:
                        value = None
                    if isinstance(value, dict):
                        done.append(value)
                    self._element = None
                elif char == "]" and self._depth == self._array_depth:
                    self._array_depth, self._finished = 0, True  # ignore anything after the first array
                self._depth -= 1
        return done
