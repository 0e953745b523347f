"""Real multi-server Redis deployments on loopback for the tests, the chaos runs and the bench
(tests/cluster_fixtures.py re-exports them).

``RedisClusterDeployment``: a Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each,
created with ``redis-cli --cluster create ... --cluster-replicas N --cluster-yes``.
``SentinelDeployment``: a primary, ``replicas`` replicas and ``sentinels`` sentinels monitoring it.

Every server listens on a free loopback port, keeps its files in a temporary directory, requires a
random password (from a 0600 config file, never a command line; redis-cli gets it by REDISCLI_AUTH),
dies with its parent and is stopped by its pid. Failover timings are short (node timeout / down-after
1 s) so a failover completes in a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import redis

from captcha_queue.store.server import die_with_parent, find_server_binary

from .ports import free_ports

__all__ = [
    "RedisClusterDeployment",
    "SentinelDeployment",
    "ServerProcess",
    "cli_binary",
    "command",
    "free_ports",
]

SERVICE = "mymaster"


def cli_binary() -> str | None:
    """redis-cli (or valkey-cli) on PATH: ``--cluster create`` needs it."""
    return shutil.which("redis-cli") or shutil.which("valkey-cli")


def command(client: redis.Redis, *args: Any) -> Any:
    """``client.execute_command`` (typed)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError, ValueError, KeyError):
            if predicate():
                return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@dataclass
class ServerProcess:
    """One redis-server (or sentinel) process on a loopback port, with its config in ``workdir``."""

    port: int
    workdir: Path
    config: str
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def conf_path(self) -> Path:
        return self.workdir / ("sentinel.conf" if self.sentinel else "redis.conf")

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.conf_path.exists() or not self.sentinel:
            # A sentinel rewrites its own file (it records what it learnt): write it only once.
            fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.config)
        argv = [find_server_binary(), str(self.conf_path)]
        if self.sentinel:
            argv.append("--sentinel")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
            preexec_fn=die_with_parent,
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown, nothing flushed)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None


def _common(port: int, password: str) -> str:
    return (
        f"port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
        f'save ""\nappendonly no\nloglevel warning\nlogfile "server.log"\n'
        f"requirepass {password}\nmasterauth {password}\n"
        # A replica syncs at once (the default waits 5 s for more replicas to share the transfer).
        "repl-diskless-sync-delay 0\n"
    )


