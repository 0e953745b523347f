"""The queue, a worker process and the CLI against Redis Sentinel and Redis Cluster URLs.

Real deployments on loopback (tests/cluster_fixtures.py): a 3-primary/3-replica Cluster made by
``redis-cli --cluster create``, and a primary with 2 replicas watched by 3 sentinels. One of each per
module; every test works in a namespace of its own.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from click.testing import CliRunner

from captcha_queue import CaptchaQueue
from captcha_queue.cli import cli
from captcha_queue.errors import ConfigError, RedisUnavailable
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.store.connection import client_profile, is_cluster, make_client, node_info, parse_redis_url
from captcha_queue.store.keys import Keys
from captcha_queue.store.server import redact_url

from .cluster_fixtures import RedisClusterDeployment, SentinelDeployment, command, needs_cluster_tools
from .helpers import RC, ProcessManager
from .test_worker_processes import all_final, eventually, specs, start_worker, worker_env

Deployment = RedisClusterDeployment | SentinelDeployment
# One worker runs the whole module under pytest-xdist, so the deployments above start once per run, not
# once per worker that happens to get one of its tests.
pytestmark = [needs_cluster_tools, pytest.mark.xdist_group("redis-deployments")]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterDeployment]:
    with RedisClusterDeployment() as dep:
        dep.start()
        yield dep


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelDeployment]:
    with SentinelDeployment() as dep:
        dep.start()
        yield dep


@pytest.fixture(params=["sentinel", "cluster"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    dep: Deployment = request.getfixturevalue(request.param)
    return dep


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(time_scale=0.1, threads=50, seed=11)) as running:
        yield running


# -- URLs ----------------------------------------------------------------------------------------


def test_sentinel_and_cluster_urls_parse_into_their_deployments() -> None:
    target = parse_redis_url("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/mymaster/2?durability=replica")
    assert (target.kind, target.service, target.db, target.durability) == (
        "sentinel",
        "mymaster",
        2,
        "replica",
    )
    assert target.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert target.options["password"] == "s3cret"
    cluster_target = parse_redis_url("rediss+cluster://u:pw@h1:7000,h2:7001?durability_timeout_ms=250")
    assert (cluster_target.kind, cluster_target.tls, cluster_target.durability_timeout_ms) == (
        "cluster",
        True,
        250,
    )
    assert cluster_target.hosts == (("h1", 7000), ("h2", 7001))
    assert parse_redis_url("redis://:pw@127.0.0.1:6379/0").kind == "server"
    assert "s3cret" not in repr(target)
    guarded = "redis+sentinel://:pw@h:26379/mymaster?sentinel_password=sent1nel&sentinel_username=watcher"
    with_auth = parse_redis_url(guarded)
    assert with_auth.sentinel_options["password"] == "sent1nel"
    assert with_auth.sentinel_options["username"] == "watcher"
    assert "password" not in with_auth.options or with_auth.options["password"] == "pw"
    shown = redact_url(guarded)
    assert "sent1nel" not in shown
    assert ":pw@" not in shown


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://:s3cret@127.0.0.1:26379", "names its service"),
        ("redis+sentinel://:s3cret@127.0.0.1:26379/mymaster/x", "not a number"),
        ("redis+cluster://:s3cret@127.0.0.1:7000/3", "only database 0"),
        ("redis+cluster://:s3cret@127.0.0.1:notaport", "not host:port"),
        ("redis://:s3cret@127.0.0.1:6379/0?durability=always", "durability must be"),
        ("redis://:s3cret@127.0.0.1:6379/0?durability_timeout_ms=nan", "durability_timeout_ms"),
        ("redis+gossip://:s3cret@127.0.0.1:7000", "unknown scheme"),
    ],
)
def test_bad_urls_are_config_errors_without_the_password(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_redis_url(url)
    assert why in str(caught.value)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(RedisUnavailable) as unavailable:
        make_client(url)
    assert "s3cret" not in str(unavailable.value)


def test_the_cli_refuses_a_bad_sentinel_url_in_one_line() -> None:
    result = CliRunner().invoke(cli, ["stats"], env={"REDIS_URL": "redis+sentinel://:s3cret@127.0.0.1:1"})
    assert result.exit_code != 0
    assert "names its service" in result.output
    assert "s3cret" not in result.output
    assert len(result.output.strip().splitlines()) == 1


# -- the queue's lifecycle ---------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_lifecycle_submit_claim_complete_wait_by_push_and_stats(
    deployment: Deployment, ns: str
) -> None:
    async with AsyncCaptchaQueue.from_url(deployment.url, namespace=ns) as q:
        assert is_cluster(q.client) == isinstance(deployment, RedisClusterDeployment)
        task_id = await q.submit("userrecaptcha", RC)
        waiting = asyncio.create_task(q.wait_result(task_id, timeout_s=30))
        (claim,) = await q.claim("w1", 1, block_s=5)
        assert claim.task.id == task_id
        await asyncio.sleep(0.1)  # the waiter is subscribed and waiting
        done_at = time.monotonic()
        await q.complete(claim, "tok-1")
        result = await waiting
        assert time.monotonic() - done_at < 3.0  # pushed, not found by the 30 s timeout's last look
        assert result is not None
        assert result.ok
        assert result.solution is not None
        assert result.solution.text == "tok-1"
        stats = await q.stats()
        assert (stats.completed, stats.submitted, stats.in_flight) == (1, 1, 0)
        assert [r.status async for r in q.as_completed([task_id], timeout_s=5)] == ["success"]
        assert await q.claim("w1", 1, block_s=0.2) == []  # blocks on the wake key, then nothing


@pytest.mark.timeout(60)
async def test_a_cluster_announces_by_spublish_on_the_namespace_slot(
    cluster: RedisClusterDeployment, ns: str
) -> None:
    async with AsyncCaptchaQueue.from_url(cluster.url, namespace=ns) as q:
        assert client_profile(q.client).publish_command == "SPUBLISH"
        task_id = await q.submit("userrecaptcha", RC)
        waiting = asyncio.create_task(q.wait_result(task_id, timeout_s=30))
        owner = cluster.port_of_slot_owner(Keys(ns).channel)
        node = cluster.client(owner)
        try:

            def shard_subscribers() -> int:
                reply = command(node, "PUBSUB", "SHARDNUMSUB", Keys(ns).channel)
                return int(reply[1])

            deadline = time.monotonic() + 10
            while shard_subscribers() < 1:
                assert time.monotonic() < deadline, "the waiter never SSUBSCRIBEd on the slot's primary"
                await asyncio.sleep(0.05)
            (claim,) = await q.claim("w1", 1, block_s=5)
            await q.complete(claim, "tok")
            result = await asyncio.wait_for(waiting, 5)
            assert result is not None
            assert result.ok
        finally:
            node.close()


@pytest.mark.timeout(60)
async def test_namespaces_spread_over_the_cluster_and_scripts_reload_per_node(
    cluster: RedisClusterDeployment,
) -> None:
    owners: dict[int, str] = {}
    for i in range(60):
        name = f"spread-{uuid.uuid4().hex[:8]}-{i}"
        owners.setdefault(cluster.port_of_slot_owner(Keys(name).prefix), name)
        if len(owners) == 3:
            break
    assert len(owners) == 3, "60 namespaces all hashed to fewer than 3 primaries"
    for port, name in owners.items():
        node = cluster.client(port)
        try:
            node.script_flush()  # a node that never saw the scripts (new, restarted, failed over)
        finally:
            node.close()
        async with AsyncCaptchaQueue.from_url(cluster.url, namespace=name) as q:
            task_id = await q.submit("userrecaptcha", RC)
            (claim,) = await q.claim("w1", 1, block_s=2)
            assert (await q.complete(claim, "x")).id == task_id
        node = cluster.client(port)
        try:
            assert all(node.script_exists(*(s.sha for s in q.scripts.values() if s.name == "completeTask")))
            assert node.hexists(Keys(name).results, task_id)  # the data is on the slot's primary
        finally:
            node.close()


@pytest.mark.timeout(60)
async def test_durability_replica_waits_for_a_replica(deployment: Deployment, ns: str) -> None:
    url = deployment.url + "?durability=replica&durability_timeout_ms=2000"
    async with AsyncCaptchaQueue.from_url(url, namespace=ns) as q:
        task_id = await q.submit("userrecaptcha", RC)
        (claim,) = await q.claim("w1", 1, block_s=5)
        result = await q.complete(claim, "tok")
        assert result.ok
    # WAIT returned 1: every replica of the slot's primary holds the result already.
    primary = (
        deployment.port_of_slot_owner(Keys(ns).prefix)
        if isinstance(deployment, RedisClusterDeployment)
        else deployment.primary_port()
    )
    info = deployment.client(primary).info("replication")
    replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    assert replicas
    for replica in replicas:
        r = deployment.client(int(replica["port"]))
        try:
            if isinstance(deployment, RedisClusterDeployment):
                command(r, "READONLY")  # a cluster replica answers reads of its primary's slots
            assert r.hexists(Keys(ns).results, task_id)
        finally:
            r.close()


# -- a worker process and the CLI --------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_a_worker_process_solves_against_the_simulator(
    deployment: Deployment, ns: str, sim: RunningSimulator, processes: ProcessManager
) -> None:
    env = worker_env(
        {"REDIS_URL": deployment.url, "CAPTCHA_QUEUE_NAMESPACE": ns, "PYTHONUNBUFFERED": "1"}, sim
    )
    import os

    env = {**os.environ, **env}
    async with AsyncCaptchaQueue.from_url(deployment.url, namespace=ns) as q:
        ids = await q.submit_many(specs(12))
        start_worker(processes, env, "--solver-limit", "6")
        await eventually(lambda: all_final(q, ids), timeout_s=60, what="every task final")
        results = [await q.get_result(i) for i in ids]
        assert all(r is not None and r.ok for r in results)
        assert int(await q.client.xlen(q.keys.events)) == 12  # one final result each
        workers = await q.workers()
        assert len(workers) == 1


def test_cli_submit_and_stats(deployment: Deployment, ns: str) -> None:
    env: dict[str, str | None] = {
        "REDIS_URL": deployment.url,
        "CAPTCHA_QUEUE_NAMESPACE": ns,
        "CAPTCHAAI_KEY": None,
    }
    runner = CliRunner()
    submitted = runner.invoke(
        cli, ["submit", "turnstile", "sitekey=0x4AAAAAAAA", "pageurl=https://example.com/"], env=env
    )
    assert submitted.exit_code == 0, submitted.output
    stats = runner.invoke(cli, ["stats", "--json"], env=env)
    assert stats.exit_code == 0, stats.output
    assert deployment.password not in stats.output
    document = json.loads(stats.stdout)
    assert document["queued"]["normal"] == 1
    assert document["submitted"] == 1


def test_the_password_of_a_deployment_url_is_never_shown(deployment: Deployment) -> None:
    wrong = deployment.url.replace(deployment.password, "wrong-password-123")
    result = CliRunner().invoke(cli, ["stats"], env={"REDIS_URL": wrong, "CAPTCHAAI_KEY": None})
    assert result.exit_code != 0
    assert "wrong-password-123" not in result.output
    assert deployment.password not in result.output


def command_keyslot(rc: redis.RedisCluster, key: str) -> int:
    return int(rc.keyslot(key))  # type: ignore[no-untyped-call]


def test_redis_py_reaches_the_same_data_as_the_queue(cluster: RedisClusterDeployment, ns: str) -> None:
    """A plain redis-py cluster client sees the namespace's keys in one slot."""
    rc = redis.RedisCluster(
        host="127.0.0.1", port=cluster.ports[0], password=cluster.password, socket_timeout=2.0
    )
    try:

        async def go() -> str:
            async with AsyncCaptchaQueue.from_url(cluster.url, namespace=ns) as q:
                return await q.submit("userrecaptcha", RC)

        task_id = asyncio.run(go())
        assert rc.hexists(Keys(ns).tasks, task_id)
        slots = {
            command_keyslot(rc, k) for k in (Keys(ns).tasks, Keys(ns).state, Keys(ns).wake, Keys(ns).channel)
        }
        assert len(slots) == 1
    finally:
        rc.close()


