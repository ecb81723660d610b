"""Joining Ray (a cluster at an address, or a local instance for this process) and saying what is up on it."""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

import ray
from pydantic import BaseModel

from ..errors import RayUnavailable

NAMESPACE = "hugginggpt"  # the expert actors' names live here, so `hugginggpt models --executor ray` finds them
ACTOR_PREFIX = "expert:"
_CONNECT_TIMEOUT_S = 5.0


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address`, or start a local Ray instance for this process when there is none. A
    process already connected (the tests' session, a second pipeline) stays as it is. RayUnavailable, one line
    naming the address, when the cluster cannot be reached."""
    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
        options: dict[str, object] = {"address": address}
    else:  # a local instance: no dashboard, nothing to reach beyond this machine
        options = {"include_dashboard": False}
    try:
        ray.init(**options, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise RayUnavailable(f"cannot start the Ray executor on {where}: {first_line(exc)}") from None


def _check_reachable(address: str) -> None:
    """Fail at once when nothing listens at `address` (ray.init would retry for minutes); `auto` is Ray's to find."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise RayUnavailable(f"HUGGINGGPT_RAY_ADDRESS {address!r} is not host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RayUnavailable(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start it (`ray start --head`) or "
            "unset HUGGINGGPT_RAY_ADDRESS for a local instance"
        ) from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


class NodeStatus(BaseModel):
    """One node of the cluster and what it offers."""

    node_id: str
    address: str
    alive: bool
    cpus: float = 0
    gpus: float = 0
    memory_mib: float = 0


class ActorStatus(BaseModel):
    """One expert actor as it reports itself: its model, where it runs, its memory and its jobs."""

    name: str
    task: str
    model_id: str
    node_id: str
    node_address: str
    pid: int
    rss_mib: float
    loaded: bool | None = None  # None: the expert does not say
    jobs: int = 0
    running: int = 0
    idle_s: float | None = None


class ClusterStatus(BaseModel):
    """The nodes of the cluster this process is connected to, and the expert actors up on it (of any process)."""

    nodes: list[NodeStatus]
    actors: list[ActorStatus]
    unanswered: list[str] = []  # actors that did not report in time (starting, or busy loading)


def cluster_status(timeout: float = 10.0) -> ClusterStatus:
    """What is up now: the nodes, and every expert actor in the namespace, each asked for its status."""
    nodes = [
        NodeStatus(
            node_id=node["NodeID"],
            address=node.get("NodeManagerAddress", ""),
            alive=bool(node.get("Alive")),
            cpus=node.get("Resources", {}).get("CPU", 0),
            gpus=node.get("Resources", {}).get("GPU", 0),
            memory_mib=round(node.get("Resources", {}).get("memory", 0) / 2**20),
        )
        for node in ray.nodes()
    ]
    names = sorted(name for name in ray.util.list_named_actors() if name.startswith(ACTOR_PREFIX))
    refs = {}
    for name in names:
        try:
            refs[name] = ray.get_actor(name).status.remote()
        except ValueError:  # released meanwhile
            continue
    ready = set(ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)[0]) if refs else set()
    actors, unanswered = [], []
    for name, ref in refs.items():
        if ref not in ready:
            unanswered.append(name)
            continue
        try:
            actors.append(ActorStatus.model_validate(ray.get(ref)))
        except ray.exceptions.RayError:  # died meanwhile
            unanswered.append(name)
    return ClusterStatus(nodes=nodes, actors=actors, unanswered=unanswered)
