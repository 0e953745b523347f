"""Validating and encoding submissions, before anything reaches Redis.

Every check runs here, in the caller's process: an ``InvalidTask`` (naming the field) means Redis
was not touched. What leaves is one ``PreparedTask`` per task: its id and the two JSON documents the
submitTasks script stores (each without its closing brace: the script appends the times it takes
from the Redis clock).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import InvalidTask
from ..models import PRIORITIES, Task, TaskSpec
from ..protocol.methods import normalize
from ..protocol.pingback import check_pingback, check_pingback_format

__all__ = [
    "MAX_ATTEMPTS_LIMIT",
    "MAX_EXPIRES_IN_S",
    "MAX_IDEMPOTENCY_KEY_CHARS",
    "PreparedTask",
    "check_minted_id",
    "idempotency_digest",
    "new_ids",
    "prepare",
    "prepare_entry",
    "state_open",
]

MAX_ATTEMPTS_LIMIT = 100
MAX_EXPIRES_IN_S = 30 * 86400.0
MAX_IDEMPOTENCY_KEY_CHARS = 256

_SPEC_FIELDS = frozenset(TaskSpec.__struct_fields__)
_encoder = msgspec.json.Encoder()
_sorted_encoder = msgspec.json.Encoder(order="sorted")
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError)


@dataclass(frozen=True, slots=True)
class PreparedTask:
    """One validated task, encoded for the submitTasks script."""

    id: str
    priority: str
    idempotency_key: str
    digest: str
    expires_in_ms: str
    task_open: bytes
    state_open: bytes

    def script_args(self) -> tuple[str, str, str, str, str, bytes, bytes]:
        return (
            self.id,
            self.priority,
            self.idempotency_key,
            self.digest,
            self.expires_in_ms,
            self.task_open,
            self.state_open,
        )


def new_ids(n: int) -> list[str]:
    """``n`` random task ids: uuid4 as 32 hex digits, made in bulk (one urandom call for the batch)."""
    raw = bytearray(os.urandom(16 * n))
    for offset in range(0, 16 * n, 16):
        raw[offset + 6] = (raw[offset + 6] & 0x0F) | 0x40  # version 4
        raw[offset + 8] = (raw[offset + 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = raw.hex()
    return [digits[i : i + 32] for i in range(0, 32 * n, 32)]


_TASK_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def check_minted_id(task_id: object) -> str:
    """A caller-minted task id: 1-64 letters, digits, ``_.:-``; InvalidTask otherwise."""
    if not isinstance(task_id, str) or not _TASK_ID_RE.fullmatch(task_id):
        raise InvalidTask("task_id must be 1-64 letters, digits, '_', '.', ':', '-'", field="task_id")
    return task_id


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_priority(priority: object) -> str:
    if not isinstance(priority, str) or priority not in PRIORITIES:
        raise InvalidTask(
            f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}", field="priority"
        )
    return priority


def _check_max_attempts(max_attempts: object) -> int:
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool):
        raise InvalidTask(f"max_attempts must be an integer, got {max_attempts!r}", field="max_attempts")
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise InvalidTask(
            f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {max_attempts}",
            field="max_attempts",
        )
    return max_attempts


def _check_expires_in(expires_in_s: object) -> str:
    if expires_in_s is None:
        return ""
    if not _is_number(expires_in_s) or not math.isfinite(expires_in_s):  # type: ignore[arg-type]
        raise InvalidTask(f"expires_in_s must be a number, got {expires_in_s!r}", field="expires_in_s")
    assert isinstance(expires_in_s, int | float)
    if not 0 < expires_in_s <= MAX_EXPIRES_IN_S:
        raise InvalidTask(
            f"expires_in_s must be above 0 and at most {MAX_EXPIRES_IN_S:.0f}, got {expires_in_s}",
            field="expires_in_s",
        )
    return str(max(1, round(expires_in_s * 1000)))


def _check_idempotency_key(key: object) -> str:
    if key is None:
        return ""
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidTask(
            f"idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters",
            field="idempotency_key",
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidTask("idempotency_key is not valid text", field="idempotency_key") from exc
    return key


#: How deep metadata may nest. Explicit, so what one producer stores every worker can decode
#: (it does not depend on either side's Python recursion limit).
MAX_METADATA_DEPTH = 32


def _depth_exceeds(value: object, limit: int) -> bool:
    """True when ``value`` nests dicts/lists more than ``limit`` levels deep (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _encode_metadata(metadata: object) -> bytes | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise InvalidTask("metadata must be a dict with string keys", field="metadata")
    if _depth_exceeds(metadata, MAX_METADATA_DEPTH):
        raise InvalidTask(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels", field="metadata")
    try:
        encoded = _encoder.encode(metadata)
        # Only JSON types: msgspec would quietly turn a set or a tuple into a list, NaN into null,
        # an int key into a string. What comes back must be what was given.
        same = msgspec.json.decode(encoded) == metadata
    except _ENCODE_ERRORS as exc:
        raise InvalidTask(f"metadata is not JSON-encodable: {exc}", field="metadata") from exc
    if not same:
        raise InvalidTask(
            "metadata must hold only JSON types (dict with str keys, list, str, int, float, bool, None)",
            field="metadata",
        )
    return encoded


def idempotency_digest(task: Task) -> str:
    """What an idempotency key promises stays the same: the task's method, params and priority
    (after aliases are applied, params in name order). Stored with the task; a later submission
    under the same key with another digest is an IdempotencyConflict."""
    canonical = _sorted_encoder.encode([task.method, task.params, task.priority])
    return hashlib.sha256(canonical).hexdigest()[:32]


def state_open(task: Task, metadata_json: bytes | None, digest: str | None = None) -> bytes:
    """The initial state JSON of a task without its closing brace (see lua/includes/state.lua)."""
    state: dict[str, Any] = {
        "status": "queued",
        "attempts": 0,
        "max_attempts": task.max_attempts,
        "priority": task.priority,
        "method": task.method,
    }
    if task.idempotency_key is not None:
        state["idem"] = task.idempotency_key
        state["idem_digest"] = digest or idempotency_digest(task)
    if metadata_json is not None:
        state["metadata"] = metadata_json.decode("utf-8")
    if task.pingback is not None:
        state["pingback"] = task.pingback
        if task.pingback_format is not None:
            state["pingback_format"] = task.pingback_format
    return _encoder.encode(state)[:-1]


def _check_pingback(
    pingback: object, pingback_format: object, allow_private: bool
) -> tuple[str | None, str | None]:
    """The target and format to store: (None, None) without a pingback; the format is stored only
    when it is not the default ("form")."""
    checked_format = check_pingback_format(pingback_format)
    if pingback is None:
        return None, None
    return check_pingback(pingback, allow_private=allow_private), (
        None if checked_format == "form" else checked_format
    )


def prepare(
    method: str,
    params: Mapping[str, object],
    *,
    priority: object = "normal",
    idempotency_key: object = None,
    max_attempts: object = 3,
    expires_in_s: object = None,
    metadata: object = None,
    pingback: object = None,
    pingback_format: object = "form",
    max_payload_bytes: int,
    allow_unknown: bool = False,
    allow_private_targets: bool = False,
    task_id: str | None = None,
) -> PreparedTask:
    """Validate one submission and encode it; raises InvalidTask naming the field."""
    checked_priority = _check_priority(priority)
    checked_attempts = _check_max_attempts(max_attempts)
    expires_in_ms = _check_expires_in(expires_in_s)
    key = _check_idempotency_key(idempotency_key)
    metadata_json = _encode_metadata(metadata)
    target, target_format = _check_pingback(pingback, pingback_format, allow_private_targets)
    wire_method, clean = normalize(method, params, allow_unknown=allow_unknown)
    task = Task(
        id=task_id or new_ids(1)[0],
        method=wire_method,
        params=clean,
        priority=checked_priority,  # type: ignore[arg-type]
        max_attempts=checked_attempts,
        metadata=metadata,  # type: ignore[arg-type]
        idempotency_key=key or None,
        pingback=target,
        pingback_format=target_format,
    )
    try:
        encoded = _encoder.encode(task)
    except _ENCODE_ERRORS as exc:
        raise InvalidTask(f"params are not encodable: {exc}", field="params") from exc
    if len(encoded) > max_payload_bytes:
        raise InvalidTask(
            f"the task is {len(encoded)} bytes encoded, over the limit of {max_payload_bytes}",
            field="params",
        )
    digest = idempotency_digest(task) if key else ""
    return PreparedTask(
        id=task.id,
        priority=checked_priority,
        idempotency_key=key,
        digest=digest,
        expires_in_ms=expires_in_ms,
        task_open=encoded[:-1],
        state_open=state_open(task, metadata_json, digest),
    )


def prepare_entry(
    entry: TaskSpec | Mapping[str, Any],
    index: int,
    *,
    max_payload_bytes: int,
    allow_unknown: bool,
    allow_private_targets: bool = False,
    task_id: str | None = None,
) -> PreparedTask:
    """One entry of submit_many (a TaskSpec or a mapping with the same names)."""
    if isinstance(entry, TaskSpec):
        try:
            return prepare(
                entry.method,
                entry.params,
                priority=entry.priority,
                idempotency_key=entry.idempotency_key,
                max_attempts=entry.max_attempts,
                expires_in_s=entry.expires_in_s,
                metadata=entry.metadata,
                pingback=entry.pingback,
                pingback_format=entry.pingback_format,
                max_payload_bytes=max_payload_bytes,
                allow_unknown=allow_unknown,
                allow_private_targets=allow_private_targets,
                task_id=task_id,
            )
        except InvalidTask as exc:
            raise InvalidTask(f"task {index} of the batch: {exc}", field=exc.field) from exc
    if isinstance(entry, Mapping):
        unknown = sorted(str(k) for k in entry if k not in _SPEC_FIELDS)
        if unknown:
            raise InvalidTask(f"task {index} of the batch: unknown field {unknown[0]!r}", field=unknown[0])
        if "method" not in entry or "params" not in entry:
            missing = "method" if "method" not in entry else "params"
            raise InvalidTask(f"task {index} of the batch: {missing} is required", field=missing)
        fields = entry
    else:
        raise InvalidTask(f"task {index} of the batch is not a TaskSpec or a mapping", field="tasks")
    try:
        return prepare(
            fields["method"],
            fields["params"],
            priority=fields.get("priority", "normal"),
            idempotency_key=fields.get("idempotency_key"),
            max_attempts=fields.get("max_attempts", 3),
            expires_in_s=fields.get("expires_in_s"),
            metadata=fields.get("metadata"),
            pingback=fields.get("pingback"),
            pingback_format=fields.get("pingback_format", "form"),
            max_payload_bytes=max_payload_bytes,
            allow_unknown=allow_unknown,
            allow_private_targets=allow_private_targets,
            task_id=task_id,
        )
    except InvalidTask as exc:
        raise InvalidTask(f"task {index} of the batch: {exc}", field=exc.field) from exc
