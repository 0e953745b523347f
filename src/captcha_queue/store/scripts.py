"""The Lua scripts: read once from package data, called by SHA, reloaded on NOSCRIPT.

BullMQ style: ``lua/queue/<verbNoun>-<N>.lua`` (task transitions) and ``lua/fleet/<verbNoun>-<N>.lua``
(slots, heartbeats, pauses), each one atomic transition receiving exactly N keys; shared code lives in
``lua/includes/`` and is pulled in by a line ``--- @include "name"`` before the script is hashed. Each
file opens with a header: its KEYS (one line ``--- KEYS[i] <name> <TYPE> ...`` per key of a queue
script), ARGV and replies. From the KEYS lines the loader prepends ``local K = {...}`` (the key names
the includes use) and the queue builds the keys themselves (``Keys.named``): one place for both.

Every reply of a queue script starts with a code; ``CODES`` below is the one table of codes (mirrored
by ``lua/includes/codes.lua``, a test keeps the two equal) and ``raise_for_code`` turns refusals into
typed errors, here and nowhere else.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ..errors import (
    CaptchaQueueError,
    LeaseLost,
    ScriptError,
    TaskCancelled,
    TaskNotFound,
    WriteNotReplicated,
)
from .connection import client_profile, is_cluster

__all__ = ["CODES", "Code", "Script", "Scripts", "load_scripts", "raise_for_code"]

_INCLUDE_RE = re.compile(r'^---\s*@include\s+"([\w./-]+)"\s*$', re.MULTILINE)
_KEY_RE = re.compile(r"^---\s*KEYS\[(\d+)\]\s+(\w+)\s+(HASH|ZSET|LIST|STRING|STREAM|SET)\b", re.MULTILINE)
_STEM_RE = re.compile(r"^(\w+)-(\d+)$")


class Code:
    """Return codes of the scripts, one per outcome (kept in step with lua/includes/codes.lua)."""

    OK = 0
    #: failTask: a retry was scheduled (not a refusal).
    RETRY_SCHEDULED = 1
    #: claimTasks: the fleet is paused, nothing handed out (not a refusal).
    PAUSED = 2
    #: reportTask: a verdict on this task's answer was queued before; nothing written (not a refusal).
    ALREADY_REPORTED = 3
    NOT_FOUND = -1
    LEASE_LOST = -2
    CANCELLED = -3
    ALREADY_FINAL = -4
    #: A key the script writes exists with another type (written by someone else); nothing was written.
    WRONG_TYPE = -5
    #: submitTasks: max_queued tasks are queued already; nothing was written.
    QUEUE_FULL = -6
    #: submitTasks: an idempotency key names a task with other method/params/priority; nothing written.
    IDEMPOTENCY_CONFLICT = -7


def _wrong_type(task_id: str, detail: str | None) -> CaptchaQueueError:
    return ScriptError(f"cannot act on task {task_id}: {detail or 'a key has the wrong type'}")


#: Every code -> (its name, the typed error of a refusal or None for an outcome that is no error).
#: QUEUE_FULL and IDEMPOTENCY_CONFLICT carry details only the submitting call knows (_producer.py).
CODES: dict[int, tuple[str, Callable[[str, str | None], CaptchaQueueError] | None]] = {
    Code.OK: ("OK", None),
    Code.RETRY_SCHEDULED: ("RETRY_SCHEDULED", None),
    Code.PAUSED: ("PAUSED", None),
    Code.ALREADY_REPORTED: ("ALREADY_REPORTED", None),
    Code.NOT_FOUND: ("NOT_FOUND", lambda task_id, _d: TaskNotFound(f"no task {task_id}")),
    Code.LEASE_LOST: ("LEASE_LOST", lambda task_id, _d: LeaseLost(task_id)),
    Code.CANCELLED: ("CANCELLED", lambda task_id, _d: TaskCancelled(task_id)),
    Code.ALREADY_FINAL: (
        "ALREADY_FINAL",
        lambda task_id, _d: LeaseLost(task_id, f"task {task_id} already has its final result"),
    ),
    Code.WRONG_TYPE: ("WRONG_TYPE", _wrong_type),
    Code.QUEUE_FULL: ("QUEUE_FULL", lambda task_id, _d: ScriptError("the queue is full")),
    Code.IDEMPOTENCY_CONFLICT: (
        "IDEMPOTENCY_CONFLICT",
        lambda task_id, _d: ScriptError(f"idempotency conflict for task {task_id}"),
    ),
}


def raise_for_code(code: int, task_id: str, detail: str | None = None) -> None:
    """Raise the typed error for a script's refusal code; return quietly for an outcome (>= 0)."""
    entry = CODES.get(code)
    if entry is None:
        raise ScriptError(f"script returned unknown code {code} for task {task_id}")
    make = entry[1]
    if make is not None:
        raise make(task_id, detail)


