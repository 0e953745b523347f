"""Hostile values in a task's state (written into Redis by someone else): dead-lettered, never a
script error halfway.

Redis keeps the writes a script made before an error. A state whose numbers are NaN, inf or huge,
whose fields have the wrong types or nest tables, or whose status is unknown used to pass
``load_state`` and then make ``cjson.encode`` or the arithmetic fail after earlier pops and writes:
the other tasks of that claim became active with no owner and the bad one stayed "queued" in no
list. Now every script validates the whole state first; a bad entry is dead-lettered with a reason.
"""

from __future__ import annotations

import json
from typing import TypeVar

import pytest
import redis
from bench.chaos.state_faults import HOSTILE_VALUES, hostile_state_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captcha_queue import AsyncCaptchaQueue, CaptchaQueue, LeaseLost, TaskSpec
from captcha_queue.queue._core import as_str
from captcha_queue.store.keys import Keys
from captcha_queue.store.scripts import Code

from .helpers import RC

T = TypeVar("T")


def _present(value: T | None) -> T:
    assert value is not None
    return value


HOSTILE = HOSTILE_VALUES  # (what is wrong, state field, raw JSON text of its value)


async def _make_hostile(q: AsyncCaptchaQueue, task_id: str, field: str, value: str) -> str:
    """Rewrite one field of the stored state as raw JSON text (which json.dumps cannot write)."""
    text = hostile_state_json(json.loads(as_str(await q.client.hget(q.keys.state, task_id))), field, value)
    await q.client.hset(q.keys.state, task_id, text)
    return text


async def _assert_dead_lettered(q: AsyncCaptchaQueue, task_id: str, raw: str) -> None:
    letter = await q.dead_letter(task_id)
    assert letter is not None, "the hostile entry was not dead-lettered"
    assert letter.reason == "malformed state"
    assert letter.raw == raw
    result = await q.get_result(task_id)
    assert result is not None
    assert result.status == "error"
    assert result.error_code == "MALFORMED"
    assert await q.status(task_id) == "done"


@pytest.mark.parametrize(("label", "field", "value"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_a_hostile_queued_state_is_dead_lettered_and_the_claim_goes_through(
    queue: AsyncCaptchaQueue, label: str, field: str, value: str
) -> None:
    first, bad, last = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 3)
    raw = await _make_hostile(queue, bad, field, value)
    claims = await queue.claim("w", 3, block_s=0)  # used to raise ScriptError after two writes
    assert [c.task_id for c in claims] == [first, last]
    # Exactly the claimed tasks are active: none became active without an owner.
    active = {as_str(m) for m in await queue.client.zrange(queue.keys.active, 0, -1)}
    assert active == {first, last}
    await _assert_dead_lettered(queue, bad, raw)
    for claim in claims:
        result = await queue.complete(claim, "token")
        assert result.attempts == 1


@pytest.mark.parametrize(
    ("label", "field", "value"),
    [h for h in HOSTILE if h[1] in ("attempts", "max_attempts", "status", "extra")],
    ids=[h[0] for h in HOSTILE if h[1] in ("attempts", "max_attempts", "status", "extra")],
)
async def test_a_hostile_state_behind_an_expired_lease_is_reaped_not_kept(
    queue: AsyncCaptchaQueue, label: str, field: str, value: str
) -> None:
    bad, good = await queue.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    [claim] = await queue.claim("w", 1, lease_s=30, block_s=0)
    assert claim.task_id == bad
    raw = await _make_hostile(queue, bad, field, value)
    await queue.client.zadd(queue.keys.active, {bad: 0})  # its lease has run out
    # The holder's writes are refused (nothing it could fence on), and the reaper takes it.
    with pytest.raises(LeaseLost):
        await queue.complete(claim, "token")
    assert [c.task_id for c in await queue.claim("w2", 2, block_s=0)] == [good]
    await _assert_dead_lettered(queue, bad, raw)
    assert await queue.client.zscore(queue.keys.active, bad) is None


@pytest.mark.parametrize(
    ("label", "field", "value"),
    [h for h in HOSTILE if h[1] in ("attempts", "status", "result_ttl_ms", "history")],
    ids=[h[0] for h in HOSTILE if h[1] in ("attempts", "status", "result_ttl_ms", "history")],
)
async def test_a_hostile_state_of_a_due_retry_is_dead_lettered_not_dropped(
    queue: AsyncCaptchaQueue, label: str, field: str, value: str
) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    [claim] = await queue.claim("w", 1, block_s=0)
    assert await queue.fail(claim, "ERROR_X", retry_in_s=0.0) is None
    raw = await _make_hostile(queue, task_id, field, value)
    assert await queue.claim("w", 1, block_s=0) == []
    # Before: dropped from the delayed set alone, it stayed "delayed" forever, in no list.
    await _assert_dead_lettered(queue, task_id, raw)


@pytest.mark.parametrize(
    ("label", "field", "value"),
    [h for h in HOSTILE if h[1] in ("attempts", "status", "history", "result_ttl_ms")],
    ids=[h[0] for h in HOSTILE if h[1] in ("attempts", "status", "history", "result_ttl_ms")],
)
async def test_cancelling_a_task_with_a_hostile_state_ends_it_whole(
    queue: AsyncCaptchaQueue, label: str, field: str, value: str
) -> None:
    task_id = await queue.submit("userrecaptcha", RC)
    raw = await _make_hostile(queue, task_id, field, value)
    assert await queue.cancel(task_id) is False  # it ended as a dead letter, not as cancelled
    await _assert_dead_lettered(queue, task_id, raw)
    events = await queue.client.xrange(queue.keys.events)
    assert [as_str(_present(e[1])[b"id"]) for e in _present(events)] == [task_id]  # announced once


async def test_metadata_holding_inf_is_left_out_of_the_result_which_stays_readable(
    queue: AsyncCaptchaQueue,
) -> None:
    task_id = await queue.submit("userrecaptcha", RC, metadata={"n": 1})
    state = json.loads(as_str(await queue.client.hget(queue.keys.state, task_id)))
    state["metadata"] = '{"n": 1e999}'
    await queue.client.hset(queue.keys.state, task_id, json.dumps(state))
    [claim] = await queue.claim("w", 1, block_s=0)
    result = await queue.complete(claim, "token")
    assert result.metadata is None
    assert await queue.get_result(task_id) == result


async def test_hostile_wait_hints_are_ignored(queue: AsyncCaptchaQueue) -> None:
    """A retry due at inf and a pause ending at inf: the claim's wait hint says "none known" (-1)
    instead of an integer reply made from inf (-9223372036854775808 on x86)."""
    await queue.client.zadd(queue.keys.delayed, {"someone": float("inf")})
    await queue.client.hset(queue.keys.paused, mapping={"reason": "x", "until_ms": "inf"})
    reply = await queue._script("claimTasks", "w", 1, 30_000, "tok", 100)
    assert [int(reply[0]), int(reply[1])] == [Code.PAUSED, -1]  # no usable end: until resumed
    await queue.client.delete(queue.keys.paused)
    reply = await queue._script("claimTasks", "w", 1, 30_000, "tok", 100)
    assert [int(reply[0]), int(reply[1])] == [0, -1]
    task_id = await queue.submit("userrecaptcha", RC)
    assert [c.task_id for c in await queue.claim("w", 1, block_s=0)] == [task_id]


# -- any JSON value in any field ------------------------------------------------------------------

_json_leaf = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),  # json.dumps writes NaN and Infinity
    st.integers(-(2**80), 2**80),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_FIELDS = [
    "attempts", "max_attempts", "priority", "method", "submitted_ms", "result_ttl_ms", "expires_ms",
    "started_ms", "claimed_ms", "remote_id", "remote_ms", "token", "worker", "metadata", "history",
    "idem", "extra",
]  # fmt: skip


