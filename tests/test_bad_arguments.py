"""Bad arguments to the library: a typed InvalidArgument, raised before anything is written.

NaN and infinities in every public number of seconds, malformed namespaces (a trailing newline
included) and account names that would collide with another account's keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, CaptchaQueueError, InvalidArgument
from captcha_queue.queue._core import QueueConfig
from captcha_queue.store.keys import Keys, validate_account, validate_namespace

from .helpers import RC

NON_FINITE = [float("nan"), float("inf"), float("-inf")]


async def snapshot(client: aioredis.Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of the namespace and its serialized value."""
    keys = [key async for key in client.scan_iter(match="{" + namespace + "}*")]
    return {key: await client.dump(key) for key in sorted(keys)}


def test_invalid_argument_is_ours_and_still_a_value_error() -> None:
    assert issubclass(InvalidArgument, CaptchaQueueError)
    assert issubclass(InvalidArgument, ValueError)  # what these checks raised before they were typed


# -- NaN and infinities -------------------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("bad", NON_FINITE)
async def test_non_finite_seconds_are_refused_and_nothing_is_written(
    queue: AsyncCaptchaQueue, redis_client: aioredis.Redis, namespace: str, bad: float
) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    (claim,) = await queue.claim("w", 1, block_s=0)
    before = await snapshot(redis_client, namespace)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "timeout_s": lambda: queue.wait_result(task_id, timeout_s=bad),
        "lease_s": lambda: queue.claim("w", 1, lease_s=bad, block_s=0),
        "block_s": lambda: queue.claim("w", 1, block_s=bad),
        "retry_in_s": lambda: queue.fail(claim, "ERROR_X", retry_in_s=bad),
    }
    for field, call in calls.items():
        with pytest.raises(InvalidArgument) as info:
            await call()
        assert info.value.field == field
    with pytest.raises(InvalidArgument, match="lease_s"):
        await queue.renew([claim], lease_s=bad)
    with pytest.raises(InvalidArgument, match="timeout_s"):
        queue.as_completed([task_id], timeout_s=bad)
    assert await snapshot(redis_client, namespace) == before
    assert await queue.status(task_id) == "active"  # the claim is untouched


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("name", ["result_ttl_s", "dead_ttl_s"])
def test_non_finite_ttls_are_refused(redis_client: aioredis.Redis, name: str, bad: float) -> None:
    with pytest.raises(InvalidArgument, match=name):
        QueueConfig(**{name: bad})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=name):
        AsyncCaptchaQueue(redis_client, **{name: bad})  # type: ignore[arg-type]


# -- namespaces and accounts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["ns\n", "ns\r\n", "\nns", "", "a b", "{ns}", "n" * 65, "ns\udcff", "névé", None, 7]
)
def test_a_bad_namespace_is_refused_with_a_typed_error(redis_client: aioredis.Redis, bad: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_namespace(bad)
    assert info.value.field == "namespace"
    with pytest.raises(InvalidArgument):
        Keys(bad)
    with pytest.raises(InvalidArgument):
        AsyncCaptchaQueue(redis_client, namespace=bad)


@pytest.mark.parametrize("good", ["captcha", "a", "prod:eu-1.v2_x", "n" * 64])
def test_good_namespaces_and_accounts_pass(good: str) -> None:
    assert validate_namespace(good) == good
    assert Keys(good).namespace == good
    account = good.replace(":", "-")
    assert validate_account(account) == account


@pytest.mark.parametrize("bad", ["a:limit", "a:owners", "a:b", "", "a b", "a\n", "a" * 65, "x\udcff", None])
async def test_a_bad_account_is_refused_before_redis(
    queue: AsyncCaptchaQueue, redis_client: aioredis.Redis, namespace: str, bad: Any
) -> None:
    keys = Keys(namespace)
    for key_of in (keys.slots, keys.slot_limit, keys.slot_owners):
        with pytest.raises(InvalidArgument) as info:
            key_of(bad)
        assert info.value.field == "account"
    with pytest.raises(InvalidArgument):
        await queue.stats(bad)
    assert await snapshot(redis_client, namespace) == {}


def test_an_account_cannot_name_another_accounts_keys() -> None:
    keys = Keys("ns")
    taken = {keys.slots("a"), keys.slot_limit("a"), keys.slot_owners("a")}
    # "a:limit" would have been account a's limit hash, "a:owners" its owners hash.
    for other in ("a:limit", "a:owners"):
        with pytest.raises(InvalidArgument):
            taken.add(keys.slots(other))
    assert len(taken) == 3


# -- task ids -------------------------------------------------------------------------------------

BAD_TASK_IDS: list[Any] = ["", "x\udcff", "\udcff", 7, None, b"abc"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("bad", BAD_TASK_IDS)
async def test_a_bad_task_id_is_refused_before_redis(
    queue: AsyncCaptchaQueue, redis_client: aioredis.Redis, namespace: str, bad: Any
) -> None:
    """A task id that is not a non-empty string Redis can store (a lone surrogate from a byte
    string decoded with surrogateescape, a number, bytes) is an InvalidArgument, never a
    UnicodeEncodeError from deep inside redis-py, on every call that takes one."""
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "get_result": lambda: queue.get_result(bad),
        "wait_result": lambda: queue.wait_result(bad, timeout_s=0.1),
        "status": lambda: queue.status(bad),
        "cancel": lambda: queue.cancel(bad),
        "dead_letter": lambda: queue.dead_letter(bad),
        "requeue": lambda: queue.requeue(bad),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidArgument) as info:
            await call()
        assert info.value.field == "task_id", name
    with pytest.raises(InvalidArgument):
        queue.as_completed([bad])
    assert await snapshot(redis_client, namespace) == {}


def test_a_bad_task_id_is_refused_by_the_sync_queue(sync_queue: Any) -> None:
    for bad in ("x\udcff", ""):
        with pytest.raises(InvalidArgument):
            sync_queue.get_result(bad)
        with pytest.raises(InvalidArgument):
            sync_queue.requeue(bad)
