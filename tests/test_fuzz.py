"""Bad input on purpose: refused with a reason, never a crash or a hang.

* Hypothesis draws malformed submissions (wrong types, huge strings, text that is not valid UTF-8,
  deep nesting, reserved and unknown names), each a valid submission with one field broken: every
  one raises ``InvalidTask`` naming a field, alone or inside a batch, and Redis stays untouched.
* 10,000 corrupted entries written straight into Redis (queue ids with no task, truncated or
  wrongly shaped state and task JSON, bytes that are not UTF-8): every one is dead-lettered with a
  reason by the claim path, none is handed out, and the claimer neither raises nor spins.
* Keys of the wrong type: every API call answers with a typed error or a normal answer, and a
  worker process facing one stays alive and recovers once the key is repaired.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from bench.chaos.corrupt import CORRUPTIONS, corrupt_entries
from bench.chaos.harness import Rig
from bench.chaos.outcome import config_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captcha_queue.errors import CaptchaQueueError, InvalidTask
from captcha_queue.protocol.methods import KNOWN_METHODS
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.queue._sync import CaptchaQueue
from captcha_queue.store.keys import Keys

BASE: dict[str, Any] = {"googlekey": "6Le-fuzz", "pageurl": "https://fuzz.example/"}
LIMIT_BYTES = 512 * 1024

# -- the strategies -------------------------------------------------------------------------------

surrogates = st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=4)
bad_text = st.builds(lambda a, s, b: a + s + b, st.text(max_size=8), surrogates, st.text(max_size=8))
huge_size = st.integers(LIMIT_BYTES + 1, 2 * LIMIT_BYTES)
not_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.sets(st.integers(), max_size=2),
)


def _nested(depth: int, leaf: Any = "leaf") -> Any:
    value = leaf
    for n in range(depth):
        value = {"n": value} if n % 2 else [value]
    return value


class Case:
    """One malformed submission, built when used: a short repr keeps huge or deep values out of
    Hypothesis's reports (printing 50,000 levels of nesting would overflow its printer)."""

    def __init__(self, field: str, value: Any, label: str | None = None) -> None:
        self.field = field
        self.value = value
        self.label = label or repr(value)[:60]

    def __repr__(self) -> str:
        return f"Case({self.field}={self.label})"

    def kwargs(self) -> dict[str, Any]:
        value = self.value() if callable(self.value) and not isinstance(self.value, type) else self.value
        case: dict[str, Any] = {"method": "userrecaptcha", "params": dict(BASE)}
        if self.field.startswith("params."):
            case["params"][self.field.removeprefix("params.")] = value
        else:
            case[self.field] = value
        return case


def _case(field: str, value: Any) -> Case:
    return Case(field, value)


def _huge(field: str, size: int, wrap: Any = None) -> Case:
    def build() -> Any:
        text = "x" * size
        return wrap(text) if wrap else text

    return Case(field, build, f"<{size:,} characters>")


def _deep(depth: int) -> Case:
    return Case("metadata", lambda: {"deep": _nested(depth)}, f"<nested {depth:,} levels>")


unknown_method = st.text(max_size=30).filter(lambda m: m.strip() not in KNOWN_METHODS)
malformed = st.one_of(
    # method
    st.one_of(not_scalar, st.integers(), st.floats()).map(lambda v: _case("method", v)),
    unknown_method.map(lambda v: _case("method", v)),
    # params: the container, names, values
    st.one_of(not_scalar.filter(lambda v: not isinstance(v, dict)), st.text(max_size=5), st.integers()).map(
        lambda v: _case("params", v)
    ),
    st.one_of(st.integers(), st.none(), st.just(""), st.binary(min_size=1, max_size=4)).map(
        lambda k: _case("params", {**BASE, k: "v"})
    ),
    st.sampled_from(["key", "json", "method"]).map(lambda k: _case("params", {**BASE, k: "x"})),
    not_scalar.map(lambda v: _case("params.extra", v)),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]).map(lambda v: _case("params.min_score", v)),
    st.sampled_from(["googlekey", "pageurl"]).map(
        lambda k: _case("params", {n: v for n, v in BASE.items() if n != k})
    ),
    # huge strings and text that cannot be UTF-8
    huge_size.map(lambda n: _huge("params.pageurl", n)),
    huge_size.map(lambda n: _huge("metadata", n, lambda text: {"blob": text})),
    bad_text.map(lambda v: _case("params.pageurl", v)),
    bad_text.map(lambda v: _case("params", {**BASE, v: "value"})),
    bad_text.map(lambda v: _case("metadata", {"note": v})),
    bad_text.map(lambda v: _case("idempotency_key", v)),
    # deep nesting: far past the recursion limit (Hypothesis raises it while a test runs, and
    # the refusal comes from that limit, see test_metadata_nesting_has_an_explicit_limit)
    st.integers(20_000, 100_000).map(_deep),
    # the options
    st.one_of(not_scalar, st.text(max_size=6).filter(lambda p: p not in ("high", "normal", "low"))).map(
        lambda v: _case("priority", v)
    ),
    st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=101),
        st.floats(),
        st.text(max_size=3),
        st.booleans(),
        st.none(),
    ).map(lambda v: _case("max_attempts", v)),
    st.one_of(
        st.floats(max_value=0),
        st.floats(min_value=30 * 86400 + 1, allow_infinity=True),
        st.just(float("nan")),
        st.text(max_size=3),
        st.booleans(),
    ).map(lambda v: _case("expires_in_s", v)),
    st.one_of(
        st.just(""), st.integers(), st.binary(max_size=4), st.integers(257, 5000).map(lambda n: "k" * n)
    ).map(lambda v: _case("idempotency_key", v)),
    st.one_of(st.text(max_size=4), st.lists(st.integers(), max_size=2), st.integers()).map(
        lambda v: _case("metadata", v)
    ),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2).map(lambda v: _case("metadata", v)),
    not_scalar.filter(lambda v: isinstance(v, set | complex | bytes)).map(
        lambda v: _case("metadata", {"v": v})
    ),
)