@pytest.mark.timeout(120)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(_FIELDS), value=_json_value)
def test_any_value_in_any_state_field_is_claimed_or_dead_lettered_never_half_done(
    sync_queue: CaptchaQueue, sync_redis: redis.Redis, field: str, value: object
) -> None:
    keys = Keys(sync_queue.namespace)
    sync_redis.delete(*keys.script_keys)
    hostile, good = sync_queue.submit_many([TaskSpec("userrecaptcha", RC)] * 2)
    state = json.loads(sync_redis.hget(keys.state, hostile))  # type: ignore[arg-type]
    sync_redis.hset(keys.state, hostile, json.dumps({**state, field: value}))
    claims = sync_queue.claim("w", 2, block_s=0)  # never raises
    claimed = {c.task_id: c for c in claims}
    assert good in claimed
    active = {as_str(m) for m in sync_redis.zrange(keys.active, 0, -1)}
    assert active == set(claimed)  # nothing active without an owner
    if hostile in claimed:
        done = sync_queue.complete(claimed[hostile], "token")
        assert done.status == "success"
    else:
        result = sync_queue.get_result(hostile)
        assert result is not None, f"{field}={value!r}: neither claimed nor finished"
        if result.status == "error":
            letter = sync_queue.dead_letter(hostile)
            assert letter is not None
            assert letter.reason == "malformed state"
        else:
            assert result.status == "expired"  # a valid deadline that has passed


@pytest.mark.parametrize("metadata", ["0", "[1, 2]", '"text"', "true", "null "])
def test_metadata_that_is_not_an_object_is_left_out_of_the_result(
    sync_queue: CaptchaQueue, sync_redis: redis.Redis, metadata: str
) -> None:
    # Found by the property test above: metadata "0" is valid JSON, so it went into the result as
    # `"metadata":0` and the finished task's result could not be read back (complete raised).
    keys = Keys(sync_queue.namespace)
    task_id = sync_queue.submit("userrecaptcha", RC, metadata={"order": 1})
    state = json.loads(as_str(sync_redis.hget(keys.state, task_id)))
    sync_redis.hset(keys.state, task_id, json.dumps({**state, "metadata": metadata}))
    [claim] = sync_queue.claim("w", 1, block_s=0)
    result = sync_queue.complete(claim, "token")
    assert result.status == "success"
    assert result.metadata is None
    stored = sync_queue.get_result(task_id)
    assert stored is not None
    assert stored.solution is not None
    assert stored.solution.text == "token"
