"""Real multi-server Redis deployments for the tests: a Redis Cluster (3 primaries, 3 replicas, made by
``redis-cli --cluster create``) and a Sentinel deployment (a primary, 2 replicas, 3 sentinels), on free
loopback ports, in temporary directories, stopped by pid. The implementation is shared with ``make
chaos`` and ``make bench``: bench/redis_deployments.py."""

from __future__ import annotations

from bench.redis_deployments import (
    RedisClusterDeployment,
    SentinelDeployment,
    ServerProcess,
    command,
    free_ports,
)

__all__ = ["RedisClusterDeployment", "SentinelDeployment", "ServerProcess", "command", "free_ports"]
