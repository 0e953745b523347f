"""``captcha-queue switchover`` on a real Sentinel deployment: a planned switch to a replica while a
producer submits with ``durability=replica``. Every acknowledged submission is on the new primary
and the old primary follows it when the switch returns (plain SENTINEL FAILOVER leaves it a second
primary for up to 10 s, and discards what it took: bench/chaos/ha_faults.py measures that)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from click.testing import CliRunner

from captcha_queue.cli import cli
from captcha_queue.errors import ConfigError, RedisCommandError, RedisUnavailable
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.switchover import switchover

from .cluster_fixtures import SentinelDeployment, command, needs_cluster_tools
from .test_worker_processes import specs

pytestmark = needs_cluster_tools

DURABLE = "?durability=replica&durability_timeout_ms=2000"


async def _produce(q: AsyncCaptchaQueue, acked: list[str], stop: asyncio.Event) -> int:
    """Submit batches of 10 until ``stop``; only acknowledged ids are kept. The refusals counted."""
    refused = 0
    n = 0
    while not stop.is_set():
        try:
            acked += await q.submit_many(specs(10, start=n))
        except RedisUnavailable:
            refused += 1
            await asyncio.sleep(0.02)
        n += 10
        await asyncio.sleep(0)
    return refused


async def _grown(acked: list[str], n: int, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while len(acked) < n:  # noqa: ASYNC110 (the producer appends; nothing to signal)
            await asyncio.sleep(0.01)


def _role(dep: SentinelDeployment, port: int) -> list[object]:
    client = dep.client(port)
    try:
        reply = command(client, "ROLE")
    finally:
        client.close()
    return [v.decode() if isinstance(v, bytes) else v for v in reply]


@pytest.mark.timeout(120)
async def test_a_switchover_under_load_loses_no_acknowledged_submission() -> None:
    with SentinelDeployment() as dep:
        dep.start()
        old = dep.primary_port()
        ns = f"t-{uuid.uuid4().hex[:10]}"
        async with AsyncCaptchaQueue.from_url(dep.url + DURABLE, namespace=ns) as q:
            acked: list[str] = []
            stop = asyncio.Event()
            producer = asyncio.create_task(_produce(q, acked, stop))
            try:
                await _grown(acked, 300)
                done = await switchover(dep.url, timeout_s=30.0)
                at_switch = len(acked)
                await _grown(acked, at_switch + 300)  # the producer goes on, on the new primary
            finally:
                stop.set()
                await producer
            new = dep.primary_port()
            assert new != old
            assert done.old_primary[1] == old
            assert done.new_primary[1] == new
            assert 0 < done.paused_ms < 30_000
            # Returned only once the old primary follows the new one: no second primary left.
            assert _role(dep, old)[:4] == ["slave", "127.0.0.1", new, "connected"]
            present = await q.client.hmget(q.keys.tasks, acked)
            missing = [task_id for task_id, p in zip(acked, present, strict=True) if p is None]
            assert not missing, f"{len(missing)} of {len(acked)} acknowledged submissions lost"
            stats = await q.stats()
            assert stats.submitted >= len(acked)
            assert await q.check_data_loss() is None
            assert "none lost" in done.describe()
            assert dep.password not in done.describe()


@pytest.mark.timeout(120)
async def test_the_cli_switches_back_and_never_shows_the_password() -> None:
    with SentinelDeployment() as dep:
        dep.start()
        old = dep.primary_port()
        runner = CliRunner()
        env = {"REDIS_URL": dep.url}
        result = await asyncio.to_thread(runner.invoke, cli, ["switchover", "--timeout", "30"], env=env)
        assert result.exit_code == 0, result.output
        new = dep.primary_port()
        assert new != old
        assert f"127.0.0.1:{old} -> 127.0.0.1:{new}" in result.output
        assert dep.password not in result.output
        # And back again: the old primary, now a replica in sync, takes over.
        dep.wait_demoted(old, new, 30.0)
        again = await asyncio.to_thread(runner.invoke, cli, ["switchover"], env=env)
        assert again.exit_code == 0, again.output
        assert dep.primary_port() != new


@pytest.mark.timeout(60)
async def test_a_switchover_with_no_replica_to_take_over_changes_nothing() -> None:
    # Unfenced: the check below writes to a primary left with no replica (fenced, it would refuse).
    with SentinelDeployment(replicas=1, min_replicas_to_write=0) as dep:
        dep.start()
        primary = dep.primary_port()
        [replica] = [p for p in dep.data_ports if p != primary]
        dep.kill(replica)
        # Before Sentinel marks it down (down-after-ms, 1 s) the paused primary has no replica to
        # catch up; after, Sentinel offers none: refused either way, the pause lifted.
        with pytest.raises(RedisCommandError, match="nothing changed"):
            await switchover(dep.url, timeout_s=3.0)
        assert dep.primary_port() == primary
        assert _role(dep, primary)[0] == "master"
        client = dep.client(primary)
        try:
            client.set("writable", "yes")  # not left paused
        finally:
            client.close()


def test_a_switchover_needs_a_sentinel_url() -> None:
    with pytest.raises(ConfigError, match="needs a Sentinel URL"):
        asyncio.run(switchover("redis://:secret@127.0.0.1:1/0"))
    with pytest.raises(ConfigError, match="pause_ms"):
        asyncio.run(switchover("redis+sentinel://127.0.0.1:1/mymaster", pause_ms=10))
    result = CliRunner().invoke(cli, ["switchover"], env={"REDIS_URL": "redis://:s3cret-pw@127.0.0.1:1/0"})
    assert result.exit_code == 1
    assert "needs a Sentinel URL" in result.output
    assert "s3cret-pw" not in result.output
    assert len(result.output.strip().splitlines()) == 1
