"""What every part of the queue shares: configuration, script calls, error translation, decoding.

``AsyncCaptchaQueue`` (queue.py) is assembled from ``WorkerAPI`` (worker_api.py) and ``AdminAPI``
(queue_admin.py), which both build on ``QueueCore`` here. Every state transition is one Lua script
called by SHA with exactly the keys its header names (built by ``Keys.named``) and the standard ARGV
prefix (``QueueCore._conf_args``); see lua/includes/args.lua.
"""

from __future__ import annotations

import logging
import math
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, ResponseError

from ..errors import CaptchaQueueError, InvalidArgument, RedisOutOfMemory, ScriptError
from ..models import Attempt, DeadLetter, Result, Task
from ..options import check_settings, setting
from ..store.connection import client_profile, redis_errors_async, refused_for_replicas
from ..store.keys import Keys
from ..store.scripts import Code, Scripts, load_scripts, raise_for_code

__all__ = [
    "QueueConfig",
    "QueueCore",
    "as_str",
    "check_seconds",
    "check_task_id",
    "decode_lenient",
]

log = logging.getLogger("captcha_queue.queue")
T = TypeVar("T")

_result_decoder = msgspec.json.Decoder(Result)
_task_decoder = msgspec.json.Decoder(Task)
_dead_decoder = msgspec.json.Decoder(DeadLetter)


class _LooseDeadLetter(msgspec.Struct):
    """A dead letter whose task does not fit ``Task`` (someone wrote it by hand)."""

    id: str
    reason: str
    dead_at: float
    task: Any = None
    raw: str | None = None
    history: list[Attempt] = []


_loose_dead_decoder = msgspec.json.Decoder(_LooseDeadLetter)


@dataclass(frozen=True)
class QueueConfig:
    """Settings of one queue object (all producers and workers of a namespace should agree). Each field
    is declared once with its meaning and bounds (``captcha_queue.options``); docs/queue.md's table of
    queue settings is generated from them."""

    result_ttl_s: float = setting(
        3600.0,
        help="How long a final result (and every other field of its task) is kept.",
        unit="s",
        min=0.0,
        min_open=True,
    )
    dead_ttl_s: float = setting(
        7 * 86400.0,
        help="How long a dead letter is kept for inspection and requeueing.",
        unit="s",
        min=0.0,
        min_open=True,
    )
    events_maxlen: int = setting(
        10_000, help="Approximate cap of the events stream that listen resumes from.", unit="entries", min=1
    )
    max_payload_bytes: int = setting(
        512 * 1024,
        help="Limit of one encoded task (params including image bodies, metadata, everything).",
        unit="bytes",
        min=1,
    )
    allow_unknown_methods: bool = setting(
        False, help="Let methods the method table does not know through (value types are still checked)."
    )
    maintenance_batch: int = setting(
        100,
        help="Entries of each kind the claim path reaps per call (expired leases, due retries, old results).",
        unit="entries",
        min=1,
    )
    submit_chunk: int = setting(
        1000,
        help="Tasks per submitTasks call; a larger submit_many is sent as several calls in one round trip.",
        unit="tasks",
        min=1,
    )
    max_queued: int | None = setting(
        None,
        help="The most tasks the queues may hold (backpressure): a submission that would go over raises "
        "QueueFull and writes nothing.",
        unit="tasks",
        min=1,
        default_text="no limit",
    )
    allow_private_targets: bool = setting(
        False,
        help="Accept pingback URLs whose host is a literal private, loopback, link-local, multicast or "
        "reserved address (refused by default: SSRF). Host names are checked by the deliverer.",
    )

    def __post_init__(self) -> None:
        check_settings(self)  # InvalidArgument (a ValueError) naming the field


