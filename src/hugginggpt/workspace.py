"""A request's files: input paths confined to allowed folders, URL fetching with limits, and output artifacts."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin, urlparse

import httpx

from .artifacts import LocalArtifacts, slug, suffix_for
from .artifacts import media_type_of as media_type_of  # re-exported: callers import them from here
from .artifacts import sha256_of as sha256_of
from .errors import WorkspaceError


def new_request_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def is_url(value: str) -> bool:
    return bool(re.match(r"^https?://", value.strip(), re.IGNORECASE))


READABLE_TEXT = frozenset({".txt", ".md", ".csv", ".json"})


class Workspace(LocalArtifacts):
    """Where one request reads and writes files: its local artifact store, plus its inputs.

    Inputs: a relative or absolute path must resolve (symlinks followed) inside one of `input_roots`; a URL is
    fetched into the request's folder. Outputs: every artifact goes to `output_dir/<request id>/` under a unique name.
    """

    def __init__(
        self,
        output_dir: Path,
        input_roots: list[Path] | tuple[Path, ...] = (),
        *,
        request_id: str | None = None,
        max_download_bytes: int = 50_000_000,
        allow_private_urls: bool = False,
        max_text_bytes: int = 20_000,
    ) -> None:
        self.request_id = request_id or new_request_id()
        self.output_dir = Path(output_dir)
        self.input_roots = [Path(r) for r in input_roots]
        super().__init__(self.output_dir / self.request_id, readable=self.input_roots)
        self.max_download_bytes = max_download_bytes
        self.allow_private_urls = allow_private_urls
        self.max_text_bytes = max_text_bytes

    def resolve_input(self, value: str) -> Path:
        """The file an argument names. Raises WorkspaceError when it is missing or outside the allowed folders."""
        name = value.strip().strip("'\"")
        if not name:
            raise WorkspaceError("empty file name")
        roots = [r.resolve() for r in self.input_roots]
        if not roots:
            raise WorkspaceError(f"cannot read {name!r}: this request allows no input folders")
        raw = Path(name).expanduser()
        candidates = [raw.resolve()] if raw.is_absolute() else [(root / raw).resolve() for root in roots]
        inside = [c for c in candidates if any(c.is_relative_to(root) for root in roots)]
        if not inside:
            allowed = ", ".join(str(r) for r in self.input_roots)
            raise WorkspaceError(f"{name!r} is outside the allowed input folders ({allowed})")
        for candidate in inside:
            if candidate.is_file():
                return candidate
        allowed = ", ".join(str(r) for r in self.input_roots)
        raise WorkspaceError(f"input file {name!r} not found in {allowed}")

    def has_input(self, value: str) -> bool:
        """Whether `value` names a file inside the input folders (`resolve_input` would find it)."""
        try:
            self.resolve_input(value)
        except WorkspaceError:
            return False
        return True

    def read_text(self, path: Path) -> str:
        """The content of a text document the user gave (.txt, .md, .csv, .json), at most `max_text_bytes`, UTF-8.
        Raises WorkspaceError saying what is wrong: another kind of document, too large, not UTF-8."""
        path = Path(path)
        if path.suffix.lower() not in READABLE_TEXT:
            kinds = ", ".join(sorted(READABLE_TEXT))
            raise WorkspaceError(f"{path.name} cannot be read as text: only {kinds} documents can (convert it first)")
        size = path.stat().st_size
        if size > self.max_text_bytes:
            raise WorkspaceError(
                f"{path.name} is {size:,} bytes; a text input may be at most {self.max_text_bytes:,} "
                "(HUGGINGGPT_MAX_TEXT_BYTES), so give a shorter part of it"
            )
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise WorkspaceError(f"{path.name} is not UTF-8 text (byte {exc.start} cannot be decoded)") from None
        if not text.strip():
            raise WorkspaceError(f"{path.name} is empty")
        return text

    async def fetch(self, url: str) -> Path:
        """Download a URL argument into the workspace, refusing private addresses and oversized bodies."""
        target = self.root / "inputs"
        async with httpx.AsyncClient(follow_redirects=False, timeout=30.0) as client:
            for _ in range(4):
                await self._check_url(url)
                async with client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code >= 400:
                        raise WorkspaceError(f"fetching {url} failed: HTTP {response.status_code}")
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > self.max_download_bytes:
                        raise WorkspaceError(
                            f"{url} is {declared} bytes, over the {self.max_download_bytes}-byte limit"
                        )
                    body = bytearray()
                    async for block in response.aiter_bytes():
                        body.extend(block)
                        if len(body) > self.max_download_bytes:
                            raise WorkspaceError(f"{url} is over the {self.max_download_bytes}-byte limit")
                    content_type = response.headers.get("content-type", "").split(";")[0].strip()
                    break
            else:
                raise WorkspaceError(f"{url} redirects too many times")
        name = Path(urlparse(url).path).name or "download"
        suffix = Path(name).suffix or suffix_for(content_type)
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{uuid.uuid4().hex[:6]}-{slug(Path(name).stem)}{suffix}"
        path.write_bytes(bytes(body))
        return path

    async def _check_url(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise WorkspaceError(f"only http(s) URLs can be fetched, got {url!r}")
        if self.allow_private_urls:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parsed.hostname, parsed.port or 0)
        except socket.gaierror as exc:
            raise WorkspaceError(f"cannot resolve {parsed.hostname}: {exc}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise WorkspaceError(
                    f"{url} points to a private address ({address}); set HUGGINGGPT_ALLOW_PRIVATE_URLS=1 to allow it"
                )