async def test_node_info_reads_the_server_of_the_namespace_slot(
    cluster: RedisClusterDeployment, ns: str
) -> None:
    client = make_client(cluster.url)
    try:
        info = await node_info(client, Keys(ns).tasks, "server")
        assert int(info["tcp_port"]) == cluster.port_of_slot_owner(Keys(ns).prefix)
    finally:
        await client.aclose()


@pytest.mark.timeout(60)
async def test_a_large_submission_checks_memory_on_the_slot_primary(
    cluster: RedisClusterDeployment, ns: str
) -> None:
    async with AsyncCaptchaQueue.from_url(cluster.url, namespace=ns) as q:
        ids = await q.submit_many(specs(1200))  # over one chunk: the memory headroom is read first
        assert len(set(ids)) == 1200
        assert (await q.stats()).queued["normal"] == 1200


def test_the_blocking_queue_works_on_both(deployment: Deployment, ns: str) -> None:
    with CaptchaQueue.from_url(deployment.url, namespace=ns) as q:
        task_id = q.submit("userrecaptcha", RC)
        assert q.stats().queued["normal"] == 1
        assert q.get_result(task_id) is None


# -- the gateway ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_the_gateway_works_unchanged_on_a_sentinel_and_a_cluster_url(
    deployment: Deployment, ns: str
) -> None:
    """A client key, an in.php submission, a worker's completion and a res.php poll, with the gateway
    given only the deployment's URL (its client keys live under their own hash tag, the tasks under
    the namespace's: two slots on a Cluster)."""
    import aiohttp

    from captcha_queue.gateway import GatewaySettings, create_key, run_gateway

    client = make_client(deployment.url)
    try:
        key, _ = await create_key(client, namespace=ns)
        settings = GatewaySettings(port=0, redis_url=deployment.url)
        async with run_gateway(settings) as gateway, aiohttp.ClientSession() as http:
            params = {"key": key, "method": "userrecaptcha", **RC}
            async with http.get(f"{gateway.base_url}/in.php", params=params) as answer:
                body = await answer.text()
            assert body.startswith("OK|"), body
            task_id = body[3:]
            poll = {"key": key, "action": "get", "id": task_id}
            async with http.get(f"{gateway.base_url}/res.php", params=poll) as answer:
                assert await answer.text() == "CAPCHA_NOT_READY"
            async with AsyncCaptchaQueue.from_url(deployment.url, namespace=ns) as q:
                claims = await q.claim("w", 1, block_s=0)
                assert [c.task_id for c in claims] == [task_id]
                await q.complete(claims[0], "TOKEN-HA")
            async with http.get(f"{gateway.base_url}/res.php", params=poll) as answer:
                assert await answer.text() == "OK|TOKEN-HA"
    finally:
        await client.aclose()


