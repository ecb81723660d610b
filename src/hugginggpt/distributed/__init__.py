"""The Ray executor: each expert model in Ray actors across a cluster, artifacts through the object store.

`cluster` joins (or starts) Ray and says what is up, `actors` holds the actor of one model and the pools of them,
`parcels` moves files through the object store, `executor` is the `Executor` the scheduler hands jobs to. Every
module here needs the `ray` extra.
"""

from .actors import ActorPools, ExpertHost
from .cluster import NAMESPACE, ActorStatus, ClusterStatus, NodeStatus, cluster_status, connect
from .executor import RayExecutor, actor_experts, runs_in_controller

__all__ = [
    "NAMESPACE",
    "ActorPools",
    "ActorStatus",
    "ClusterStatus",
    "ExpertHost",
    "NodeStatus",
    "RayExecutor",
    "actor_experts",
    "cluster_status",
    "connect",
    "runs_in_controller",
]