_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def _nothing_written(client: redis.Redis, namespace: str) -> None:
    found = list(client.scan_iter(match="{" + namespace + "}*", count=1000))
    assert found == [], f"a refused submission wrote {found}"


@pytest.mark.timeout(120)
@_SETTINGS
@given(case=malformed)
def test_malformed_submission_is_refused_with_the_field(
    sync_queue: CaptchaQueue, sync_redis: redis.Redis, namespace: str, case: Case
) -> None:
    kwargs = case.kwargs()
    method, params = kwargs.pop("method"), kwargs.pop("params")
    with pytest.raises(InvalidTask) as caught:
        sync_queue.submit(method, params, **kwargs)
    assert caught.value.field, f"no field named for {str(caught.value)[:200]}"
    assert len(str(caught.value)) < 2000, "the message must not echo a huge input"
    _nothing_written(sync_redis, namespace)


@pytest.mark.timeout(120)
@_SETTINGS
@given(case=malformed, good=st.integers(0, 5), at=st.integers(0, 5))
def test_one_malformed_entry_refuses_the_whole_batch(
    sync_queue: CaptchaQueue,
    sync_redis: redis.Redis,
    namespace: str,
    case: dict[str, Any],
    good: int,
    at: int,
) -> None:
    batch: list[Any] = [{"method": "userrecaptcha", "params": dict(BASE)} for _ in range(good)]
    batch.insert(min(at, good), case)
    with pytest.raises(InvalidTask) as caught:
        sync_queue.submit_many(batch)
    assert f"task {min(at, good)} of the batch" in str(caught.value)
    _nothing_written(sync_redis, namespace)


@pytest.mark.parametrize(
    "entry",
    [None, 42, "userrecaptcha", ["userrecaptcha", BASE], {"method": "userrecaptcha"}, {"params": BASE}],
)
def test_batch_entries_that_are_not_tasks_are_refused(sync_queue: CaptchaQueue, entry: Any) -> None:
    with pytest.raises(InvalidTask):
        sync_queue.submit_many([entry])


def test_metadata_nesting_has_an_explicit_limit(sync_queue: CaptchaQueue) -> None:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        with pytest.raises(InvalidTask):
            sync_queue.submit("userrecaptcha", dict(BASE), metadata={"deep": _nested(1500)})
    finally:
        sys.setrecursionlimit(previous)


