"""The account breaker and the worker registry against a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.errors import AccountError, TransientError
from captcha_queue.models import AccountInfo, Pause
from captcha_queue.queue._core import as_str
from captcha_queue.solvers import InstantSolver
from captcha_queue.store.connection import redis_errors_async
from captcha_queue.store.keys import Keys
from captcha_queue.worker.breaker import IP_BAN_PAUSE_S, AccountBreaker
from captcha_queue.worker.registry import WorkerRegistry, new_worker_id


class Account:
    """The account as the probe sees it: failing until ``healthy`` is set."""

    def __init__(self) -> None:
        self.healthy = False
        self.calls = 0

    async def info(self) -> AccountInfo:
        self.calls += 1
        if not self.healthy:
            raise AccountError("ERROR_KEY_DOES_NOT_EXIST", "the account has no threads")
        return AccountInfo(threads=5, working_threads=0)


def on(client: aioredis.Redis, ns: str) -> AsyncCaptchaQueue:
    """A queue over the test's client: the breaker reads and writes pauses through its admin API."""
    return AsyncCaptchaQueue(client, namespace=ns)


def breaker(
    client: aioredis.Redis,
    ns: str,
    account: Account,
    *,
    probe_every_s: float = 0.2,
    ip_ban_pause_s: float = IP_BAN_PAUSE_S,
) -> AccountBreaker:
    return AccountBreaker(
        on(client, ns), account.info, probe_every_s=probe_every_s, ip_ban_pause_s=ip_ban_pause_s
    )


async def account_pause(client: aioredis.Redis, ns: str, ref: str = "default") -> Pause | None:
    """The account's pause in force, as the admin API reads it."""
    accounts = (await on(client, ns).pause_state(ref)).accounts
    return accounts[0] if accounts else None


async def test_an_account_error_pauses_the_account_once(redis_client: aioredis.Redis, namespace: str) -> None:
    account = Account()
    changes: list[bool] = []
    first = AccountBreaker(on(redis_client, namespace), account.info, on_account_change=changes.append)
    second = breaker(redis_client, namespace, account)
    assert await first.trip(AccountError("ERROR_WRONG_USER_KEY", "key is not 32 characters"))
    assert not await second.trip(AccountError("ERROR_KEY_DOES_NOT_EXIST"))
    assert first.paused
    assert second.paused
    assert changes == [True]
    stored = await redis_client.hgetall(Keys(namespace).account_paused("default"))
    assert stored[b"code"] == b"ERROR_WRONG_USER_KEY"
    assert b"ERROR_WRONG_USER_KEY" in stored[b"reason"]
    assert b"until_ms" not in stored
    assert (await on(redis_client, namespace).pause_state()).fleet is None  # not the namespace's pause
    state = await account_pause(redis_client, namespace)
    assert state is not None
    assert state.until_ms is None
    assert second.state == state  # the second worker sees the first one's pause


