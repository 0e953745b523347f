"""Bad input on purpose: malformed submissions, and corrupted entries written straight into Redis.

``malformed_submission`` draws one submission that must be refused with ``InvalidTask`` (a valid
base with one field broken: wrong types, huge strings, text that is not valid UTF-8, deep nesting,
reserved or unknown names). ``corrupt_entries`` writes entries the queue never wrote itself: queue
ids with no task, state JSON that is truncated or of the wrong shape, task bodies that are missing,
truncated, not UTF-8 or of the wrong shape. Each must end refused or dead-lettered with a reason.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis

from captcha_queue.errors import InvalidTask
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.keys import Keys

__all__ = ["CORRUPTIONS", "corrupt_entries", "malformed_submission", "malformed_submissions"]

_BASE_PARAMS: dict[str, Any] = {"googlekey": "6Le-fuzz", "pageurl": "https://fuzz.example/"}
_HUGE = 600 * 1024  # over the default 512 KiB payload limit


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


_BREAKERS: list[tuple[str, Callable[[random.Random], dict[str, Any]]]] = [
    (
        "method not a string",
        lambda r: {"method": r.choice([None, 42, 3.5, b"userrecaptcha", ["x"], {"m": 1}])},
    ),
    ("unknown method", lambda r: {"method": r.choice(["", "   ", "nope", "userrecaptcha2", "x" * 5000])}),
    ("params not a mapping", lambda r: {"params": r.choice([None, "googlekey=x", 7, ["googlekey"], b"x"])}),
    (
        "param of a wrong type",
        lambda r: {"params": {**_BASE_PARAMS, "extra": r.choice([None, True, [1], {"a": 1}, b"x", 1j])}},
    ),
    (
        "param name not a string",
        lambda r: {"params": {**_BASE_PARAMS, r.choice([1, None, (1, 2), b"k"]): "v"}},
    ),
    ("reserved param", lambda r: {"params": {**_BASE_PARAMS, r.choice(["key", "json", "method"]): "x"}}),
    ("missing required param", lambda r: {"params": {"pageurl": "https://fuzz.example/"}}),
    (
        "non-finite number",
        lambda r: {"params": {**_BASE_PARAMS, "min_score": r.choice([float("nan"), float("inf")])}},
    ),
    ("huge string", lambda r: {"params": {**_BASE_PARAMS, "pageurl": "https://fuzz.example/" + "a" * _HUGE}}),
    (
        "bad UTF-8 (lone surrogate)",
        lambda r: {
            "params": {**_BASE_PARAMS, "pageurl": "https://x/\udcff" + chr(0xD800 + r.randrange(0x800))}
        },
    ),
    ("deep nesting in metadata", lambda r: {"metadata": {"deep": _nested(r.choice([2000, 5000, 20000]))}}),
    (
        "metadata not JSON",
        lambda r: {"metadata": r.choice([{"s": {1, 2}}, {"o": object()}, {1: "int key"}, "text", [1]])},
    ),
    ("huge metadata", lambda r: {"metadata": {"blob": "m" * _HUGE}}),
    ("bad priority", lambda r: {"priority": r.choice(["urgent", "", None, 1, "HIGH"])}),
    ("bad max_attempts", lambda r: {"max_attempts": r.choice([0, -1, 101, 10**12, "3", 2.5, True, None])}),
    (
        "bad expires_in_s",
        lambda r: {"expires_in_s": r.choice([0, -5, float("nan"), float("inf"), "60", 10**12, True])},
    ),
    (
        "bad idempotency key",
        lambda r: {"idempotency_key": r.choice(["", "k" * 5000, 12, b"key", "bad\udcffkey"])},
    ),
]


def malformed_submission(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """(what is wrong, keyword arguments of ``submit``): always refused with InvalidTask."""
    name, breaker = rng.choice(_BREAKERS)
    kwargs: dict[str, Any] = {"method": "userrecaptcha", "params": dict(_BASE_PARAMS)}
    kwargs.update(breaker(rng))
    return name, kwargs


async def malformed_submissions(queue: AsyncCaptchaQueue, count: int, *, seed: int) -> tuple[int, int]:
    """Submit ``count`` malformed tasks; returns (refused with InvalidTask, accepted)."""
    rng = random.Random(seed)
    refused = accepted = 0
    for _ in range(count):
        _, kwargs = malformed_submission(rng)
        method, params = kwargs.pop("method"), kwargs.pop("params")
        try:
            await queue.submit(method, params, **kwargs)
        except InvalidTask:
            refused += 1
        else:
            accepted += 1
    return refused, accepted


def _state(now_ms: int) -> bytes:
    return msgspec.json.encode(
        {
            "status": "queued",
            "attempts": 0,
            "max_attempts": 3,
            "priority": "normal",
            "method": "userrecaptcha",
            "submitted_ms": now_ms,
        }
    )


def _task(task_id: str) -> bytes:
    return msgspec.json.encode(
        {
            "id": task_id,
            "method": "userrecaptcha",
            "params": _BASE_PARAMS,
            "priority": "normal",
            "max_attempts": 3,
        }
    )


def _truncate(rng: random.Random, blob: bytes) -> bytes:
    return blob[: rng.randrange(1, len(blob) - 1)]


# Each corruption: name -> writer(rng, task id, now ms) -> (task body or None, state or None).
_Entry = tuple[bytes | None, bytes | None]
CORRUPTIONS: dict[str, Callable[[random.Random, str, int], _Entry]] = {
    "queued id with no task": lambda r, i, now: (None, None),
    "truncated state JSON": lambda r, i, now: (_task(i), _truncate(r, _state(now))),
    "state of the wrong shape": lambda r, i, now: (
        _task(i),
        r.choice(
            [b"[]", b"42", b'"queued"', b"null", b'{"status": 5}', b'{"status":"queued","attempts":"0"}']
        ),
    ),
    "state not UTF-8": lambda r, i, now: (_task(i), b'{"status":"\xff\xfe queued"'),
    "task body missing": lambda r, i, now: (None, _state(now)),
    "truncated task JSON": lambda r, i, now: (_truncate(r, _task(i)), _state(now)),
    "task of the wrong shape": lambda r, i, now: (
        r.choice([b"[]", b'{"id": 1}', b'{"id":"%s","method":7,"params":[]}' % i.encode(), b'"text"']),
        _state(now),
    ),
    "task not UTF-8": lambda r, i, now: (b'{"id":"' + i.encode() + b'","method":"\xc3\x28"}', _state(now)),
    "task under another id": lambda r, i, now: (_task(uuid.uuid4().hex), _state(now)),
}


async def corrupt_entries(client: aioredis.Redis, keys: Keys, count: int, *, seed: int) -> dict[str, Any]:
    """Write ``count`` corrupted entries, each queued so a claimer meets it. Returns what was written."""
    rng = random.Random(seed)
    kinds = list(CORRUPTIONS)
    written: dict[str, int] = {}
    now_ms = int(time.time() * 1000)
    async with client.pipeline(transaction=False) as pipe:
        for n in range(count):
            kind = kinds[n % len(kinds)]
            task_id = "fuzz" + uuid.UUID(int=rng.getrandbits(128)).hex
            task, state = CORRUPTIONS[kind](rng, task_id, now_ms)
            if task is not None:
                pipe.hset(keys.tasks, task_id, task)
            if state is not None:
                pipe.hset(keys.state, task_id, state)
            pipe.rpush(keys.queue(rng.choice(["high", "normal", "low"])), task_id)
            written[kind] = written.get(kind, 0) + 1
            if n % 1000 == 999:
                await pipe.execute()
        await pipe.execute()
    # Wake a blocked claimer, as a submit would.
    await client.lpush(keys.wake, "1")
    return {"kinds": written, "dead_letterable": count}