async def test_a_stored_task_nested_too_deep_is_dead_lettered(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    good = await q.submit("userrecaptcha", dict(BASE))
    task_id = "deep" + "0" * 28
    body = {"id": task_id, "method": "userrecaptcha", "params": BASE, "metadata": {"d": "@"}}
    deep_json = json.dumps(body).replace('"@"', "[" * 5000 + "]" * 5000)
    state = json.dumps(
        {"status": "queued", "attempts": 0, "max_attempts": 3, "priority": "normal",
         "method": "userrecaptcha", "submitted_ms": int(time.time() * 1000)}
    )  # fmt: skip
    await redis_client.hset(q.keys.tasks, task_id, deep_json)
    await redis_client.hset(q.keys.state, task_id, state)
    await redis_client.lpush(q.keys.queue("normal"), task_id)
    claims = await q.claim("w", 10, lease_s=30, block_s=0)
    assert [c.task_id for c in claims] == [good]
    letter = await q.dead_letter(task_id)
    assert letter is not None
    assert letter.reason.startswith("unreadable task")


# -- corrupted entries written straight into Redis -------------------------------------------------


@pytest.mark.timeout(120)
async def test_ten_thousand_corrupted_entries_are_each_dead_lettered_with_a_reason(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    written = await corrupt_entries(redis_client, q.keys, 10_000, seed=3)
    assert sum(written["kinds"].values()) == 10_000
    good = await q.submit_many([{"method": "userrecaptcha", "params": dict(BASE)} for _ in range(20)])
    handed_out: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        claims = await q.claim("fuzz-worker", 100, lease_s=60, block_s=0)
        if not claims and not await _queued(redis_client, q.keys):
            break
        handed_out += [c.task_id for c in claims]
    else:
        pytest.fail("the claimer did not get through the corrupted entries in time (a spin?)")
    # Only the valid tasks were handed out, every corrupted one ended in the dead-letter queue.
    assert sorted(handed_out) == sorted(good)
    letters = await q.dead_letters(limit=20_000)
    assert len(letters) == 10_000
    reasons: dict[str, int] = {}
    for letter in letters:
        assert letter.reason, f"dead letter {letter.id} without a reason"
        key = letter.reason.split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    assert set(reasons) <= {"no task", "malformed state", "unreadable task"}, reasons
    # Each dead-lettered task also has its final result, so a waiter is never left hanging.
    sample = [letter.id for letter in letters[:: len(letters) // 50]]
    for task_id in sample:
        result = await q.get_result(task_id)
        assert result is not None
        assert result.status == "error"
        assert result.error_code == "MALFORMED"
    stats = await q.stats()
    assert stats.queued_total == 0
    assert stats.in_flight == len(good)


async def _queued(client: aioredis.Redis, keys: Keys) -> int:
    return sum([int(await client.llen(keys.queue(p))) for p in ("high", "normal", "low")])


def test_every_corruption_kind_is_covered() -> None:
    assert len(CORRUPTIONS) >= 9


# -- keys of the wrong type -----------------------------------------------------------------------


_WRONG_VALUES = {"string": ("set", "x"), "list": ("rpush", "x"), "hash": ("hset", "f", "v")}


@pytest.mark.timeout(120)
async def test_keys_of_the_wrong_type_give_typed_errors_everywhere(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace)
    keys = q.keys
    targets = [*keys.script_keys, keys.worker_info]
    untyped: list[str] = []
    for key in targets:
        for kind, command in _WRONG_VALUES.items():
            await redis_client.delete(*targets)
            task_id = await q.submit("userrecaptcha", dict(BASE))
            current = await redis_client.type(key)
            if (current.decode() if isinstance(current, bytes) else current) == kind:
                continue
            await redis_client.delete(key)
            await getattr(redis_client, command[0])(key, *command[1:])
            for name, call in _api_calls(q, task_id):
                try:
                    await call()
                except CaptchaQueueError:
                    pass
                except Exception as exc:
                    untyped.append(f"{name} with {key} as a {kind}: {type(exc).__name__}: {exc}")
    await redis_client.delete(*targets)
    assert not untyped, "\n".join(untyped[:20])


def _api_calls(q: AsyncCaptchaQueue, task_id: str) -> list[tuple[str, Any]]:
    async def claim_and_finish() -> None:
        for claim in await q.claim("w", 5, lease_s=5, block_s=0):
            await q.renew([claim], lease_s=5)
            await q.record_remote(claim, "123")
            await q.complete(claim, "token")

    return [
        ("submit", lambda: q.submit("userrecaptcha", dict(BASE))),
        ("submit_many", lambda: q.submit_many([{"method": "userrecaptcha", "params": dict(BASE)}])),
        ("claim/renew/record/complete", claim_and_finish),
        ("get_result", lambda: q.get_result(task_id)),
        ("cancel", lambda: q.cancel(task_id)),
        ("stats", q.stats),
        ("dead_letters", q.dead_letters),
        ("requeue_all", q.requeue_all),
        ("reap", q.reap),
    ]


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_worker_facing_a_wrong_type_key_stays_up_and_recovers() -> None:
    async with Rig(config_for(10, workers=1, concurrency=10)) as rig:
        assert rig.raw is not None
        assert rig.queue is not None
        await rig.raw.set(rig.keys.tasks, "not a hash")
        with pytest.raises(CaptchaQueueError):
            await rig.queue.submit("userrecaptcha", dict(BASE))
        # Claims now fail inside the worker: it must neither die nor spin.
        cpu_before = _cpu_s(rig)
        await asyncio.sleep(2.0)  # a fixed observation window for CPU use, not a synchronisation
        assert not rig.check_crashes()
        assert _cpu_s(rig) - cpu_before < 1.0, "the worker spins on the broken key"
        await rig.raw.delete(rig.keys.tasks)
        await rig.submit(20)
        assert await rig.wait_all_final(30)
        assert not rig.check_crashes()


def _cpu_s(rig: Rig) -> float:
    proc = rig.slots[0].proc
    assert proc is not None
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0