class _Deployment:
    def __init__(self) -> None:
        self.password = secrets.token_hex(16)
        self._tmp = tempfile.TemporaryDirectory(prefix="captcha-queue-deploy-")
        self.root = Path(self._tmp.name)
        self.servers: list[ServerProcess] = []

    def client(self, port: int, **kwargs: object) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            password=self.password,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            **kwargs,  # type: ignore[arg-type]
        )

    def _command(self, port: int, *args: str | int, password: bool = True) -> object:
        client = (
            self.client(port) if password else redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0)
        )
        try:
            return command(client, *args)
        finally:
            client.close()

    def _ping(self, port: int, password: bool = True) -> bool:
        return bool(self._command(port, "PING", password=password))

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers if s.pid is not None]

    def server(self, port: int) -> ServerProcess:
        return next(s for s in self.servers if s.port == port)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisClusterDeployment(_Deployment):
    """A Redis Cluster on loopback: ``primaries`` primaries, ``replicas`` replicas of each."""

    def __init__(self, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        super().__init__()
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self._replica_of: dict[str, str] = {}
        self._ids: dict[int, str] = {}

    def start(self, timeout_s: float = 60.0) -> RedisClusterDeployment:
        n = self.primaries * (1 + self.replicas)
        ports = free_ports(2 * n)
        self.ports, bus_ports = ports[:n], ports[n:]
        for port, bus in zip(self.ports, bus_ports, strict=True):
            config = _common(port, self.password) + (
                f"cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-port {bus}\n"
                f"cluster-node-timeout {self.node_timeout_ms}\ncluster-require-full-coverage no\n"
                "cluster-allow-reads-when-down no\n"
            )
            server = ServerProcess(port, self.root / str(port), config)
            server.start()
            self.servers.append(server)
        for port in self.ports:
            _wait(lambda port=port: self._ping(port), 10.0, f"cluster node {port}")  # type: ignore[misc]
        cli = cli_binary()
        if cli is None:
            raise RuntimeError("neither redis-cli nor valkey-cli is on PATH")
        env = {**os.environ, "REDISCLI_AUTH": self.password, "VALKEYCLI_AUTH": self.password}
        done = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-500:]!r}")
        self.wait_healthy(timeout_s)
        return self

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+cluster://:{quote(self.password, safe='')}@{hosts}"

    def nodes(self, via: int | None = None) -> list[dict[str, str]]:
        """CLUSTER NODES as seen by ``via`` (default: any live node): id, port, role, master id, flags."""
        ports = [via] if via is not None else [s.port for s in self.servers if s.running]
        for port in ports:
            try:
                raw = self._command(port, "CLUSTER", "NODES")
            except (redis.RedisError, OSError):
                continue
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            rows = []
            for line in text.strip().splitlines():
                parts = line.split()
                flags = parts[2].split(",")
                rows.append(
                    {
                        "id": parts[0],
                        "port": parts[1].split("@")[0].rsplit(":", 1)[1],
                        "role": "primary" if "master" in flags else "replica",
                        "master": parts[3],
                        "flags": parts[2],
                        "slots": " ".join(parts[8:]),
                    }
                )
            return rows
        raise RuntimeError("no cluster node answers")

    def primary_ports(self) -> list[int]:
        return [int(n["port"]) for n in self.nodes() if n["role"] == "primary" and "fail" not in n["flags"]]

    def port_of_slot_owner(self, key: str) -> int:
        """The port of the primary serving ``key``'s slot."""
        port = next(s.port for s in self.servers if s.running)
        slot = int(self._command(port, "CLUSTER", "KEYSLOT", key))  # type: ignore[call-overload]
        for row in self._command(port, "CLUSTER", "SLOTS"):  # type: ignore[attr-defined]
            if int(row[0]) <= slot <= int(row[1]):
                return int(row[2][1])
        raise RuntimeError(f"no node serves slot {slot}")

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Until every live node says cluster_state:ok, and agrees on who serves every slot."""

        def ok() -> bool:
            live = [s.port for s in self.servers if s.running]
            for port in live:
                info = self._command(port, "CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text or "cluster_slots_assigned:16384" not in text:
                    return False
            views = {str(sorted(map(str, self._command(p, "CLUSTER", "SLOTS")))) for p in live}  # type: ignore[call-overload]
            return len(views) == 1

        _wait(ok, timeout_s, "a healthy cluster", 0.1)
        _wait(self._replicas_linked, timeout_s, "every replica in sync", 0.1)

    def _replicas_linked(self) -> bool:
        for port in [s.port for s in self.servers if s.running]:
            info = self.client(port).info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (the topology before it is kept for ``wait_promoted``)."""
        self._replica_of = {n["id"]: n["master"] for n in self.nodes()}
        self._ids = {int(n["port"]): n["id"] for n in self.nodes()}
        self.server(port).kill()

    def restart(self, port: int) -> None:
        server = self.server(port)
        server.start()
        _wait(lambda: self._ping(port), 10.0, f"node {port} back")

    def wait_promoted(self, dead_port: int, timeout_s: float = 30.0) -> int:
        """After ``dead_port`` (a primary) died: the port of its replica once promoted."""
        dead_id = self._ids[dead_port]
        found: list[int] = []

        def promoted() -> bool:
            for n in self.nodes():
                if n["role"] == "primary" and n["slots"] and self._was_replica_of(n, dead_id):
                    found.append(int(n["port"]))
                    return True
            return False

        _wait(promoted, timeout_s, f"a replica of {dead_port} promoted", 0.1)
        return found[0]

    def _was_replica_of(self, node: dict[str, str], master_id: str) -> bool:
        return self._replica_of.get(node["id"]) == master_id

    def migrate_slot(self, key: str, to_port: int) -> None:
        """Move ``key``'s slot (and its keys) to the primary on ``to_port``: SETSLOT IMPORTING /
        MIGRATING, MIGRATE of every key in batches, then SETSLOT NODE on both sides."""
        from_port = self.port_of_slot_owner(key)
        if from_port == to_port:
            return
        port = from_port
        slot = int(self._command(port, "CLUSTER", "KEYSLOT", key))  # type: ignore[call-overload]
        ids = {int(n["port"]): n["id"] for n in self.nodes()}
        self._command(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from_port])
        self._command(from_port, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to_port])
        while True:
            keys = self._command(from_port, "CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            self._command(
                from_port,
                "MIGRATE",
                "127.0.0.1",
                to_port,
                "",
                0,
                5000,
                "AUTH",
                self.password,
                "KEYS",
                *keys,  # type: ignore[misc]
            )
        for port in (to_port, from_port):
            self._command(port, "CLUSTER", "SETSLOT", slot, "NODE", ids[to_port])
        for port in [int(n["port"]) for n in self.nodes() if n["role"] == "primary"]:
            with contextlib.suppress(redis.RedisError, OSError):
                self._command(port, "CLUSTER", "SETSLOT", slot, "NODE", ids[to_port])
        self.wait_healthy()


