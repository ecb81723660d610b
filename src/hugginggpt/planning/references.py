"""Placeholders and file names in plan arguments: `<resource>-N`, file names and URLs, and what kind of file a name
is. Execution and evaluation read arguments with these too."""

from __future__ import annotations

import re

from ..errors import PlanError

# `<resource>-3`, JARVIS's `<GENERATED>-3`, and loose variants like `<resource-3>` (TaskBench's `<node-3>`: eval).
_PLACEHOLDER = re.compile(r"<\s*(?:resource|generated)\s*>?\s*-\s*(\d+)>?", re.IGNORECASE)
_BARE_PLACEHOLDER = re.compile(r"<\s*(?:resource|generated)\s*>(?!\s*-\s*\d)", re.IGNORECASE)
_RESOURCE = re.compile(r"<resource>-(\d+)")
# A URL's scheme (`https://`) and a file extension (`.jpg`), as the file and URL patterns below match them.
_SCHEME = r"[a-z][a-z0-9+.-]*://"
_EXTENSION = r"\.[A-Za-z0-9]{2,5}"
_FILE_OR_URL = re.compile(rf"^(?:{_SCHEME}\S+|[^\n]*{_EXTENSION}|<resource>-\d+)$", re.IGNORECASE)
NAMED_FILE = re.compile(rf"(?:{_SCHEME})?[^\s'\"<>()\[\],;]+{_EXTENSION}\b", re.IGNORECASE)
_SEPARATORS = re.compile(r"\s*(?:,|;|\band\b|\n)\s*")
BRACKETED_FILE = re.compile(rf"<\s*((?:{_SCHEME})?[^<>\s]+{_EXTENSION})\s*>", re.IGNORECASE)
_URL = re.compile(rf"^{_SCHEME}\S+$", re.IGNORECASE)
_URL_IN_TEXT = re.compile(rf"{_SCHEME}[^\s'\"<>()\[\],;]+", re.IGNORECASE)
# A placeholder's task number has at most this many digits (plans have a handful of tasks; int() refuses 4300+).
_MAX_NUMBER_DIGITS = 6
# What a constrained decoder may write in a media argument: `<resource>-N`, or a file name or URL without `<>`.
MEDIA_PATTERN = r'^(<resource>-[0-9]{1,2}|[^<>"\\\n\r\t]{1,200})$'

_FILE_EXTENSIONS = {
    "image": {"jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "svg", "ico"},
    "audio": {"wav", "mp3", "flac", "ogg", "m4a", "aac", "wma", "aiff", "opus"},
    "video": {"mp4", "avi", "mov", "mkv", "webm", "flv", "wmv", "m4v", "mpg", "mpeg"},
    "text": {"txt", "md", "csv", "json", "html", "htm", "pdf", "doc", "docx", "rtf"},
}
_FILE_NAME = re.compile(rf"^(?:{_SCHEME})?[^\s'\"<>]+\.([A-Za-z0-9]{{2,5}})$", re.IGNORECASE)


def short(value: object, limit: int = 60) -> str:
    """`value` quoted for an error message, cut to `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    return repr(text[:limit] + "…") if len(text) > limit else repr(text)


def task_number(digits: str) -> int:
    """The task number a placeholder names; a PlanError when it is absurdly long."""
    if len(digits) > _MAX_NUMBER_DIGITS:
        raise PlanError(f"placeholder task number {short(digits, 12)} is too long; write <resource>-N of a task")
    return int(digits)


def normalize_placeholders(value: str) -> str:
    """Rewrite every placeholder form to `<resource>-N` and unwrap file names in angle brackets; reject a
    placeholder without a number."""
    if _BARE_PLACEHOLDER.search(value):
        raise PlanError(f"placeholder without a task number in {short(value)}; write <resource>-N")
    value = BRACKETED_FILE.sub(lambda m: m.group(1), value)  # `<photo.jpg>` means photo.jpg
    return _PLACEHOLDER.sub(lambda m: f"<resource>-{task_number(m.group(1))}", value)


def named_files(text: str) -> dict[str, str]:
    """The files and URLs `text` names, each with its kind (image, audio, video, text); names of no known kind are
    left out."""
    return {m.group(0): kind for m in NAMED_FILE.finditer(text) if (kind := file_kind(m.group(0))) is not None}


def named_media(text: str) -> dict[str, str | None]:
    """The image, audio and video files and the URLs `text` names, each with its kind (None: a URL with no
    extension that says, such as a page or an API's link)."""
    media: dict[str, str | None] = {}
    for match in _URL_IN_TEXT.finditer(text):
        url = match.group(0).rstrip(".!?:")
        media[url] = file_kind(url)
    media |= named_files(text)
    return {name: kind for name, kind in media.items() if kind != "text"}


def file_kind(value: str) -> str | None:
    """image, audio, video or text (a document such as notes.md) when `value` is a single file name or URL with
    such an extension, else None."""
    match = _FILE_NAME.match(value)
    if match is None:
        return None
    extension = match.group(1).lower()
    return next((kind for kind, names in _FILE_EXTENSIONS.items() if extension in names), None)


def media_kind(value: str) -> str | None:
    """image, audio or video when `value` is a single file name or URL with such an extension, else None."""
    kind = file_kind(value)
    return None if kind == "text" else kind


def references(value: str) -> list[int]:
    return [task_number(n) for n in _RESOURCE.findall(value)]


def _only_reference(value: str) -> int | None:
    """N when `value` is exactly `<resource>-N`."""
    match = _RESOURCE.fullmatch(value.strip())
    return task_number(match.group(1)) if match else None


def _split_resources(value: str) -> list[str]:
    """The resources a media argument names: one, or several separated by commas / 'and'."""
    parts = [p.strip().strip("'\"") for p in _SEPARATORS.split(value) if p.strip()]
    if len(parts) > 1 and all(_FILE_OR_URL.match(p) for p in parts):
        return parts
    return [value.strip().strip("'\"")]