#: Scripts that admit new work run only while Redis is below ``maxmemory``: above it Redis refuses
#: the call whole, before it writes anything (the caller gets RedisOutOfMemory).
_ADMIT_WORK = frozenset({"submitTasks", "requeueDead"})
#: Read-only scripts run without flags (as they always did, on a replica too).
_READ_ONLY = frozenset({"readStats"})
#: The acknowledged writes that ``durability=replica`` waits on (``WAIT 1``): a submission and every
#: finish. Claims, leases and fleet slots are not: a lost claim is handed out again, slots rebuilt.
DURABLE_WRITES = frozenset({"submitTasks", "completeTask", "failTask", "expireTask", "cancelTask"})


def _with_flags(name: str, source: str) -> str:
    """The script with its Redis 7 flags line. Every script but those above moves work already
    accepted towards its end (claims, renewals, finishes, slots, pauses) and runs even above
    maxmemory (``allow-oom``): refused there, a solved task could never be finished, and finished
    tasks are what frees memory (their results expire). What they add is bounded by the work
    accepted. A script that names its own flags keeps them."""
    if name in _READ_ONLY or source.startswith("#!"):
        return source
    if name in _ADMIT_WORK:
        return "#!lua\n" + source
    return "#!lua flags=allow-oom\n" + source


def _lua_dir() -> Traversable:
    return resources.files("captcha_queue.store") / "lua"


def _read(name: str) -> str:
    return (_lua_dir() / name).read_text(encoding="utf-8")


def _expand(source: str, seen: tuple[str, ...] = ()) -> str:
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            raise ScriptError(f"Lua include cycle through {name}")
        filename = name if name.endswith(".lua") else f"{name}.lua"
        return _expand(_read(f"includes/{filename}"), (*seen, name))

    return _INCLUDE_RE.sub(include, source)


def _declared_keys(name: str, source: str) -> tuple[tuple[str, str], ...]:
    """The (name, TYPE) of each ``--- KEYS[i] name TYPE`` header line, in order (checked: 1..n)."""
    found = [(int(i), key, kind) for i, key, kind in _KEY_RE.findall(source)]
    if [i for i, _k, _t in found] != list(range(1, len(found) + 1)):
        raise ScriptError(f"script {name}: its KEYS header lines must be numbered 1..n")
    return tuple((key, kind) for _i, key, kind in found)


def _key_table(keys: Sequence[tuple[str, str]]) -> str:
    """``local K = {...}``: the script's keys by name; ``queue_<priority>`` keys go to ``K.queue``."""
    queues = [
        f"{k[len('queue_') :]} = KEYS[{i}]" for i, (k, _t) in enumerate(keys, 1) if k.startswith("queue_")
    ]
    fields = [f"{k} = KEYS[{i}]" for i, (k, _t) in enumerate(keys, 1) if not k.startswith("queue_")]
    if queues:
        fields.insert(0, "queue = { " + ", ".join(queues) + " }")
    return "local K = { " + ", ".join(fields) + " }\n"


