"""Failover on real servers: a Sentinel switchover (``captcha-queue switchover``), the Sentinel primary
killed, and a Cluster primary killed (its replica promoted), with a producer submitting and a worker
process solving through it.

``durability=replica`` (WAIT 1 after each submission and finish): no acknowledged submission is
lost, and a submission no replica could take is refused (WriteNotReplicated), not acknowledged.
Without it, writes a failover loses are detected (the epoch is kept, the watermark goes back) and
counted by ``check_data_loss``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from captcha_queue.errors import RedisUnavailable, WriteNotReplicated
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.store.connection import PRIMARY_CHECK_S, make_client, unfenced_primary
from captcha_queue.store.keys import Keys
from captcha_queue.store.switchover import switchover
from captcha_queue.worker.limiter import SlotLimiter
from captcha_queue.worker.process import reach_redis

from .cluster_fixtures import RedisClusterDeployment, SentinelDeployment, command, needs_cluster_tools
from .helpers import ProcessManager
from .test_worker_processes import eventually, specs, start_worker, turnstile, worker_env

Deployment = RedisClusterDeployment | SentinelDeployment
pytestmark = needs_cluster_tools


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(time_scale=0.1, threads=50, seed=13)) as running:
        yield running


async def submit_through(q: AsyncCaptchaQueue, n: int, prefix: str, give_up_s: float = 30.0) -> list[str]:
    """Submit ``n`` tasks one by one, each retried (same idempotency key: never twice) until Redis
    takes it: a producer riding through an election."""
    ids: list[str] = []
    for i in range(n):
        deadline = time.monotonic() + give_up_s
        backoff_s = 0.05
        while True:
            try:
                ids.append(await q.submit("turnstile", turnstile(i), idempotency_key=f"{prefix}-{i}"))
                break
            except RedisUnavailable:
                assert time.monotonic() < deadline, f"submission {i} not taken in {give_up_s} s"
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 1.0)
    return ids


async def finals(q: AsyncCaptchaQueue, ids: list[str]) -> int:
    try:
        return sum(r is not None for r in (await q.waiter.fetch_many(ids)).values())
    except RedisUnavailable:
        return 0


async def one_event_each(q: AsyncCaptchaQueue, ids: list[str]) -> dict[str, int]:
    """Task id -> the number of final events the stream holds for it."""
    counts = dict.fromkeys(ids, 0)
    entries: Any = await q.client.xrange(q.keys.events, "-", "+")
    for _id, fields in entries:
        task_id = fields[b"id"].decode()
        if task_id in counts:
            counts[task_id] += 1
    return counts


async def ride_through(
    dep: Deployment,
    sim: RunningSimulator,
    processes: ProcessManager,
    fault: str,
    *,
    durability: bool = True,
) -> None:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    url = dep.url + ("?durability=replica&durability_timeout_ms=2000" if durability else "")
    env = worker_env(
        {**os.environ, "REDIS_URL": url, "CAPTCHA_QUEUE_NAMESPACE": ns, "PYTHONUNBUFFERED": "1"}, sim
    )
    async with AsyncCaptchaQueue.from_url(url, namespace=ns) as q:
        first = await submit_through(q, 30, "a")
        start_worker(processes, env, "--solver-limit", "8")
        await eventually(lambda: _at_least(finals(q, first), 8), timeout_s=30, what="some tasks done")
        assert await q.check_data_loss() is None  # records the data set
        if isinstance(dep, SentinelDeployment):
            old = dep.primary_port()
            if fault == "switchover":
                await switchover(dep.url)
            else:
                dep.kill(old)
                dep.wait_new_primary(old)
        else:
            owner = dep.port_of_slot_owner(Keys(ns).prefix)
            dep.kill(owner)
            dep.wait_promoted(owner)
            # The promoted replica has no replica of its own (3 x 1): durable writes of this shard wait
            # (WriteNotReplicated) until the operator brings the dead node back, as a replica.
            await asyncio.to_thread(dep.restart, owner)
        second = await submit_through(q, 20, "b")  # submissions during and after the election
        ids = first + second
        await eventually(lambda: _at_least(finals(q, ids), len(ids)), timeout_s=60, what="every task final")
        results = (await q.waiter.fetch_many(ids)).values()
        assert all(r.ok for r in results)
        events = await one_event_each(q, ids)
        assert set(events.values()) == {1}, {k: v for k, v in events.items() if v != 1}
        loss = await q.check_data_loss()
        assert loss is None, loss.describe()
        stats = await q.stats()
        assert stats.submitted == len(ids)
        assert len(await q.workers()) >= 1  # the worker registered again on the new primary


async def _at_least(count: object, n: int) -> bool:
    assert asyncio.iscoroutine(count)
    return int(await count) >= n


@pytest.mark.timeout(150)
async def test_a_sentinel_switchover_mid_run_loses_nothing(
    sim: RunningSimulator, processes: ProcessManager
) -> None:
    with SentinelDeployment() as dep:
        dep.start()
        await ride_through(dep, sim, processes, "switchover")


@pytest.mark.timeout(150)
async def test_the_sentinel_primary_killed_mid_run_with_durability_loses_nothing(
    sim: RunningSimulator, processes: ProcessManager
) -> None:
    with SentinelDeployment() as dep:
        dep.start()
        await ride_through(dep, sim, processes, "kill")


@pytest.mark.timeout(150)
async def test_a_cluster_primary_killed_mid_run_with_durability_loses_nothing(
    sim: RunningSimulator, processes: ProcessManager
) -> None:
    with RedisClusterDeployment() as dep:
        dep.start()
        await ride_through(dep, sim, processes, "kill")


@pytest.mark.timeout(120)
async def test_replica_durability_refuses_what_no_replica_took_and_loss_without_it_is_counted() -> None:
    """The replicas stop (SIGSTOP, links cut) and the primary is killed: with durability=replica the
    submissions meanwhile are refused (nothing acknowledged is lost); without it they are
    acknowledged, lost in the failover, and check_data_loss reports them (same epoch, watermark back)."""
    with SentinelDeployment(min_replicas_to_write=0) as dep:  # the primary writes with no replica
        dep.start()
        ns = f"t-{uuid.uuid4().hex[:10]}"
        durable = AsyncCaptchaQueue.from_url(
            dep.url + "?durability=replica&durability_timeout_ms=300", namespace=ns
        )
        plain = AsyncCaptchaQueue.from_url(dep.url, namespace=ns)
        try:
            kept = await durable.submit_many(specs(5))
            assert await plain.check_data_loss() is None
            primary = dep.primary_port()
            with dep.replicas_cut_off(primary):
                with pytest.raises(WriteNotReplicated):
                    await durable.submit("turnstile", turnstile(100))
                acknowledged = await plain.submit_many(specs(7, start=200))
                assert len(acknowledged) == 7
                assert await plain.check_data_loss() is None  # a periodic check saw the 13 written
                dep.kill(primary)  # before the replicas get the writes
            dep.wait_new_primary(primary, timeout_s=60)
            deadline = time.monotonic() + 30
            while True:
                try:
                    loss = await plain.check_data_loss()
                    break
                except RedisUnavailable:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert loss is not None
            assert loss.rolled_back
            # the 7 acknowledged without a replica, and the one WAIT refused (applied on the old primary)
            assert loss.lost == 8, loss.describe()
            assert "8 tasks" in loss.describe()
            present = await plain.client.hmget(plain.keys.tasks, kept + acknowledged)
            assert all(p is not None for p in present[:5])  # every durable submission survived
            assert all(p is None for p in present[5:])
        finally:
            await durable.aclose()
            await plain.aclose()


@pytest.mark.timeout(120)
async def test_a_client_follows_the_new_primary_while_the_old_one_still_answers() -> None:
    """A plain SENTINEL FAILOVER (and a second failover after a kill) leaves the old primary taking
    writes until Sentinel demotes it, ~10 s later. redis-py asked the sentinels only for a new
    connection, so a pooled connection kept writing there: two primaries for one fleet (150-170
    solves for N = 100 in the chaos run that found it). The client now follows the sentinels' newest
    configuration within about PRIMARY_CHECK_S."""
    with SentinelDeployment(min_replicas_to_write=0) as dep:  # unfenced: the old primary writes on
        dep.start()
        client = make_client(dep.url, max_connections=4)
        limiter = SlotLimiter(client, Keys("follow"), limit=5)
        try:
            await client.set("where", "before")
            assert not limiter.suspect
            old = dep.primary_port()
            await asyncio.to_thread(dep.failover)
            new = await asyncio.to_thread(dep.wait_new_primary, old, 60.0)
            old_admin, new_admin = dep.client(old), dep.client(new)
            try:
                moved_in_s = None
                started = time.monotonic()
                for i in range(80):  # ~8 s, well inside the ~10 s before Sentinel demotes the old one
                    await client.set("where", f"write-{i}")
                    if new_admin.get("where") == f"write-{i}".encode():
                        moved_in_s = time.monotonic() - started
                        break
                    await asyncio.sleep(0.1)
                assert moved_in_s is not None, "the client kept writing to the old primary"
                assert moved_in_s < PRIMARY_CHECK_S + 2.0
                # The race was real: the old primary still took writes meanwhile.
                assert _text(command(old_admin, "ROLE")[0]) == "master"
                # No error told of the switch: the limiter is told, to write its slots again.
                assert limiter.suspect
            finally:
                old_admin.close()
                new_admin.close()
        finally:
            await client.aclose()


@pytest.mark.timeout(60)
async def test_a_worker_warns_at_start_when_the_sentinel_primary_is_unfenced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SentinelDeployment(min_replicas_to_write=0) as dep:
        dep.start()
        with caplog.at_level(logging.WARNING, logger="captcha_queue.worker"):
            await reach_redis(dep.url, 10.0)
        assert "min-replicas-to-write 0" in caplog.text
        assert dep.password not in caplog.text
        primary = dep.primary_port()
        admin = dep.client(primary)
        try:
            command(admin, "CONFIG", "SET", "min-replicas-to-write", "1")
        finally:
            admin.close()
        fenced = make_client(dep.url)
        single = make_client(f"redis://:{dep.password}@127.0.0.1:{primary}/0")
        try:
            assert await unfenced_primary(fenced) is None
            assert await unfenced_primary(single) is None  # one server: no failover to fence against
        finally:
            await fenced.aclose()
            await single.aclose()


@pytest.mark.timeout(120)
async def test_a_primary_with_no_replica_in_sync_refuses_writes_as_a_transient_error() -> None:
    """With ``min-replicas-to-write 1`` (the recommended fence) a primary left without replicas (its
    replicas stopped here; in production: it was failed over from) refuses writes. The caller gets
    RedisUnavailable (transient: retried like a lost connection), and nothing was applied."""
    with SentinelDeployment() as dep:
        dep.start()
        ns = f"t-{uuid.uuid4().hex[:10]}"
        async with AsyncCaptchaQueue.from_url(dep.url, namespace=ns) as q:
            kept = await q.submit("turnstile", turnstile(1))
            primary = dep.primary_port()
            with dep.replicas_cut_off(primary):
                with pytest.raises(
                    RedisUnavailable, match="refused a write for want of replicas: NOREPLICAS"
                ):
                    await q.submit("turnstile", turnstile(2), idempotency_key="refused")
                assert (await q.stats()).submitted == 1
            # Once a replica is back in sync, writes are taken again.
            ids = await submit_through(q, 1, "refused-again", give_up_s=30.0)
            assert ids[0] != kept
            assert (await q.stats()).submitted == 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["sentinel-failover", "sentinel-kill", "cluster-kill"])
async def test_a_waiter_gets_its_result_pushed_across_a_failover(kind: str) -> None:
    """A wait_result begun before the failover returns the result written after it, promptly (the
    subscription moved to the new primary, or still hears the demoted one), not at its timeout."""
    dep: Deployment = RedisClusterDeployment() if kind.startswith("cluster") else SentinelDeployment()
    with dep:
        dep.start()
        ns = f"t-{uuid.uuid4().hex[:10]}"
        async with (
            AsyncCaptchaQueue.from_url(dep.url, namespace=ns) as producer,
            AsyncCaptchaQueue.from_url(dep.url, namespace=ns) as worker,
        ):
            task_id = await producer.submit("turnstile", turnstile(1))
            waiting = asyncio.create_task(producer.wait_result(task_id, timeout_s=90))
            await asyncio.sleep(0.3)  # subscribed
            if isinstance(dep, SentinelDeployment):
                old = dep.primary_port()
                if kind == "sentinel-failover":
                    await asyncio.to_thread(dep.failover)
                else:
                    dep.kill(old)
                await asyncio.to_thread(dep.wait_new_primary, old)
            else:
                owner = dep.port_of_slot_owner(Keys(ns).prefix)
                dep.kill(owner)
                await asyncio.to_thread(dep.wait_promoted, owner)
            deadline = time.monotonic() + 30
            while True:
                try:
                    (claim,) = await worker.claim("w1", 1, block_s=1)
                    await worker.complete(claim, "after-failover")
                    break
                except (RedisUnavailable, ValueError):
                    assert time.monotonic() < deadline, "the worker never reached the new primary"
                    await asyncio.sleep(0.1)
            finished_at = time.monotonic()
            result = await asyncio.wait_for(waiting, 20)
            assert time.monotonic() - finished_at < 10  # pushed (or re-read on resubscribe), not the 90 s
            assert result is not None
            assert result.solution is not None
            assert result.solution.text == "after-failover"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