class SentinelDeployment(_Deployment):
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels (quorum 2) monitoring it as
    ``mymaster``. The sentinels require no password (they listen on loopback only)."""

    def __init__(
        self, replicas: int = 2, sentinels: int = 3, down_after_ms: int = 1000, min_replicas_to_write: int = 1
    ) -> None:
        super().__init__()
        #: ``min-replicas-to-write`` of every data server (docs/redis.md): 1, a primary with no replica
        #: in sync refuses writes, so one failed over from (it answers on until Sentinel demotes it) is
        #: no second primary; 0 (Redis's default), it takes them, and loses them when demoted.
        self.min_replicas_to_write = min_replicas_to_write
        self.n_replicas = replicas
        self.n_sentinels = sentinels
        self.down_after_ms = down_after_ms
        self.data_ports: list[int] = []
        self.sentinel_ports: list[int] = []

    def start(self, timeout_s: float = 60.0) -> SentinelDeployment:
        ports = free_ports(1 + self.n_replicas + self.n_sentinels)
        self.data_ports = ports[: 1 + self.n_replicas]
        self.sentinel_ports = ports[1 + self.n_replicas :]
        primary = self.data_ports[0]
        for i, port in enumerate(self.data_ports):
            config = _common(port, self.password) + (f"replicaof 127.0.0.1 {primary}\n" if i else "")
            config += f"min-replicas-to-write {self.min_replicas_to_write}\nmin-replicas-max-lag 10\n"
            server = ServerProcess(port, self.root / str(port), config)
            server.start()
            self.servers.append(server)
        for port in self.data_ports:
            _wait(lambda port=port: self._ping(port), 10.0, f"server {port}")  # type: ignore[misc]
        _wait(lambda: self._replicas_synced(primary), timeout_s, "the replicas in sync")
        for port in self.sentinel_ports:
            config = (
                f"port {port}\nbind 127.0.0.1\ndaemonize no\nloglevel warning\n"
                f'logfile "sentinel.log"\ndir "{self.root / str(port)}"\n'
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                f"sentinel auth-pass {SERVICE} {self.password}\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            server = ServerProcess(port, self.root / str(port), config, sentinel=True)
            server.start()
            self.servers.append(server)
        _wait(self._sentinels_agree, timeout_s, "the sentinels to know each other and the replicas", 0.1)
        return self

    def _replicas_synced(self, primary: int | None = None) -> bool:
        info = self.client(primary or self.primary_port()).info("replication")
        up = sum(
            1
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )
        return up >= self.n_replicas

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            state = self._command(port, "SENTINEL", "MASTER", SERVICE, password=False)
            assert isinstance(state, dict)  # redis-py parses SENTINEL MASTER (keys may be bytes)
            state = {(k.decode() if isinstance(k, bytes) else k): v for k, v in state.items()}
            if int(state["num-other-sentinels"]) < self.n_sentinels - 1:
                return False
            if int(state["num-slaves"]) < self.n_replicas:
                return False
        return True

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://:{quote(self.password, safe='')}@{hosts}/{SERVICE}/0"

    def primary_port(self) -> int:
        """The primary's port as the sentinels report it (the first live sentinel that answers)."""
        for port in self.sentinel_ports:
            if not self.server(port).running:
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                addr = self._command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE, password=False)
                return int(addr[1])  # type: ignore[index]
        raise RuntimeError("no sentinel answers")

    def failover(self) -> None:
        """SENTINEL FAILOVER: a coordinated switch (the old primary becomes a replica)."""
        self._command(self.sentinel_ports[0], "SENTINEL", "FAILOVER", SERVICE, password=False)

    def wait_new_primary(self, old_port: int, timeout_s: float = 30.0) -> int:
        """Until every sentinel names a primary other than ``old_port``, which answers as a master."""
        found: list[int] = []

        def moved() -> bool:
            seen = set()
            for port in self.sentinel_ports:
                if self.server(port).running:
                    addr = self._command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE, password=False)
                    seen.add(int(addr[1]))  # type: ignore[index]
            if len(seen) != 1 or old_port in seen:
                return False
            new = seen.pop()
            if self.client(new).info("replication").get("role") != "master":
                return False
            found.append(new)
            return True

        _wait(moved, timeout_s, "a new primary", 0.1)
        return found[0]

    def wait_demoted(self, old_port: int, new_port: int, timeout_s: float = 60.0) -> float:
        """Until the old primary (unless it is dead) follows ``new_port`` with its link up; the
        seconds waited. Sentinel demotes a primary it failed over from when it next reads its INFO
        (every 10 s): until then the old primary is a second primary that still takes writes."""
        started = time.monotonic()

        def follows() -> bool:
            if not self.server(old_port).running:
                return True
            role: Any = self._command(old_port, "ROLE")
            return bool(
                _text(role[0]) == "slave" and int(role[2]) == new_port and _text(role[3]) == "connected"
            )

        _wait(follows, timeout_s, f"server {old_port} to follow {new_port}", 0.05)
        return time.monotonic() - started

    def kill(self, port: int) -> None:
        self.server(port).kill()

    def restart(self, port: int) -> None:
        self.server(port).start()
        _wait(lambda: self._ping(port), 10.0, f"server {port} back")

    @contextlib.contextmanager
    def replicas_cut_off(self, primary: int) -> Iterator[None]:
        """Within the block, ``primary``'s writes reach no replica: the replicas are stopped (SIGSTOP)
        and their links cut (a stopped replica would still find what the primary sent in its socket
        buffer when it resumes); they go on (SIGCONT) at the end. Kill the primary inside the block and
        the replica promoted lacks what was written meanwhile."""
        pids = []
        for port in self.data_ports:
            pid = self.server(port).pid
            if port != primary and pid is not None:
                pids.append(pid)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            self._command(primary, "CLIENT", "KILL", "TYPE", "replica")
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def deployment(kind: str) -> Iterator[RedisClusterDeployment | SentinelDeployment]:
    """A started deployment of ``kind`` ("cluster" | "sentinel"), stopped at the end of the block."""
    dep: RedisClusterDeployment | SentinelDeployment = (
        RedisClusterDeployment() if kind == "cluster" else SentinelDeployment()
    )
    try:
        dep.start()
        yield dep
    finally:
        dep.stop()


def ports_in(servers: Sequence[ServerProcess]) -> list[int]:
    return [s.port for s in servers]