class Script:
    """One Lua script, called by SHA with a SCRIPT LOAD on NOSCRIPT.

    ``num_keys`` (from the file name's ``-N``) is how many keys every call passes, asserted; None for a
    file without it (its key count varies). ``keys`` names them (and their types) for a queue script."""

    def __init__(
        self,
        name: str,
        source: str,
        num_keys: int | None = None,
        keys: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.name = name
        self.source = source
        self.num_keys = num_keys
        self.keys = keys
        self.key_names = tuple(k for k, _t in keys)
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def _check_keys(self, keys: Sequence[str]) -> None:
        if self.num_keys is not None and len(keys) != self.num_keys:
            raise ScriptError(f"script {self.name} takes {self.num_keys} keys, given {len(keys)}")

    async def __call__(self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """EVALSHA; on NOSCRIPT (a restarted or new node: the script did not run) SCRIPT LOAD, on a
        Cluster into the node serving the keys' slot only, and EVALSHA again."""
        self._check_keys(keys)
        profile = client_profile(client)
        if profile.durability == "replica" and self.name in DURABLE_WRITES and keys:
            return await self._call_durably(client, keys, args, profile.durability_timeout_ms)
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._load(client, keys)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    async def _load(self, client: aioredis.Redis, keys: Sequence[str]) -> None:
        if is_cluster(client) and keys:
            cluster: Any = client
            node = cluster.get_node_from_key(keys[0])
            await cluster.execute_command("SCRIPT LOAD", self.source, target_nodes=node)
        else:
            await client.script_load(self.source)

    async def _call_durably(
        self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[Any], timeout_ms: int
    ) -> Any:
        """The call and ``WAIT 1 timeout_ms`` in one pipeline on one connection (WAIT counts the
        replicas that acknowledged that connection's writes); WriteNotReplicated when none did."""
        wait_target: dict[str, Any] = {}
        if is_cluster(client):
            cluster: Any = client
            await cluster.initialize()
            wait_target["target_nodes"] = cluster.get_node_from_key(keys[0])
        for reloaded in (False, True):
            async with client.pipeline(transaction=False) as pipe:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", 1, timeout_ms, **wait_target)
                reply, acked = await pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and not reloaded:
                await self._load(client, keys)
                continue
            if isinstance(reply, BaseException):
                raise reply
            if isinstance(acked, BaseException):
                raise acked
            if int(acked) < 1:
                raise WriteNotReplicated(
                    f"script {self.name}: the primary applied the write but no replica acknowledged it "
                    f"within {timeout_ms} ms (durability=replica); a failover now could lose it"
                )
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def queue_in(self, pipe: Any, keys: Sequence[str], args: Sequence[Any] = ()) -> None:
        """Add an EVALSHA to a pipeline (call ``Scripts.ensure_loaded`` before executing it)."""
        self._check_keys(keys)
        pipe.evalsha(self.sha, len(keys), *keys, *args)


class Scripts(Mapping[str, Script]):
    """Every script in ``lua/`` (and its subfolders), by name."""

    def __init__(self, scripts: dict[str, Script]) -> None:
        self._scripts = scripts

    def __getitem__(self, name: str) -> Script:
        return self._scripts[name]

    def __iter__(self) -> Any:
        return iter(self._scripts)

    def __len__(self) -> int:
        return len(self._scripts)

    def __getattr__(self, name: str) -> Script:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None

    async def ensure_loaded(self, client: aioredis.Redis) -> None:
        """SCRIPT LOAD every script whose SHA the server does not know (e.g. after a restart)."""
        scripts = list(self._scripts.values())
        known = await client.script_exists(*(s.sha for s in scripts))
        for script, present in zip(scripts, known, strict=True):
            if not present:
                await client.script_load(script.source)


def _files(folder: Traversable, relative: str = "") -> list[tuple[str, Traversable]]:
    """Every ``.lua`` file under ``folder`` but ``includes/``, with its path relative to ``lua/``."""
    found: list[tuple[str, Traversable]] = []
    for entry in folder.iterdir():
        path = f"{relative}{entry.name}"
        if entry.is_dir():
            if path != "includes":
                found += _files(entry, path + "/")
        elif entry.name.endswith(".lua"):
            found.append((path, entry))
    return found


def _load(path: str, entry: Traversable) -> Script:
    stem = entry.name[: -len(".lua")]
    match = _STEM_RE.match(stem)
    name, num_keys = (match.group(1), int(match.group(2))) if match else (stem, None)
    raw = entry.read_text(encoding="utf-8")
    keys = _declared_keys(path, raw)
    if keys and len(keys) != num_keys:
        raise ScriptError(f"script {path} declares {len(keys)} keys in its header, its name says {num_keys}")
    source = _expand(raw)
    if keys:
        flags, _, body = source.partition("\n") if source.startswith("#!") else ("", "", source)
        source = (flags + "\n" if flags else "") + _key_table(keys) + body
    return Script(name, _with_flags(name, source), num_keys, keys)


_CACHE: Scripts | None = None


def load_scripts() -> Scripts:
    """All scripts of the package, read and hashed once per process."""
    global _CACHE
    if _CACHE is None:
        found: dict[str, Script] = {}
        for path, entry in sorted(_files(_lua_dir()), key=lambda pe: pe[0]):
            script = _load(path, entry)
            if script.name in found:
                raise ScriptError(f"two Lua scripts are named {script.name}")
            found[script.name] = script
        _CACHE = Scripts(found)
    return _CACHE
