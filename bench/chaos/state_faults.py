"""Scenarios 13 and 14: hostile values in Redis state, and Redis near ``maxmemory``.

13. Tasks whose state someone overwrote with values no script can use (NaN, inf, huge numbers,
    wrong types, nested tables, unknown statuses), planted among good tasks while workers run:
    queued, due for retry and behind expired leases. Each must be dead-lettered ("malformed state")
    and never reach the solver; every good task is solved once; no claim fails halfway, so no task
    is left active without an owner or in no list.
14. Producers fill a Redis with a small ``maxmemory`` while workers run: every refusal is a typed
    error naming exactly the ids that were written (Redis holds exactly the tasks the producers
    were told about), a retry of a refused batch with the same idempotency keys adds no duplicate,
    and every accepted task is still solved, above ``maxmemory`` too.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from captcha_queue.errors import SubmitRefused
from captcha_queue.models import TaskSpec
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.keys import Keys

from .checker import Expect
from .harness import Rig
from .outcome import Row, conclude, config_for, count_log_lines, summary, text

__all__ = ["HOSTILE_VALUES", "hostile_entries", "hostile_state", "near_maxmemory"]

#: (what is wrong, field of the state JSON, the raw JSON text of its value).
HOSTILE_VALUES: list[tuple[str, str, str]] = [
    ("attempts inf", "attempts", "1e999"),
    ("attempts NaN", "attempts", "NaN"),
    ("attempts huge", "attempts", "1e300"),
    ("attempts fractional", "attempts", "0.5"),
    ("attempts negative", "attempts", "-1"),
    ("attempts a string", "attempts", '"0"'),
    ("attempts a nested table", "attempts", '{"n": {"n": 1}}'),
    ("max_attempts inf", "max_attempts", "1e999"),
    ("max_attempts -inf", "max_attempts", "-inf"),
    ("max_attempts zero", "max_attempts", "0"),
    ("submitted_ms inf", "submitted_ms", "Infinity"),
    ("submitted_ms NaN", "submitted_ms", "nan"),
    ("result_ttl_ms NaN", "result_ttl_ms", "NaN"),
    ("expires_ms a string", "expires_ms", '"soon"'),
    ("started_ms huge", "started_ms", "1e300"),
    ("status zombie", "status", '"zombie"'),
    ("status a number", "status", "7"),
    ("priority unknown", "priority", '"urgent"'),
    ("method a list", "method", '["userrecaptcha"]'),
    ("remote_id a table", "remote_id", '{"id": 1}'),
    ("token a number", "token", "5"),
    ("metadata a table", "metadata", '{"a": 1}'),
    ("history an object", "history", '{"a": 1}'),
    ("history of numbers", "history", "[1, 2]"),
    ("history holding inf", "history", '[{"attempt": 1, "ended_at": 1e999}]'),
    ("an unknown field holding NaN", "extra", "NaN"),
    ("an unknown field nested with inf", "extra", '{"a": [{"b": -1e999}]}'),
]

_PLACES = ("queued", "delayed", "active")


def hostile_state_json(state: dict[str, Any], field: str, value: str) -> str:
    """``state`` as JSON with ``field`` set to the raw text ``value`` (which json.dumps cannot write)."""
    return json.dumps({**state, field: "@HOSTILE@"}).replace('"@HOSTILE@"', value)


async def hostile_entries(
    client: aioredis.Redis, keys: Keys, count: int, *, tag: str, seed: int
) -> dict[str, str]:
    """Write ``count`` tasks, each with one hostile state value, spread over queued, a retry due now
    and an expired lease. Returns task id -> the task key (``pageurl``) its task body carries."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    planted: dict[str, str] = {}
    async with client.pipeline(transaction=False) as pipe:
        for n in range(count):
            _, field, value = HOSTILE_VALUES[n % len(HOSTILE_VALUES)]
            place = _PLACES[(n // len(HOSTILE_VALUES)) % len(_PLACES)]
            task_id = "hostile" + uuid.UUID(int=rng.getrandbits(128)).hex[:25]
            key = f"https://chaos.example/{tag}/hostile/{n}"
            task = {
                "id": task_id,
                "method": "userrecaptcha",
                "params": {"googlekey": "6Le-chaos-sitekey", "pageurl": key},
                "submitted_at": now_ms / 1000,
            }
            state: dict[str, Any] = {
                "status": place,
                "attempts": 0,
                "max_attempts": 3,
                "priority": "normal",
                "method": "userrecaptcha",
                "submitted_ms": now_ms,
                "result_ttl_ms": 3_600_000,
            }
            if place == "active":
                state.update(token="gone:1", worker="nobody", claimed_ms=now_ms, started_ms=now_ms)
            pipe.hset(keys.tasks, task_id, json.dumps(task))
            pipe.hset(keys.state, task_id, hostile_state_json(state, field, value))
            if place == "queued":
                pipe.rpush(keys.queue("normal"), task_id)
            else:
                pipe.zadd(keys.delayed if place == "delayed" else keys.active, {task_id: 0})
            planted[task_id] = key
        await pipe.execute()
    await client.lpush(keys.wake, "1")
    return planted


# -- 13. hostile state values -----------------------------------------------------------------------


async def hostile_state(
    *,
    tasks: int = 2000,
    hostile: int = 810,
    time_scale: float = 0.01,
    solver_limit: int = 50,
    timeout_s: float = 180.0,
) -> Row:
    """Hostile state values among good tasks, workers running: dead-lettered, never half-claimed."""
    started = time.monotonic()
    config = config_for(solver_limit, workers=2, concurrency=solver_limit, time_scale=time_scale)
    async with Rig(config) as rig:
        assert rig.raw is not None
        assert rig.queue is not None
        await rig.submit(tasks // 2)
        rig.start_sampler()
        planted = await hostile_entries(rig.raw, rig.keys, hostile, tag=config.namespace, seed=13)
        rig.note(f"{len(planted)} hostile states planted")
        await rig.submit(tasks - tasks // 2, tag="after")

        async def settled() -> bool:
            assert rig.raw is not None
            return int(await rig.raw.hlen(rig.keys.results)) >= len(rig.submitted) + len(planted)

        done = await rig.wait_until(settled, timeout_s, poll_s=0.2)
        letters = {d.id: d for d in await rig.queue.dead_letters(limit=hostile + tasks + 100)}
        missed = [t for t in planted if t not in letters or letters[t].reason != "malformed state"]
        good_dead = sorted(set(letters) - set(planted))
        states = await rig.raw.hmget(rig.keys.state, list(planted)) if planted else []
        not_done = sum(1 for raw in states if raw is None or b'"status":"done"' not in raw)
        leftovers = {
            "queued": sum([int(await rig.raw.llen(rig.keys.queue(p))) for p in ("high", "normal", "low")]),
            "active": int(await rig.raw.zcard(rig.keys.active)),
            "delayed": int(await rig.raw.zcard(rig.keys.delayed)),
        }
        sim = await rig.sim_stats()
        hostile_keys = set(planted.values())
        reached = sum(n for k, n in sim.get("submits_by_task", {}).items() if k in hostile_keys)
        claim_errors = sum(
            count_log_lines(rig, slot.index, ("claim failed", "claim impossible", "script claimTasks failed"))
            for slot in rig.slots
        )
        extra = [] if done else ["timed out"]
        if missed:
            extra.append(f"{len(missed)} hostile entries not dead-lettered as 'malformed state'")
        if good_dead:
            extra.append(f"{len(good_dead)} good tasks dead-lettered")
        if not_done:
            extra.append(f"{not_done} hostile entries not finished (kept forever)")
        if any(leftovers.values()):
            extra.append(f"entries left behind: {leftovers}")
        if reached:
            extra.append(f"{reached} solver submits of hostile tasks")
        if claim_errors:
            extra.append(f"{claim_errors} claim errors in the worker logs")
        row, report = await conclude(
            rig,
            13,
            "Hostile state values",
            f"{tasks:,} tasks + {hostile:,} states holding NaN, inf, huge numbers, wrong types, "
            "nested tables, unknown statuses",
            Expect(max_error=0),
            started=started,
            extra_violations=extra,
            details={
                "hostile": len(planted),
                "dead_lettered": len(planted) - len(missed),
                "claim_errors": claim_errors,
                "leftovers": leftovers,
                "hostile_submits": reached,
            },
        )
        row.figure = (
            f"{len(planted) - len(missed)}/{len(planted)} hostile entries dead-lettered 'malformed state' "
            f"({len(HOSTILE_VALUES)} kinds, queued / due retry / expired lease), {reached} reached the "
            f"solver, {claim_errors} claim errors, left behind: {sum(leftovers.values())}; "
            f"good tasks: {report.by_status.get('success', 0)}/{report.tasks} solved; {summary(report)}"
        )
        return row


# -- 14. Redis near maxmemory -----------------------------------------------------------------------


async def near_maxmemory(
    *,
    maxmemory_mb: int = 64,
    pad_bytes: int = 16_000,
    batch: int = 200,
    chunk: int = 50,
    producers: int = 2,
    time_scale: float = 0.01,
    solver_limit: int = 50,
    timeout_s: float = 240.0,
) -> Row:
    """Producers fill Redis to maxmemory while workers run: exact refusals, everything accepted solved."""
    started = time.monotonic()
    limit_bytes = maxmemory_mb * 1024 * 1024
    config = config_for(
        solver_limit,
        workers=2,
        concurrency=solver_limit,
        time_scale=time_scale,
        redis_args=("--maxmemory", str(limit_bytes), "--maxmemory-policy", "noeviction"),
    )
    async with Rig(config) as rig:
        assert rig.raw is not None
        rig.start_sampler()
        outcomes: list[dict[str, Any]] = []
        queues = [
            AsyncCaptchaQueue.from_url(rig.redis.url, namespace=config.namespace) for _ in range(producers)
        ]
        try:
            for q in queues:  # several chunks per batch, so a batch can be cut between two chunks
                q.config = type(q.config)(submit_chunk=chunk)
            await asyncio.gather(
                *(_fill(rig, q, n, batch, pad_bytes, outcomes) for n, q in enumerate(queues)),
            )
        finally:
            for q in queues:
                await q.aclose()
        refused = [o for o in outcomes if o["refused"]]
        rig.note(f"{len(rig.submitted)} accepted, {len(refused)} refusals")
        # Redis holds exactly the tasks the producers were told were accepted.
        stored = {text(k) for k in await rig.raw.hkeys(rig.keys.tasks)}
        unknown = stored - set(rig.submitted)
        missing = set(rig.submitted) - stored
        keyed = [text(k) for k in await rig.raw.hkeys(rig.keys.idempotency)]
        # The producers stopped short of maxmemory (their headroom check); now put Redis above it,
        # as when an operator lowers it or other data fills the instance: what is in flight and
        # queued must still finish, while a new submission is refused whole.
        used = int((await rig.raw.info("memory"))["used_memory"])
        lowered = max(1, used - 2**20)
        await rig.raw.config_set("maxmemory", lowered)
        finished_before = await rig.finished_count()
        rig.note(f"maxmemory lowered to {lowered:,} bytes, {used:,} in use")
        assert rig.queue is not None
        try:
            await rig.queue.submit(
                "userrecaptcha", {"googlekey": "6Le-chaos-sitekey", "pageurl": "https://x/"}
            )
            late_refusal = "accepted"
        except SubmitRefused as exc:
            late_refusal = type(exc).__name__ if not exc.accepted else "partly accepted"
        done = await rig.wait_all_final(timeout_s)
        finished_above = await rig.finished_count() - finished_before
        memory = await rig.raw.info("memory")
        still_above = int(memory["used_memory"]) > lowered
        peak = int(memory.get("used_memory_peak", 0))
        extra = [] if done else ["timed out"]
        if not refused:
            extra.append("Redis never refused a submission (maxmemory not reached)")
        if late_refusal != "RedisOutOfMemory":
            extra.append(f"a submission above maxmemory was not refused whole: {late_refusal}")
        if not still_above:
            extra.append("Redis was not above maxmemory while the last tasks finished")
        if unknown:
            extra.append(f"{len(unknown)} tasks in Redis that no producer was told about")
        if missing:
            extra.append(f"{len(missing)} accepted tasks missing from Redis")
        if len(keyed) != len(set(keyed)) or len(stored) != len(keyed):
            extra.append(f"{len(stored)} tasks for {len(keyed)} idempotency keys: a retry duplicated")
        bad_retries = [o for o in outcomes if o.get("retry_mismatch")]
        if bad_retries:
            extra.append(f"{len(bad_retries)} retries answered other ids for entries already accepted")
        untyped = [o for o in outcomes if o.get("error")]
        if untyped:
            extra.append(f"untyped submit errors: {untyped[0]['error']}")
        mid_batch = sum(1 for o in refused if 0 < o["accepted"] < o["size"])
        row, report = await conclude(
            rig,
            14,
            "Redis near maxmemory",
            f"{producers} producers x batches of {batch} ({pad_bytes // 1000} kB tasks, chunks of {chunk}) "
            f"into maxmemory {maxmemory_mb} MiB",
            Expect(max_error=0),
            started=started,
            extra_violations=extra,
            details={
                "accepted": len(rig.submitted),
                "refusals": len(refused),
                "refused_mid_batch": mid_batch,
                "refusal_kinds": sorted({o["kind"] for o in refused}),
                "peak_mb": round(peak / 2**20, 1),
                "finished_above_maxmemory": finished_above,
                "unknown": len(unknown),
                "missing": len(missing),
            },
        )
        row.figure = (
            f"{len(rig.submitted):,} tasks accepted; {len(refused)} refusals "
            f"({', '.join(sorted({o['kind'] for o in refused}))}), {mid_batch} of them between two chunks, "
            f"each naming exactly the ids written: {len(unknown)} unknown, {len(missing)} missing, "
            f"0 duplicated by retries; then maxmemory lowered below use: {finished_above:,} tasks "
            f"finished above it, a new submit refused whole; "
            f"{report.by_status.get('success', 0)}/{report.tasks} solved; "
            f"{summary(report)}"
        )
        return row


async def _fill(
    rig: Rig, q: AsyncCaptchaQueue, producer: int, batch: int, pad_bytes: int, outcomes: list[dict[str, Any]]
) -> None:
    """Submit batches until two are refused; each refused batch is retried once with the same keys
    (which must answer the same ids for the entries already written, and add no duplicate)."""
    refusals = 0
    for n in range(10_000):
        specs, keys = _batch(rig.config.namespace, producer, n, batch, pad_bytes)
        previous: dict[int, str] = {}
        for attempt in (1, 2):
            outcome: dict[str, Any] = {"producer": producer, "batch": n, "attempt": attempt, "size": batch}
            try:
                accepted = dict(enumerate(await q.submit_many(specs)))
                outcome.update(refused=False, accepted=batch)
            except SubmitRefused as exc:
                accepted = exc.accepted
                outcome.update(refused=True, kind=type(exc).__name__, accepted=len(accepted))
            except Exception as exc:  # anything else is a violation, reported by the scenario
                accepted = {}
                outcome.update(refused=True, kind=type(exc).__name__, accepted=0, error=repr(exc)[:300])
            if any(previous.get(i, task_id) != task_id for i, task_id in accepted.items()):
                outcome["retry_mismatch"] = True
            for index, task_id in accepted.items():
                rig.submitted[task_id] = keys[index]
            previous = accepted
            outcomes.append(outcome)
            if not outcome["refused"]:
                break
        if outcomes[-1]["refused"]:
            refusals += 1
            if refusals >= 2:
                return


def _batch(tag: str, producer: int, n: int, size: int, pad_bytes: int) -> tuple[list[TaskSpec], list[str]]:
    specs: list[TaskSpec] = []
    keys: list[str] = []
    for i in range(size):
        key = f"https://chaos.example/{tag}/p{producer}/{n}/{i}"
        params: dict[str, str | int | float] = {
            "googlekey": "6Le-chaos-sitekey",
            "pageurl": key,
            "x_pad": "p" * pad_bytes,  # an image body's worth of bytes
        }
        specs.append(TaskSpec("userrecaptcha", params, idempotency_key=key))
        keys.append(key)
    return specs, keys
