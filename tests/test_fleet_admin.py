"""The fleet state through the queue's admin API: pauses (the operator's and the breaker's, one script
path), resume (one lift script, which arms the wake marker as every queue script does), the workers,
Redis time; bad arguments refused with nothing written."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, CaptchaQueue, InvalidArgument, RedisCommandError
from captcha_queue.errors import AccountError
from captcha_queue.models import AccountInfo
from captcha_queue.worker.breaker import AccountBreaker

REF = "main/0123456789abcdef"
RC = {"googlekey": "6Le-site-key", "pageurl": "https://example.com/login"}


@pytest.fixture
async def queue(redis_client: aioredis.Redis, namespace: str) -> AsyncIterator[AsyncCaptchaQueue]:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    yield q
    await q.aclose()


async def healthy() -> AccountInfo:
    return AccountInfo(threads=5, working_threads=0)


def breaker_of(
    queue: AsyncCaptchaQueue, probe: Callable[[], Awaitable[AccountInfo]] = healthy
) -> AccountBreaker:
    return AccountBreaker(
        queue,
        probe,
        account="main",
        key_fingerprint="0123456789abcdef",
        worker_id="vm:1:a",
        probe_every_s=0.01,
    )


async def namespace_keys(queue: AsyncCaptchaQueue) -> list[Any]:
    return [k async for k in queue.client.scan_iter(match=queue.keys.prefix + "*")]


@pytest.mark.timeout(30)
async def test_pause_state_resume_and_a_blocked_claimer_wakes(queue: AsyncCaptchaQueue) -> None:
    assert not (await queue.pause_state()).paused
    pause, started = await queue.pause("maintenance", 60)
    assert started
    assert (pause.reason, pause.code, pause.ref) == ("maintenance", "OPERATOR", None)
    assert pause.since_ms is not None
    assert pause.until_ms == pause.since_ms + 60_000
    state = await queue.pause_state()
    assert state.fleet == pause
    assert state.accounts == ()
    assert 0 <= state.now_ms - pause.since_ms < 10_000
    assert 0 < await queue.client.pttl(queue.keys.paused) <= 60_000  # tidied away at its end
    assert (await queue.stats()).paused == "maintenance"

    # An operator's pause replaces the one in place (open-ended now).
    again, started = await queue.pause("longer")
    assert started
    assert (again.reason, again.until_ms) == ("longer", None)

    task_id = await queue.submit("userrecaptcha", RC)
    claim = asyncio.create_task(queue.claim("w", 1, block_s=20))

    async def blocked() -> bool:
        return any(c.get("cmd") == "blpop" for c in await queue.client.client_list())

    for _ in range(500):
        if await blocked():
            break
        await asyncio.sleep(0.01)
    assert await blocked()  # the claimer waits on the wake marker while paused
    lifted = await queue.resume()
    assert [(p.reason, p.ref) for p in lifted] == [("longer", None)]
    claims = await asyncio.wait_for(claim, 5.0)  # woken by resume, not by its 20 s timeout
    assert [c.task.id for c in claims] == [task_id]
    assert not (await queue.pause_state()).paused
    assert await queue.resume() == []


async def test_the_breaker_and_the_operator_share_one_pause_path(queue: AsyncCaptchaQueue) -> None:
    keys = queue.keys
    breaker = breaker_of(queue)
    # The breaker's pause is what the operator sees, and the operator's resume lifts it.
    assert await breaker.trip(AccountError("ERROR_KEY_DOES_NOT_EXIST", "unknown key"))
    (seen,) = (await queue.pause_state()).accounts
    assert (seen.ref, seen.account, seen.key, seen.worker) == (REF, "main", "0123456789abcdef", "vm:1:a")
    assert seen.code == "ERROR_KEY_DOES_NOT_EXIST"
    assert (await queue.pause_state(REF)).accounts == (seen,)
    assert [p.ref for p in await queue.resume(account="main")] == [REF]  # by the account's name
    assert await queue.client.smembers(keys.paused_accounts) == set()
    assert await breaker.refresh() is None

    # The operator's pause of the account is the breaker's pause too, with the operator's code:
    # written by the same script, seen by the breaker, never lifted by a probe, kept over a trip.
    operator, started = await queue.pause("key rotation", account=REF, worker="ops")
    assert started
    assert await breaker.refresh() == operator
    assert operator.code == "OPERATOR"
    assert await queue.probe_turn(REF, 0.01) is None
    assert not await breaker.probe_once()
    assert not await breaker.trip(AccountError("ERROR_KEY_DOES_NOT_EXIST"))
    assert breaker.state == operator
    assert operator.since_ms is not None
    assert await queue.resume(REF, since_ms=operator.since_ms) == []  # a probe's lift: not the operator's
    assert [p.reason for p in await queue.resume(account="0123456789abcdef")] == ["key rotation"]

    # The breaker's timed pause is stored as the operator's is: until_ms and a key expiring then.
    await breaker.trip(AccountError("IP_BANNED", pause_s=30.0))
    timed = breaker.state
    assert timed is not None
    assert timed.since_ms is not None
    assert timed.until_ms == timed.since_ms + 30_000
    assert 0 < await queue.client.pttl(keys.account_paused(REF)) <= 30_000
    # A probe that worked lifts only the pause it probed, through the same lift script as resume.
    await breaker.trip(AccountError("ERROR_WRONG_USER_KEY"))  # open-ended replaces timed
    assert breaker.state is not None
    assert breaker.state.until_ms is None
    await asyncio.sleep(0.02)  # one probe interval
    assert await breaker.probe_once()
    assert await breaker.refresh() is None
    assert await queue.client.lrange(keys.wake, 0, -1) == [b"1"]


async def test_resume_arms_the_wake_marker_as_the_queue_scripts_do(queue: AsyncCaptchaQueue) -> None:
    keys = queue.keys
    await queue.client.set(keys.wake, "someone else's")  # another type: healed, as arm_wake does
    await queue.pause("p")
    assert [p.reason for p in await queue.resume()] == ["p"]
    assert await queue.client.lrange(keys.wake, 0, -1) == [b"1"]
    await queue.client.rpush(keys.wake, "1", "1")
    await queue.pause("p")
    await queue.resume()
    assert await queue.client.lrange(keys.wake, 0, -1) == [b"1"]  # one marker, never a pile


async def test_stored_pauses_are_read_by_one_parser(queue: AsyncCaptchaQueue) -> None:
    keys = queue.keys
    client = queue.client
    now_ms = await queue.server_time_ms()
    await client.hset(keys.paused, mapping={"reason": "r", "since_ms": "nan", "until_ms": "soon"})
    await client.hset(keys.account_paused("a"), mapping={"reason": "over", "until_ms": str(now_ms - 1)})
    await client.hset(keys.account_paused("b"), mapping={"code": "X", "until_ms": "1e999"})
    await client.sadd(keys.paused_accounts, "a", "b", "gone")
    state = await queue.pause_state()
    assert state.fleet is not None
    assert (state.fleet.since_ms, state.fleet.until_ms) == (None, None)  # unreadable: open-ended
    assert [(p.ref, p.reason, p.until_ms) for p in state.accounts] == [("b", "", None)]  # "a" is over
    lifted = await queue.resume()
    assert [p.ref for p in lifted] == [None, "b"]  # what was in force
    assert await client.smembers(keys.paused_accounts) == set()  # stale members tidied too


async def test_stats_claims_and_pause_state_read_the_operator_pause_alike(queue: AsyncCaptchaQueue) -> None:
    """``Stats.paused`` comes from the one parser: an unreadable end (NaN, -inf) is open-ended for the
    claim script, for pause_state and for stats alike (readStats once parsed it apart: not paused)."""
    keys = queue.keys
    await queue.submit("userrecaptcha", RC)
    now_ms = await queue.server_time_ms()
    stored: list[tuple[dict[str, str], str | None]] = [
        ({"reason": "r", "until_ms": "nan"}, "r"),
        ({"reason": "r", "until_ms": "-inf"}, "r"),
        ({"code": "X"}, "paused"),  # no reason: still a pause
        ({"reason": "over", "until_ms": str(now_ms - 1)}, None),
    ]
    for fields, paused in stored:
        await queue.client.delete(keys.paused)
        for name, value in fields.items():
            await queue.client.hset(keys.paused, name, value)
        fleet = (await queue.pause_state()).fleet
        assert (fleet is not None) == (paused is not None), fields
        assert (await queue.stats()).paused == paused, fields
        if paused is not None:
            assert await queue.claim("w", 1, block_s=0) == [], fields  # the claim script agrees
    await queue.client.delete(keys.paused)
    assert (await queue.stats()).paused is None


async def test_bad_arguments_are_refused_and_nothing_is_written(queue: AsyncCaptchaQueue) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: queue.pause(""),
        lambda: queue.pause("   "),
        lambda: queue.pause("x" * 501),
        lambda: queue.pause(None),  # type: ignore[arg-type]
        lambda: queue.pause("r", math.nan),
        lambda: queue.pause("r", math.inf),
        lambda: queue.pause("r", 0),
        lambda: queue.pause("r", -1),
        lambda: queue.pause("r", True),
        lambda: queue.pause("r", account="a b"),
        lambda: queue.pause("r", account="a}:x\n"),
        lambda: queue.pause("r", code="no spaces"),
        lambda: queue.pause("r", code=""),
        lambda: queue.pause("r", worker=""),
        lambda: queue.resume(account=""),
        lambda: queue.resume(account="*"),
        lambda: queue.resume(since_ms=1),  # a probe's lift names its account
        lambda: queue.resume(REF, since_ms=-1),
        lambda: queue.resume(REF, since_ms=1.5),  # type: ignore[arg-type]
        lambda: queue.pause_state("a b"),
        lambda: queue.probe_turn(REF, math.nan),
        lambda: queue.probe_turn(REF, 0),
        lambda: queue.probe_turn("", 1),
        lambda: queue.register_worker("", {}),
        lambda: queue.register_worker("w", {}, ttl_s=math.nan),
        lambda: queue.register_worker("w", {}, ttl_s=0),
        lambda: queue.register_worker("w", [1]),  # type: ignore[arg-type]
        lambda: queue.unregister_worker(""),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument):
            await call()
    assert await namespace_keys(queue) == []


async def test_the_scripts_check_key_types_before_writing(queue: AsyncCaptchaQueue) -> None:
    keys = queue.keys
    await queue.client.set(keys.paused_accounts, "someone else's")
    breaker = breaker_of(queue)
    with pytest.raises(RedisCommandError, match="WRONGTYPE"):
        await breaker.trip(AccountError("ERROR_KEY_DOES_NOT_EXIST"))
    assert not await queue.client.exists(keys.account_paused(REF))  # before: paused, then the error
    await queue.client.hset(keys.account_paused(REF), mapping={"reason": "r", "code": "C", "since_ms": "1"})
    with pytest.raises(RedisCommandError, match="WRONGTYPE"):
        await queue.resume()
    assert await queue.client.exists(keys.account_paused(REF))


async def test_workers_and_server_time(queue: AsyncCaptchaQueue) -> None:
    before = await queue.server_time_ms()
    assert await queue.register_worker("vm:1:a", {"host": "vm", "pid": 1}, ttl_s=30) == 1
    assert await queue.register_worker("vm:2:b", {"host": "vm", "pid": 2}) == 2
    await queue.client.zadd(queue.keys.workers, {"vm:2:b": before - 1000})  # its heartbeat lapsed
    await queue.client.hset(queue.keys.worker_info, "vm:2:b", "not json")
    (live,) = await queue.workers()
    assert (live.id, live.alive, live.info) == ("vm:1:a", True, {"host": "vm", "pid": 1})
    assert live.heartbeat_deadline_ms >= before + 30_000
    assert 0 < live.heartbeat_in_s <= 30
    everyone = await queue.workers(include_dead=True)
    assert [(w.id, w.alive, w.info) for w in everyone] == [
        ("vm:1:a", True, {"host": "vm", "pid": 1}),
        ("vm:2:b", False, {"raw": "not json"}),
    ]
    assert await queue.unregister_worker("vm:1:a") == 0
    assert await queue.workers() == []
    assert await queue.server_time_ms() >= before


def test_the_blocking_twin(redis_url: str, namespace: str) -> None:
    with CaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        pause, started = q.pause("sync", 10)
        assert started
        assert q.pause_state().fleet == pause
        assert q.probe_turn(REF, 1) is None
        assert [p.reason for p in q.resume()] == ["sync"]
        assert q.register_worker("w", {"pid": 1}) == 1
        assert [w.id for w in q.workers()] == ["w"]
        assert q.unregister_worker("w") == 0
        assert q.server_time_ms() > 0
        with pytest.raises(InvalidArgument):
            q.pause("r", math.nan)