# -- the dashboard -------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_the_dashboard_works_unchanged_on_a_sentinel_and_a_cluster_url(
    deployment: Deployment, ns: str
) -> None:
    """Every screen, /readyz and a finished task's event pushed to the live feed, with the dashboard
    given only the deployment's URL; its password on no page."""
    import aiohttp

    from captcha_queue.dashboard import DashboardConfig, serve

    from .test_dashboard import SCREENS

    async with (
        AsyncCaptchaQueue.from_url(deployment.url, namespace=ns) as q,
        serve(DashboardConfig(port=0, refresh_s=0.5), deployment.url, ns) as base,
        aiohttp.ClientSession() as http,
    ):
        (task_id,) = await q.submit_many([{"method": "userrecaptcha", "params": RC}])
        for path in [*SCREENS, "/readyz"]:
            async with http.get(base + path) as reply:
                body = await reply.text()
            assert reply.status == 200, (path, body[:300])
            assert deployment.password not in body, path
        async with http.get(base + f"/tasks?q={task_id}") as reply:
            assert reply.status == 200
            assert task_id in await reply.text()
        # The live feed reads the namespace's event stream (on a Cluster: its slot's primary).
        async with http.get(base + "/events/stream", timeout=aiohttp.ClientTimeout(total=30)) as stream:
            assert stream.status == 200
            (claim,) = await q.claim("w", 1, block_s=0)
            await q.complete(claim, "TOKEN-DASH")
            seen = b""
            async for chunk in stream.content.iter_any():
                seen += chunk
                if task_id.encode() in seen:
                    break
            assert task_id.encode() in seen
