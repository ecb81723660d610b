"""API keys (Bearer), who a request acts for, the bind-address rule, and per-key limits on concurrent runs."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable

from pydantic import BaseModel, SecretStr

from ..errors import HuggingGPTError

LOCAL_KEY_ID = "local"


class BindRefused(HuggingGPTError):
    """The server would listen beyond this machine without any API key."""


class Principal(BaseModel):
    """Who a request acts for. Conversations, runs and files belong to a key id; a raw key is never stored."""

    key_id: str


def key_id(key: str) -> str:
    """A stable, non-secret name for a key: `key-` and the first 12 hex digits of its SHA-256."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def parse_keys(value: SecretStr | str | None) -> list[str]:
    """Keys from `HUGGINGGPT_API_KEYS`: separated by commas or whitespace."""
    if value is None:
        return []
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return [k for k in re.split(r"[\s,]+", text) if k]


class ApiKeys:
    """The configured keys. With none, every request acts for the single local principal."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._digests = {hashlib.sha256(k.encode()).digest(): key_id(k) for k in keys}

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def identify(self, token: str) -> str | None:
        """The key id of `token`, or None. Compares digests in constant time against every key."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for known, kid in self._digests.items():
            if hmac.compare_digest(known, digest):
                found = kid
        return found


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: ApiKeys, *, insecure: bool = False) -> None:
    """Refuse to listen beyond loopback with no API key configured, unless `insecure` says the user means it."""
    if keys.required or insecure or is_loopback(host):
        return
    raise BindRefused(
        f"refusing to listen on {host} without API keys: anyone who can reach it could use it. "
        "Set HUGGINGGPT_API_KEYS (comma-separated keys clients send as 'Authorization: Bearer <key>'), "
        "listen on 127.0.0.1, or pass --insecure if this network is trusted."
    )


class KeyLimiter:
    """Counts each key's runs in progress and refuses one over `max_runs` (the caller answers 429)."""

    def __init__(self, max_runs: int) -> None:
        self.max_runs = max_runs
        self._running: dict[str, int] = {}

    def try_acquire(self, kid: str) -> bool:
        count = self._running.get(kid, 0)
        if count >= self.max_runs:
            return False
        self._running[kid] = count + 1
        return True

    def release(self, kid: str) -> None:
        count = self._running.get(kid, 0) - 1
        if count > 0:
            self._running[kid] = count
        else:
            self._running.pop(kid, None)

    def running(self, kid: str) -> int:
        return self._running.get(kid, 0)