async def test_ip_banned_pauses_for_a_while_then_ends_by_itself(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    account = Account()
    b = breaker(redis_client, namespace, account, ip_ban_pause_s=0.3)
    await b.trip(AccountError("IP_BANNED", "banned"))
    assert b.state is not None
    assert b.state.until_ms is not None
    assert b.state.until_ms - (b.state.since_ms or 0) == 300
    await asyncio.sleep(0.35)
    assert await account_pause(redis_client, namespace) is None
    await b.refresh()
    assert not b.paused
    # A solver-provided pause length wins over the default.
    await b.trip(AccountError("IP_BANNED", pause_s=10.0))
    assert b.state is not None
    assert b.state.until_ms is not None
    assert b.state.until_ms - (b.state.since_ms or 0) == 10_000


async def test_one_probe_per_interval_for_the_whole_fleet_and_success_resumes(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    account = Account()
    keys = Keys(namespace)
    fleet = [breaker(redis_client, namespace, account, probe_every_s=0.5) for _ in range(3)]
    await fleet[0].trip(AccountError("ERROR_KEY_DOES_NOT_EXIST"))
    await asyncio.sleep(0.55)
    assert [await b.probe_once() for b in fleet] == [False, False, False]
    assert account.calls == 1  # one turn, one probe
    assert await redis_client.exists(keys.account_paused("default"))
    account.healthy = True
    await asyncio.sleep(0.55)
    lifted = [await b.probe_once() for b in fleet]
    assert lifted == [True, False, False]
    assert not await redis_client.exists(keys.account_paused("default"))
    assert await redis_client.smembers(keys.paused_accounts) == set()
    assert await redis_client.lrange(keys.wake, 0, -1) == [b"1"]  # blocked claimers wake
    for b in fleet:
        await b.refresh()
        assert not b.paused


async def test_probe_loop_lifts_the_pause_with_the_solvers_account_info(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    solver = InstantSolver(threads=3)
    b = AccountBreaker(on(redis_client, namespace), solver.account_info, probe_every_s=0.1)
    loop = asyncio.create_task(b.run(), name="breaker")
    try:
        await b.trip(AccountError("ERROR_IP_NOT_ALLOWED"))
        await asyncio.wait_for(b.wait_resumed(), 5.0)
        assert await account_pause(redis_client, namespace) is None
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await solver.aclose()


async def test_an_operator_pause_is_only_lifted_by_resume(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    account = Account()
    account.healthy = True
    await redis_client.hset(
        keys.paused, mapping={"reason": "maintenance", "code": "OPERATOR", "since_ms": "1"}
    )
    b = breaker(redis_client, namespace, account, probe_every_s=0.01)
    await b.refresh()
    assert b.paused
    await asyncio.sleep(0.02)
    assert not await b.probe_once()
    assert account.calls == 0
    await redis_client.delete(keys.paused)  # `captcha-queue resume`
    await b.refresh()
    b = b  # mypy keeps `b.paused` narrowed to True across refresh() (python/mypy#11969): forget it
    assert not b.paused
    # An open-ended account pause replaces a timed one; a timed one never shortens an open one.
    await b.trip(AccountError("IP_BANNED", pause_s=60.0))
    await b.trip(AccountError("ERROR_WRONG_USER_KEY"))
    assert b.state is not None
    assert b.state.until_ms is None
    await b.trip(AccountError("IP_BANNED", pause_s=60.0))
    assert b.state is not None
    assert b.state.code == "ERROR_WRONG_USER_KEY"


async def test_inconclusive_probes_keep_the_pause(redis_client: aioredis.Redis, namespace: str) -> None:
    async def flaky() -> AccountInfo:
        raise TransientError("HTTP_502")

    async def no_threads() -> AccountInfo:
        return AccountInfo(threads=0)

    for probe in (flaky, no_threads):
        b = AccountBreaker(on(redis_client, namespace), probe, probe_every_s=0.01)
        await b.trip(AccountError("ERROR_KEY_DOES_NOT_EXIST"))
        await asyncio.sleep(0.02)
        assert not await b.probe_once()
        assert b.paused


async def test_registry_lists_live_workers_and_drops_the_dead(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = on(redis_client, namespace)
    alive = WorkerRegistry(q, new_worker_id(), ttl_s=30.0, concurrency=100, account="a")
    dying = WorkerRegistry(q, "host:1:dead", ttl_s=0.1)
    assert await alive.heartbeat(in_flight=7) == 1
    assert await dying.heartbeat(in_flight=0) == 2
    await asyncio.sleep(0.15)
    workers = await q.workers()
    assert [w.id for w in workers] == [alive.info.id]
    only = workers[0].info
    assert (only["pid"], only["in_flight"], only["concurrency"], only["account"]) == (
        os.getpid(),
        7,
        100,
        "a",
    )
    assert only["version"]
    assert workers[0].alive
    assert workers[0].heartbeat_deadline_ms
    everyone = await q.workers(include_dead=True)
    assert [(w.id, w.alive) for w in everyone] == [(alive.info.id, True), ("host:1:dead", False)]
    await alive.unregister()
    assert await q.workers() == []


async def test_a_pause_belongs_to_its_account_and_an_operator_pause_to_everyone(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    from captcha_queue.solvers.base import key_fingerprint

    keys = Keys(namespace)
    q = on(redis_client, namespace)
    account = Account()
    bad_key, good_key = "b" * 32, "g" * 32

    def of(key: str, worker: str) -> AccountBreaker:
        fp = key_fingerprint(key)
        return AccountBreaker(q, account.info, key_fingerprint=fp, worker_id=worker)

    bad, bad_peer, good = of(bad_key, "vm:1:a"), of(bad_key, "vm:2:b"), of(good_key, "vm:3:c")
    assert await bad.trip(AccountError("ERROR_KEY_DOES_NOT_EXIST"))
    for b in (bad_peer, good):
        await b.refresh()
    assert bad.paused
    assert bad_peer.paused  # every worker of the account (same name, same key)
    assert not good.paused  # same account name, another key: another account
    stored = await redis_client.hgetall(keys.account_paused(bad.ref))
    assert stored[b"worker"] == b"vm:1:a"
    assert stored[b"account"] == b"default"
    assert stored[b"key"] == key_fingerprint(bad_key).encode()
    assert bad_key not in "".join(as_str(v) for v in stored.values())
    assert await redis_client.smembers(keys.paused_accounts) == {bad.ref.encode()}
    # The operator's pause stops everyone; `resume` lifts both kinds.
    await q.pause("maintenance")
    good = good  # mypy keeps good.paused narrowed to False across refresh() (python/mypy#11969)
    await good.refresh()
    assert good.paused
    assert good.state is not None
    assert good.state.code == "OPERATOR"
    lifted = await q.resume()
    assert [(p.ref, p.code) for p in lifted] == [(None, "OPERATOR"), (bad.ref, "ERROR_KEY_DOES_NOT_EXIST")]
    for b in (bad, bad_peer, good):
        await b.refresh()
        assert not b.paused


async def test_a_timed_pause_is_not_probed_and_ends_by_itself(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    account = Account()
    account.healthy = True  # a probe would lift it at once: busy that did not clear is not an account error
    b = breaker(redis_client, namespace, account, probe_every_s=0.01)
    loop = asyncio.create_task(b.run(), name="breaker")
    try:
        await b.trip(AccountError("ERROR_ZERO_BALANCE", "no funds", pause_s=0.4))
        await asyncio.sleep(0.2)
        assert b.paused
        assert account.calls == 0
        await asyncio.sleep(0.25)
        await b.refresh()
        assert not b.paused
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_pause_scripts_refuse_bad_arguments_and_write_nothing(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    from captcha_queue.errors import RedisCommandError
    from captcha_queue.store.scripts import load_scripts

    keys = Keys(namespace)
    scripts = load_scripts()
    target = [keys.account_paused("a"), keys.paused_accounts]
    for args in (
        ["r", "CODE", "nan", "a", "keep"],
        ["r", "CODE", "-5", "a", "keep"],
        ["r", "CODE", "", "a", "keep", "worker"],  # a field without its value
        ["r", "CODE", "", "a"],  # no mode
        ["r", "CODE", "", "a", "sometimes"],  # not a mode
        ["", "CODE", "", "a", "keep"],  # no reason
    ):
        with pytest.raises(RedisCommandError, match="pauseFleet"):
            async with redis_errors_async(redis_client):
                await scripts.pauseFleet(redis_client, target, args)
    assert not await redis_client.exists(*target)


async def test_unreadable_pause_times_are_read_as_open_ended(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    account = Account()
    b = breaker(redis_client, namespace, account)
    await redis_client.hset(
        keys.account_paused("default"), mapping={"reason": "r", "since_ms": "nan", "until_ms": "soon"}
    )
    state = await b.refresh()  # before: ValueError, in the renew loop and the claim loop
    assert state is not None
    assert (state.since_ms, state.until_ms) == (None, None)
