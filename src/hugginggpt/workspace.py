"""A request's files: input paths confined to allowed folders, URL fetching with limits and an SSRF guard, input
images bounded in size, and output artifacts."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import uuid
import warnings
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
# Pixels an input image may have: Pillow's own decompression-bomb threshold (it only warns up to twice that). A
# larger image is refused before any expert decodes it (a 30,000 x 30,000 PNG is a few hundred KB on disk and 2.7 GB
# as RGB).
MAX_IMAGE_PIXELS = 89_478_485
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ico", ".ppm", ".tga"})


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a URL argument may reach this address: only the public internet, unless private URLs are allowed."""
    return address.is_global and not address.is_multicast  # 224.0.0.0/4 counts as "global" to ipaddress


async def _resolve_public(host: str, port: int, allow_private: bool) -> str:
    """The one address a request to `host` goes to: resolved once; every address the name has must be public
    (unless `allow_private`), so a name that also points inside cannot be used either."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise WorkspaceError(f"cannot resolve {host}: {exc}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses:
        raise WorkspaceError(f"cannot resolve {host}: no addresses")
    if not allow_private:
        for address in addresses:
            if not _public(address):
                raise WorkspaceError(
                    f"{host} points to a private address ({address}); set HUGGINGGPT_ALLOW_PRIVATE_URLS=1 to allow it"
                )
    return str(addresses[0])


class PinnedTransport(httpx.AsyncBaseTransport):
    """Connects each request to the address that was checked for its host (no second DNS lookup, so a name that
    answers a public address to the check and a private one to the connection, DNS rebinding, gets nowhere). The
    request keeps its Host header, and TLS its SNI name and certificate check, for the name in the URL."""

    def __init__(self, *, allow_private: bool = False, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.allow_private = allow_private
        # no kept-alive connections: a connection is keyed by the IP, and a redirect to another name at the same IP
        # must get its own TLS handshake for that name
        self._inner = inner or httpx.AsyncHTTPTransport(retries=0, limits=httpx.Limits(max_keepalive_connections=0))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        address = await _resolve_public(host, port, self.allow_private)
        if "host" not in request.headers:
            request.headers["Host"] = request.url.netloc.decode("ascii")
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        request.url = request.url.copy_with(host=address)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


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
        shown = repr(name[:200] + "…") if len(name) > 200 else repr(name)
        allowed = ", ".join(str(r) for r in self.input_roots)
        if "\0" in name:
            raise WorkspaceError(f"{shown} is not a file name (it holds a NUL character)")
        try:
            raw = Path(name).expanduser()  # `~/photos/a.jpg` still has to be inside an input folder
            candidates = [raw.resolve()] if raw.is_absolute() else [(root / raw).resolve() for root in roots]
            inside = [c for c in candidates if any(c.is_relative_to(root) for root in roots)]
            if not inside:
                raise WorkspaceError(f"{shown} is outside the allowed input folders ({allowed})")
            found = next((c for c in inside if c.is_file()), None)
        except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
            reason = getattr(exc, "strerror", None) or exc
            raise WorkspaceError(f"cannot read the input {shown}: {reason}") from None
        if found is None:
            raise WorkspaceError(f"input file {shown} not found in {allowed}")
        check_image_size(found)
        return found

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
        """Download a URL argument into the workspace, refusing private addresses (each hop of a redirect is
        checked, and connected to at the address checked) and oversized bodies."""
        target = self.root / "inputs"
        try:
            return await self._fetch(url, target)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # a URL httpx cannot use, a failed connection
            raise WorkspaceError(f"fetching {url[:200]} failed: {exc or type(exc).__name__}") from None

    async def _fetch(self, url: str, target: Path) -> Path:
        transport = PinnedTransport(allow_private=self.allow_private_urls)
        async with httpx.AsyncClient(transport=transport, follow_redirects=False, timeout=30.0) as client:
            for _ in range(4):
                _check_scheme(url)
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
        check_image_size(path)
        return path


def _check_scheme(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise WorkspaceError(f"only http(s) URLs can be fetched, got {url[:200]!r}")


def check_image_size(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an image file whose header declares more than `max_pixels` pixels (read without decoding it).
    Files Pillow does not recognise are left to the expert that reads them."""
    if path.suffix.lower() not in _IMAGE_SUFFIXES:
        return
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked here
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError:  # over twice Pillow's own limit: it will not even open it
        raise WorkspaceError(f"{path.name} has more pixels than an input image may have ({max_pixels:,})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return
    if width * height > max_pixels:
        raise WorkspaceError(
            f"{path.name} is {width:,} x {height:,} pixels; an input image may have at most {max_pixels:,} pixels"
        )
