"""The fleet-wide solver slots against a real Redis: several limiters stand for several workers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from captcha_queue.queue._core import as_str
from captcha_queue.store.keys import Keys
from captcha_queue.worker.limiter import LimiterConfig, SlotLimiter, read_slot_state

FAST = LimiterConfig(lease_s=30.0, retry_min_s=0.002, retry_max_s=0.02)


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class Pumps:
    """Limiters with their pumps running; everything stopped at teardown."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, limit: int, config: LimiterConfig = FAST, account: str = "acct") -> SlotLimiter:
        limiter = SlotLimiter(self.client, self.keys, account, limit=limit, config=config)
        self.tasks.append(asyncio.create_task(limiter.run(), name="slot-pump"))
        return limiter

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def pumps(redis_client: aioredis.Redis, namespace: str) -> AsyncIterator[Pumps]:
    manager = Pumps(redis_client, Keys(namespace))
    yield manager
    await manager.stop()


async def wait_for_async(
    read: Callable[[], Awaitable[set[str]]], predicate: Callable[[set[str]], bool], timeout_s: float = 5.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate(await read()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def spawn(coro: Awaitable[None]) -> asyncio.Task[None]:
    async def runner() -> None:
        await coro

    return asyncio.create_task(runner())


async def test_grants_up_to_the_limit_and_hands_freed_slots_to_waiters(pumps: Pumps) -> None:
    limiter = pumps.start(limit=3)
    waits = {f"t{i}": spawn(limiter.acquire(f"t{i}", f"tok{i}")) for i in range(5)}
    await wait_for(lambda: sum(t.done() for t in waits.values()) == 3)
    await asyncio.sleep(0.05)
    assert sum(t.done() for t in waits.values()) == 3
    assert limiter.holding == 3
    # FIFO: the first three asked first.
    assert all(waits[f"t{i}"].done() for i in range(3))
    limiter.release("t0", "tok0")
    await wait_for(lambda: waits["t3"].done())
    assert not waits["t4"].done()
    state = await read_slot_state(pumps.client, pumps.keys, "acct")
    assert (state.configured, state.effective, state.used) == (3, 3, 3)
    waits["t4"].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waits["t4"]
    assert limiter.waiting == 0


async def test_many_limiters_never_exceed_the_fleet_limit(pumps: Pumps) -> None:
    limit = 5
    limiters = [pumps.start(limit=limit) for _ in range(4)]
    in_use = 0
    peak = 0
    done = 0

    async def solve(limiter: SlotLimiter, n: int) -> None:
        nonlocal in_use, peak, done
        await limiter.acquire(f"task{n}", f"tok{n}")
        in_use += 1
        peak = max(peak, in_use)
        await asyncio.sleep(0.002 * (n % 5))
        in_use -= 1
        limiter.release(f"task{n}", f"tok{n}")
        done += 1

    await asyncio.gather(*(solve(limiters[n % 4], n) for n in range(120)))
    assert done == 120
    assert peak <= limit
    assert peak >= limit - 1  # the fleet did use its slots
    deadline = time.monotonic() + 5.0
    while (await read_slot_state(pumps.client, pumps.keys, "acct")).used:
        assert time.monotonic() < deadline, "released slots never reached Redis"
        await asyncio.sleep(0.01)


async def members(pumps: Pumps) -> set[str]:
    return {as_str(m) for m in await pumps.client.zrange(pumps.keys.slots("acct"), 0, -1)}


async def effective_limit(pumps: Pumps) -> int:
    effective = (await read_slot_state(pumps.client, pumps.keys, "acct")).effective
    assert effective is not None, "the account has no effective limit in Redis"
    return effective


async def test_a_dead_holders_slots_stay_counted_until_their_solves_must_be_over(pumps: Pumps) -> None:
    # The holder stops renewing at once (lease 0.3 s); its solves may run at the service until 1 s
    # after they were granted, so they count as ghosts until then, and only then are free.
    short = LimiterConfig(lease_s=0.3, orphan_hold_s=1.0, retry_min_s=0.002, retry_max_s=0.02)
    dead = pumps.start(limit=2, config=short)
    started = time.monotonic()
    await dead.acquire("a", "ta")
    await dead.acquire("b", "tb")
    pumps.tasks[0].cancel()  # the holder "dies": no renew, no release
    survivor = pumps.start(limit=2, config=short)
    await asyncio.wait_for(survivor.acquire("c", "tc"), 5.0)
    assert time.monotonic() - started >= 0.9
    state = await read_slot_state(pumps.client, pumps.keys, "acct")
    assert state.used <= 2


async def test_a_resumed_task_adopts_its_ghost_without_taking_free_room(pumps: Pumps) -> None:
    short = LimiterConfig(lease_s=0.2, orphan_hold_s=30.0, retry_min_s=0.002, retry_max_s=0.02)
    dead = pumps.start(limit=2, config=short)
    await dead.acquire("a", "ta")
    pumps.tasks[0].cancel()
    other = pumps.start(limit=2, config=short)
    await other.acquire("x", "tx")

    async def renew_and_read() -> set[str]:
        await other.renew()  # any slot script turns expired slots into ghosts
        return await members(pumps)

    await wait_for_async(renew_and_read, lambda m: "#a#ta" in m)  # "a" outlived its lease
    # The task's next owner polls the same remote id: the ghost becomes its live slot.
    await asyncio.wait_for(other.acquire("a", "ta2", resume=True), 2.0)
    assert await members(pumps) == {"a", "x"}
    blocked = spawn(other.acquire("b", "tb"))
    await asyncio.sleep(0.1)
    assert not blocked.done()
    other.release("a", "ta2", outcome="ok")
    await asyncio.wait_for(blocked, 2.0)


async def test_a_fresh_submit_leaves_the_previous_owners_solve_counted(pumps: Pumps) -> None:
    first = pumps.start(limit=2)
    second = pumps.start(limit=2)
    await first.acquire("a", "ta")  # submitted, then the worker froze (its lease was lost)
    await asyncio.wait_for(second.acquire("a", "tb"), 2.0)  # no remote id recorded: submits anew
    assert await members(pumps) == {"a", "#a#ta"}
    blocked = spawn(second.acquire("c", "tc"))
    await asyncio.sleep(0.1)
    assert not blocked.done()  # two solves of "a" at the service fill N = 2
    assert await first.renew() == ["a"]
    second.release("a", "tb", outcome="ok")
    await asyncio.wait_for(blocked, 2.0)
    assert await members(pumps) == {"c", "#a#ta"}


async def test_a_slot_belongs_to_a_claim_not_to_its_task(pumps: Pumps) -> None:
    """One worker claims a task again (the old claim's lease lapsed mid-submit): the new claim does
    not hold the old claim's slot. Submitting anew, it waits for room while the old submit counts;
    resuming the same remote id, it adopts the old solve's slot."""
    limiter = pumps.start(limit=1)
    await limiter.acquire("a", "old")
    assert limiter.holds("a", "old")
    assert not limiter.holds("a", "new")
    fresh = spawn(limiter.acquire("a", "new"))
    await wait_for_async(lambda: members(pumps), lambda m: m == {"#a#old"})
    await asyncio.sleep(0.05)
    assert not fresh.done()  # N = 1 is taken by the old claim's submit
    fresh.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await fresh
    await asyncio.wait_for(limiter.acquire("a", "new", resume=True), 2.0)
    assert limiter.holds("a", "new")
    assert await members(pumps) == {"a"}


async def test_abandoned_slots_stay_counted_and_finished_ones_are_freed(pumps: Pumps) -> None:
    short = LimiterConfig(lease_s=30.0, orphan_hold_s=0.5, retry_min_s=0.002, retry_max_s=0.02)
    limiter = pumps.start(limit=2, config=short)
    await limiter.acquire("kept", "t1")
    await limiter.acquire("done", "t2")
    limiter.release("kept", "t1", outcome="abandon")  # lease lost mid-solve: the service solves on
    limiter.release("done", "t2", outcome="error")
    await wait_for_async(lambda: members(pumps), lambda m: m == {"#kept#t1"})
    started = time.monotonic()
    await limiter.acquire("n1", "t3")
    await asyncio.wait_for(limiter.acquire("n2", "t4"), 2.0)  # once the ghost's hold is over
    assert time.monotonic() - started >= 0.2
    assert await members(pumps) == {"n1", "n2"}


async def test_renew_takes_back_its_ghost_and_reregisters_a_slot_redis_lost(pumps: Pumps) -> None:
    short = LimiterConfig(lease_s=0.2, orphan_hold_s=30.0, retry_min_s=0.002, retry_max_s=0.02)
    holder = pumps.start(limit=2, config=short)
    other = pumps.start(limit=2, config=short)
    await holder.acquire("a", "ta")
    await asyncio.sleep(0.3)  # stalled past its slot lease
    await other.acquire("x", "tx")  # any slot call turns the expired slot into a ghost
    assert await members(pumps) == {"#a#ta", "x"}
    assert await holder.renew() == []
    assert await members(pumps) == {"a", "x"}
    # Redis loses the slot (an fsync window): the renewal counts it again, even over the limit, and
    # nothing new is granted for one lease so the other workers re-register theirs.
    await pumps.client.delete(pumps.keys.slots("acct"), pumps.keys.slot_owners("acct"))
    assert await holder.renew() == []
    assert await members(pumps) == {"a"}
    started = time.monotonic()
    await asyncio.wait_for(other.acquire("y", "ty"), 2.0)
    assert time.monotonic() - started >= 0.1


async def test_redis_losing_the_limit_hash_holds_new_grants_for_one_lease(pumps: Pumps) -> None:
    short = LimiterConfig(lease_s=0.5, retry_min_s=0.002, retry_max_s=0.02)
    limiter = pumps.start(limit=3, config=short)
    await limiter.acquire("a", "ta")
    keys = pumps.keys
    await pumps.client.delete(keys.slots("acct"), keys.slot_limit("acct"), keys.slot_owners("acct"))
    started = time.monotonic()
    await asyncio.wait_for(limiter.acquire("b", "tb"), 5.0)
    assert time.monotonic() - started >= 0.4
    assert (await read_slot_state(pumps.client, pumps.keys, "acct")).effective == 3


async def test_renew_keeps_slots_past_their_lease(pumps: Pumps) -> None:
    short = LimiterConfig(lease_s=0.3, retry_min_s=0.002, retry_max_s=0.02)
    holder = pumps.start(limit=1, config=short)
    other = pumps.start(limit=1, config=short)
    await holder.acquire("a", "ta")
    waiting = spawn(other.acquire("b", "tb"))
    for _ in range(6):
        await asyncio.sleep(0.1)
        assert await holder.renew() == []
    assert not waiting.done()
    holder.release("a", "ta")
    await asyncio.wait_for(waiting, 5.0)


async def test_a_stale_holder_cannot_release_an_adopted_slot(pumps: Pumps) -> None:
    stale = pumps.start(limit=1)
    fresh = pumps.start(limit=1)
    await stale.acquire("task", "old-token")
    # The task is reclaimed by another worker (new lease token) resuming its remote id: it adopts
    # the slot at once.
    await asyncio.wait_for(fresh.acquire("task", "new-token", resume=True), 2.0)
    assert await stale.renew() == ["task"]
    stale.release("task", "old-token")
    stale.release("task", "old-token", outcome="abandon")
    await asyncio.sleep(0.05)
    owners = await pumps.client.hgetall(pumps.keys.slot_owners("acct"))
    assert owners[b"task"] == b"new-token"
    assert await members(pumps) == {"task"}


async def test_the_limit_changes_at_run_time(pumps: Pumps) -> None:
    limiter = pumps.start(limit=2)
    waits = [spawn(limiter.acquire(f"t{i}", "tok")) for i in range(4)]
    await wait_for(lambda: sum(t.done() for t in waits) == 2)
    state = await limiter.set_limit(4)
    assert (state.configured, state.effective) == (4, 4)
    await wait_for(lambda: all(t.done() for t in waits))
    # Lowering it stops new grants until use falls under the new limit.
    await limiter.set_limit(1)
    extra = spawn(limiter.acquire("t9", "tok"))
    for i in range(3):
        limiter.release(f"t{i}", "tok")
    await asyncio.sleep(0.1)
    assert not extra.done()
    limiter.release("t3", "tok")
    await asyncio.wait_for(extra, 2.0)


async def test_busy_lowers_the_fleet_limit_once_and_success_raises_it_back(pumps: Pumps) -> None:
    aimd = LimiterConfig(
        lease_s=30.0,
        decrease_factor=0.5,
        busy_cooldown_s=10.0,
        recover_every_s=0.05,
        recover_fraction=0.25,
        retry_min_s=0.002,
        retry_max_s=0.02,
    )
    first = pumps.start(limit=8, config=aimd)
    second = pumps.start(limit=8, config=aimd)
    await first.set_limit(8)
    for i, limiter in enumerate((first, second)):
        await limiter.acquire(f"b{i}", "tok")
    first.release("b0", "tok", outcome="busy")
    second.release("b1", "tok", outcome="busy")  # the same event seen by two workers
    await wait_for(lambda: first.effective == 4 and second.used == 0)
    await asyncio.sleep(0.05)
    state = await read_slot_state(pumps.client, pumps.keys, "acct")
    assert state.effective == 4  # halved once, not twice
    # ... but both answers are counted (the dashboard's capacity screen reads them: slot_usage).
    assert await pumps.client.hget(pumps.keys.slot_limit("acct"), "busy_answers") == b"2"
    # Additive recovery: +2 (a quarter of 8) per interval with successful solves, up to 8.
    rounds = 0
    while await effective_limit(pumps) < 8:
        rounds += 1
        assert rounds < 200
        await first.acquire(f"s{rounds}", "tok")
        first.release(f"s{rounds}", "tok", outcome="ok")
        await asyncio.sleep(0.03)
    assert rounds >= 2
    assert (await read_slot_state(pumps.client, pumps.keys, "acct")).effective == 8


async def test_aclose_leaves_held_slots_counted_as_ghosts(pumps: Pumps) -> None:
    limiter = pumps.start(limit=3)
    for i in range(3):
        await limiter.acquire(f"t{i}", "tok")
    limiter.release("t0", "tok", outcome="ok")
    pumps.tasks[0].cancel()
    await limiter.aclose()  # shutdown: the solves still held are left for their tasks' next owners
    assert await members(pumps) == {"#t1#tok", "#t2#tok"}


def test_config_scaling() -> None:
    scaled = LimiterConfig().scaled(0.01)
    assert scaled.lease_s == 30.0
    assert scaled.busy_cooldown_s == pytest.approx(0.05)
    assert 0.005 <= scaled.retry_max_s <= 0.2
    with pytest.raises(ValueError, match="at least 1"):
        SlotLimiter(aioredis.Redis(), Keys("x"), limit=0)


@pytest.mark.timeout(30)
async def test_a_renewal_is_never_overtaken_by_the_processs_own_release(
    redis_url: str, namespace: str
) -> None:
    """The W1 stall: a renewal names the slots its process holds when it starts. Held up on its way
    to Redis (in a busy worker, waiting for a pooled connection; here, by a slow link), it was
    overtaken by the pump's release of one of those slots, and re-registered the freed slot as one
    Redis had lost: no new grant anywhere in the fleet for a slot lease, with work queued."""
    from bench.chaos.proxy import FaultProxy

    from captcha_queue.store.connection import make_client

    parts = urlsplit(redis_url)
    async with FaultProxy("127.0.0.1", int(parts.port or 6379)) as proxy:
        client = make_client(proxy.redis_url(password=parts.password))
        keys = Keys(namespace)
        limiter = SlotLimiter(client, keys, "acct", limit=10, config=FAST)
        pump = asyncio.create_task(limiter.run())
        try:
            await limiter.acquire("a", "ta")
            await limiter.acquire("b", "tb")
            proxy.set_latency(0.3)  # what is sent now reaches Redis 0.3 s later
            renewal = asyncio.create_task(limiter.renew())
            await asyncio.sleep(0.05)  # the renewal named "a" and "b" and is on its way
            proxy.set_latency(0.0)
            limiter.release("a", "ta")  # "a" is done: the pump gives its slot back
            assert await renewal == []
            raw = await client.hgetall(keys.slot_limit("acct"))
            assert b"rebuild_until_ms" not in raw, "the renewal took a released slot for one Redis lost"
            await wait_for_async(lambda: members_of(client, keys), lambda m: m == {"b"})
            await asyncio.wait_for(limiter.acquire("c", "tc"), 1.0)  # the fleet grants at once
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await client.aclose()


async def members_of(client: aioredis.Redis, keys: Keys) -> set[str]:
    return {as_str(m) for m in await client.zrange(keys.slots("acct"), 0, -1)}


@pytest.mark.timeout(30)
async def test_after_a_redis_failure_held_slots_are_registered_again_before_any_grant(pumps: Pumps) -> None:
    """A failover to a replica that had not received the latest slot writes: the data set's epoch is
    the same, the slots and their owners are gone. Every worker saw its connections break
    (note_redis_failure); the holder registers its slots again before the other worker is granted
    one, so the fleet never holds more than N. Before, the other worker was granted a slot at once:
    N + 1 solves (the HA chaos scenario saw 45 of 30 after a Sentinel primary was killed)."""
    config = dataclasses.replace(FAST, lease_s=6.0)  # no lease runs out in the test: nobody renews here
    holder = pumps.start(limit=3, config=config)
    other = pumps.start(limit=3, config=config)
    await holder.set_limit(3)
    for i in range(3):
        await holder.acquire(f"a{i}", "tok")
    keys = pumps.keys
    await pumps.client.delete(keys.slots("acct"), keys.slot_owners("acct"))  # the rollback
    holder.note_redis_failure()
    other.note_redis_failure()
    waiting = spawn(other.acquire("b0", "tok"))
    await wait_for_async(lambda: members(pumps), lambda found: found == {"a0", "a1", "a2"})
    with pytest.raises(TimeoutError):  # the fleet is full again: nothing for the other worker
        await asyncio.wait_for(asyncio.shield(waiting), 3.5)
    assert await members(pumps) == {"a0", "a1", "a2"}
    holder.release("a0", "tok")
    await asyncio.wait_for(waiting, 10.0)
    found = await members(pumps)
    assert "b0" in found
    assert len(found) == 3  # a1 and a2 (live, or ghosts once their unrenewed lease ran out) and b0


async def test_a_solve_whose_slot_a_failover_lost_stays_counted_when_a_fresh_submit_took_it(
    pumps: Pumps,
) -> None:
    """A failover without WAIT lost a claim and its slot; the task's next owner submitted anew and
    took a fresh slot before the old owner re-registered. The old solve runs on at the service, so
    the old owner's renewal, told the slot is another claim's now, leaves it counted as a ghost
    (it was dropped: CI saw 46 solves in flight for N = 30)."""
    first = pumps.start(limit=1)
    second = pumps.start(limit=1)
    await first.acquire("a", "ta")
    await pumps.client.delete(pumps.keys.slots("acct"), pumps.keys.slot_owners("acct"))
    await asyncio.wait_for(second.acquire("a", "tb"), 2.0)  # no remote id on record: submits anew
    assert await first.renew() == ["a"]
    assert await members(pumps) == {"a", "#a#ta"}
    second.release("a", "tb", outcome="ok")
    blocked = spawn(second.acquire("c", "tc"))
    await wait_for_async(lambda: members(pumps), lambda m: m == {"#a#ta"})
    await asyncio.sleep(0.1)
    assert not blocked.done()  # N = 1 is the old solve's, still running
    blocked.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await blocked


async def test_a_solve_given_up_after_a_failover_lost_its_slot_stays_counted(pumps: Pumps) -> None:
    """The same, given up instead of renewed: the old owner learns its lease is lost and abandons
    the task (its solve runs on). Whether another claim took a fresh slot or nobody did, the solve is
    counted as a ghost; a release queued before the failure was noticed counts it again too."""
    first = pumps.start(limit=3)
    second = pumps.start(limit=3)
    await first.acquire("a", "ta")
    await first.acquire("b", "tb")
    await pumps.client.delete(pumps.keys.slots("acct"), pumps.keys.slot_owners("acct"))
    await asyncio.wait_for(second.acquire("a", "ta2"), 2.0)
    first.note_redis_failure()
    first.release("a", "ta", outcome="abandon")  # another claim owns its slot now
    first.release("b", "tb", outcome="abandon")  # Redis lost it, nobody took it
    await wait_for_async(lambda: members(pumps), lambda m: m == {"a", "#a#ta", "#b#tb"})


async def test_a_resumed_solve_is_not_counted_twice_when_its_old_owner_gives_it_up(pumps: Pumps) -> None:
    stale = pumps.start(limit=2)
    fresh = pumps.start(limit=2)
    await stale.acquire("a", "old")
    await asyncio.wait_for(fresh.acquire("a", "new", resume=True), 2.0)  # the same solve, adopted
    assert await stale.renew() == ["a"]
    stale.release("a", "old", outcome="abandon")
    await asyncio.sleep(0.05)
    await asyncio.wait_for(fresh.acquire("b", "tb"), 2.0)  # N = 2: one solve of "a", one of "b"
    assert await members(pumps) == {"a", "b"}


async def test_a_lease_lost_after_a_failover_was_ridden_through_leaves_its_solve_counted(
    pumps: Pumps,
) -> None:
    """The order a worker sees: Redis fails, the limiter re-registers what it holds, and only at the
    next lease renewal does the worker learn that the failover lost one claim; it gives that task up
    (its solve runs on). Redis lost that slot too (granted after the claim): counted again."""
    limiter = pumps.start(limit=3)
    await limiter.acquire("a", "ta")
    limiter.note_redis_failure()
    await wait_for(lambda: not limiter._suspect)  # the failure handled: slots re-registered
    await pumps.client.delete(pumps.keys.slots("acct"), pumps.keys.slot_owners("acct"))
    limiter.release("a", "ta", outcome="abandon")  # the lease renewal said: lost
    await wait_for_async(lambda: members(pumps), lambda m: m == {"#a#ta"})
