"""Experts hosted by `hugginggpt serve-models` processes, used over HTTP: inputs uploaded, artifacts downloaded.

Each server lists what it hosts at `GET /models`; a call is `POST /models/{model_id}` (multipart: `task`, `args`
as JSON, one file per media argument) and each artifact in the reply is fetched from the server into the request's
workspace and checked against its sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import ExpertError
from ..types import MEDIA, MODALITIES, Artifact, ModelCard, arg_modality
from .protocol import ExpertContext, Outputs

_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class ServerBackend:
    """Runs catalogue models on one or more model servers (the first server that hosts a model gets its calls).

    What each server hosts is asked at `GET /models` and trusted for `status_ttl` seconds; a server that does
    not answer counts as hosting nothing until then.
    """

    name = "server"
    local = True

    def __init__(
        self,
        urls: list[str],
        *,
        timeout: float = 300.0,
        status_ttl: float = 30.0,
        max_bytes: int = 200_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = timeout
        self.status_ttl = status_ttl
        self.max_bytes = max_bytes
        self._clock = clock
        self._hosted: dict[tuple[str, str], tuple[str, ModelCard]] = {}
        self._problems: dict[str, str] = {}
        self._asked_at = -float("inf")
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> ServerBackend:
        return cls(settings.model_servers, timeout=settings.model_server_timeout)

    def hosted(self) -> dict[tuple[str, str], tuple[str, ModelCard]]:
        """(task, model id) -> (server URL, card), from every server's `GET /models`, cached for `status_ttl` s."""
        with self._lock:
            if self._clock() - self._asked_at >= self.status_ttl:
                self._hosted, self._problems = self._ask()
                self._asked_at = self._clock()
            return self._hosted

    def cards(self) -> list[ModelCard]:
        return [card for _, card in self.hosted().values()]

    def why_not(self, card: ModelCard) -> str | None:
        if not self.urls:
            return "no model servers are configured (HUGGINGGPT_MODEL_SERVERS)"
        if (card.task, card.id) in self.hosted():
            return None
        down = "; ".join(self._problems.values())
        return f"no model server hosts {card.id} for {card.task}" + (f" ({down})" if down else "")

    def available(self, card: ModelCard) -> bool:
        return self.why_not(card) is None

    def expert(self, card: ModelCard) -> ServerExpert:
        return ServerExpert(card, self)

    def url_for(self, card: ModelCard) -> str:
        hosted = self.hosted().get((card.task, card.id))
        if hosted is None:
            raise ExpertError(self.why_not(card) or f"no model server hosts {card.id}")
        return hosted[0]

    async def call(self, card: ModelCard, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        """Upload the media arguments, run the model on its server, and download the artifacts it made."""
        url = self.url_for(card)
        plain = {k: v for k, v in args.items() if arg_modality(k) not in MEDIA}
        media = {k: Path(v) for k, v in args.items() if k not in plain}
        try:
            async with httpx.AsyncClient(base_url=url, timeout=self.timeout, verify=self._tls_context()) as client:
                handles = {k: path.open("rb") for k, path in media.items()}
                try:
                    files = {k: (path.name, handles[k]) for k, path in media.items()}
                    data = {"task": card.task, "args": json.dumps(plain)}
                    response = await client.post(f"/models/{quote(card.id, safe='/')}", data=data, files=files or None)
                finally:
                    for handle in handles.values():
                        handle.close()
                if response.status_code != 200:
                    raise ExpertError(f"model server {url} failed on {card.id}: {_detail(response)}")
                body = response.json()
                return {key: await self._output(client, value, ctx) for key, value in body["outputs"].items()}
        except httpx.TimeoutException:
            raise ExpertError(f"model server {url} gave no answer for {card.id} within {self.timeout:g} s") from None
        except httpx.ConnectError as exc:
            raise ExpertError(f"cannot reach model server {url}: {exc}") from None
        except httpx.TransportError as exc:  # connected, then the server went away (killed, restarted, crashed)
            raise ExpertError(f"model server {url} stopped answering during the call to {card.id}: {exc}") from None
        except httpx.HTTPError as exc:
            raise ExpertError(f"model server {url} failed on {card.id}: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ExpertError(f"model server {url} sent a reply that cannot be read: {exc}") from None

    async def _output(self, client: httpx.AsyncClient, value: Any, ctx: ExpertContext) -> Any:
        if not (isinstance(value, dict) and isinstance(value.get("artifact"), dict)):
            return value
        meta = value["artifact"]
        modality = meta["modality"]
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}")
        suffix = meta.get("suffix") or ".bin"
        if not _SUFFIX.match(suffix):
            raise ValueError(f"unsafe file suffix {suffix!r}")
        path = ctx.output_path(suffix)
        digest = hashlib.sha256()
        size = 0
        try:
            async with client.stream("GET", meta["url"]) as response:
                if response.status_code != 200:
                    raise ExpertError(f"could not download {meta['url']}: HTTP {response.status_code}")
                with path.open("wb") as handle:
                    async for block in response.aiter_bytes():
                        size += len(block)
                        if size > self.max_bytes:
                            raise ExpertError(f"artifact {meta['url']} is over {self.max_bytes} bytes")
                        digest.update(block)
                        handle.write(block)
            if digest.hexdigest() != meta["sha256"]:
                raise ExpertError(f"artifact {meta['url']} arrived damaged (sha256 mismatch)")
        except BaseException:  # a part of a file (a dropped connection, a full disk) is never left as an output
            path.unlink(missing_ok=True)
            raise
        artifact: Artifact = ctx.artifact(path, modality, meta.get("media_type"))
        return artifact

    def _tls_context(self) -> ssl.SSLContext:
        """One TLS context for every call (building one per client costs ~30 ms of certificate loading)."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _ask(self) -> tuple[dict[tuple[str, str], tuple[str, ModelCard]], dict[str, str]]:
        hosted: dict[tuple[str, str], tuple[str, ModelCard]] = {}
        problems: dict[str, str] = {}
        for url in self.urls:
            try:
                response = httpx.get(f"{url}/models", timeout=5.0)
                response.raise_for_status()
                for row in response.json():
                    card = ModelCard.model_validate(row)
                    if card.available:
                        key = (card.task, card.id)
                        served = card.model_copy(update={"backend": "server", "availability": {}})
                        hosted.setdefault(key, (url, served))
            except (httpx.HTTPError, ValueError) as exc:
                problems[url] = f"{url} did not answer: {exc}"
        return hosted, problems


class ServerExpert:
    """One model hosted by a model server."""

    def __init__(self, card: ModelCard, backend: ServerBackend) -> None:
        self.card = card.model_copy(update={"backend": "server", "available": True})
        self.backend = backend

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        return await self.backend.call(self.card, args, ctx)


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return f"HTTP {response.status_code}" + (f": {str(detail)[:300]}" if detail else "")