def check_seconds(name: str, value: object) -> float:
    """``value`` as a finite number of seconds; InvalidArgument (naming ``name``) for NaN, an
    infinity or anything that is not a number (range checks are the caller's)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number of seconds, got {value!r}", field=name)
    return float(value)


def check_task_id(task_id: object) -> str:
    """``task_id`` if it can name a task; InvalidArgument (field ``task_id``) before anything reaches
    Redis for an empty id, a non-string, or text that is not valid UTF-8 (a lone surrogate, as
    ``surrogateescape`` makes from undecodable bytes). No length limit: an id read back from Redis
    (a hostile entry that was dead-lettered under its own id) must stay usable."""
    if not isinstance(task_id, str) or not task_id:
        raise InvalidArgument(
            f"task_id must be a non-empty string, got {reprlib.repr(task_id)}", field="task_id"
        )
    try:
        task_id.encode()
    except UnicodeEncodeError:
        raise InvalidArgument(f"task_id {task_id!a} is not valid UTF-8", field="task_id") from None
    return task_id


def decode_lenient(decoder: msgspec.json.Decoder[T], raw: Any) -> T:
    """Decode an entry read from Redis; invalid UTF-8 (written by someone else) is replaced, so the
    rest of the entry can still be read. Raises ValueError when it still cannot be decoded.

    Any decode failure of bytes falls back: msgspec < 0.23 raises UnicodeDecodeError for invalid
    UTF-8, 0.23 raises msgspec.DecodeError; both are ValueErrors."""
    try:
        return decoder.decode(raw)
    except ValueError:
        if not isinstance(raw, bytes):
            raise
        text = raw.decode("utf-8", errors="replace")
        if text.encode("utf-8") == raw:
            raise  # valid UTF-8 that is not a valid entry: the first error is the one to report
        return decoder.decode(text)


def decode_result(raw: Any, task_id: str) -> Result | None:
    """A stored Result, or None (logged) when the entry is absent or unreadable."""
    if raw is None:
        return None
    try:
        return decode_lenient(_result_decoder, raw)
    except (ValueError, RecursionError) as exc:
        log.warning("unreadable result for task %s skipped: %s", task_id, exc)
        return None


def as_str(value: Any) -> str:
    """A Redis reply (bytes without decode_responses) as str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class QueueCore:
    """The client, keys, scripts and configuration, and how scripts are called."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str = "captcha",
        config: QueueConfig | None = None,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.keys = Keys(namespace)
        self.config = config or QueueConfig()
        self.scripts: Scripts = load_scripts()
        self._owns_client = owns_client
        self._script_keys: dict[str, tuple[str, ...]] = {}
        self._conf_args: tuple[Any, ...] = (
            int(self.config.result_ttl_s * 1000),
            int(self.config.dead_ttl_s * 1000),
            self.config.events_maxlen,
            self.keys.channel,
            client_profile(client).publish_command,
        )

    @property
    def namespace(self) -> str:
        return self.keys.namespace

    def _keys_of(self, name: str) -> tuple[str, ...]:
        """The keys a queue script's header names, in its order (built once per script)."""
        keys = self._script_keys.get(name)
        if keys is None:
            keys = self._script_keys[name] = tuple(self.keys.named(k) for k in self.scripts[name].key_names)
        return keys

    async def _script(self, name: str, *args: Any, keys: Sequence[str] | None = None) -> Any:
        """Call one script by SHA (reloaded on NOSCRIPT); Redis errors become ours."""
        script = self.scripts[name]
        async with redis_errors_async(self.client):
            try:
                return await script(
                    self.client, self._keys_of(name) if keys is None else keys, (*self._conf_args, *args)
                )
            except ResponseError as exc:
                if refused_for_replicas(exc):
                    raise  # transient: redis_errors_async says so
                raise _script_failure(name, exc) from exc

    @staticmethod
    def _check(reply: Any, task_id: str) -> int:
        """The reply's code; refusals raised as typed errors."""
        code = int(reply[0])
        if code == Code.WRONG_TYPE:
            raise_for_code(code, task_id, as_str(reply[1]))
        raise_for_code(code, task_id)
        return code

    @staticmethod
    def _decode_result(raw: Any, task_id: str) -> Result | None:
        return decode_result(raw, task_id)

    @staticmethod
    def _decode_task(raw: Any) -> Task:
        return _task_decoder.decode(raw)

    @staticmethod
    def _decode_dead(raw: Any, task_id: str) -> DeadLetter | None:
        if raw is None:
            return None
        try:
            return decode_lenient(_dead_decoder, raw)
        except (ValueError, RecursionError):
            pass
        try:
            loose = decode_lenient(_loose_dead_decoder, raw)
            text = loose.raw if loose.raw is not None else msgspec.json.encode(loose.task).decode()
            return DeadLetter(
                id=loose.id, reason=loose.reason, dead_at=loose.dead_at, raw=text, history=loose.history
            )
        except (ValueError, RecursionError) as exc:
            # Keep what can be shown: the id and the raw text, so an operator can still see it.
            log.warning("unreadable dead letter for task %s: %s", task_id, exc)
            return DeadLetter(
                id=task_id, reason=f"unreadable dead letter: {exc}", dead_at=0.0, raw=as_str(raw)
            )

    async def aclose(self) -> None:
        """Close the client if this object created it."""
        if self._owns_client:
            await self.client.aclose()


def _script_failure(name: str, exc: ResponseError) -> CaptchaQueueError:
    """Our error for a script call Redis refused or that failed. Above maxmemory Redis refuses a
    script without the allow-oom flag whole, before it runs (scripts.py): RedisOutOfMemory."""
    if isinstance(exc, OutOfMemoryError):
        return RedisOutOfMemory(
            f"Redis is out of memory (maxmemory), script {name} refused: {_first_line(exc).rstrip('.')}"
        )
    return ScriptError(f"script {name} failed: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
