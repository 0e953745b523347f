"""The Lua scripts: read once from package data, called by SHA, reloaded on NOSCRIPT.

Each file under ``lua/`` (subfolders too, ``includes/`` aside) is one atomic state transition named
``<verbNoun>.lua`` or ``<verbNoun>-<numKeys>.lua`` (called by ``verbNoun``) and opens with a header
documenting its KEYS, ARGV and return codes. A line ``--- @include "name"`` pulls in
``lua/includes/name.lua`` (shared helpers) before the script is hashed.

Scripts answer with small negative integers for refusals; ``raise_for_code`` turns those into
typed errors, here and nowhere else.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ..errors import LeaseLost, ScriptError, TaskCancelled, TaskNotFound

__all__ = ["Code", "Script", "Scripts", "load_scripts", "raise_for_code"]

_INCLUDE_RE = re.compile(r'^---\s*@include\s+"([\w./-]+)"\s*$', re.MULTILINE)


class Code:
    """Return codes shared by every script (kept in step with lua/includes/codes.lua)."""

    OK = 0
    #: failTask: a retry was scheduled (not a refusal).
    RETRY_SCHEDULED = 1
    #: claimTasks: the fleet is paused, nothing handed out (not a refusal).
    PAUSED = 1
    NOT_FOUND = -1
    LEASE_LOST = -2
    CANCELLED = -3
    ALREADY_FINAL = -4
    #: A key the script needs exists with another type (written by someone else); nothing was written.
    WRONG_TYPE = -5
    #: submitTasks: max_queued tasks are queued already; nothing was written.
    QUEUE_FULL = -6
    #: submitTasks: an idempotency key names a task with other method/params/priority; nothing written.
    IDEMPOTENCY_CONFLICT = -7


def raise_for_code(code: int, task_id: str, detail: str | None = None) -> None:
    """Raise the typed error for a script's refusal code; return quietly for OK (>= 0)."""
    if code >= 0:
        return
    if code == Code.WRONG_TYPE:
        raise ScriptError(f"cannot act on task {task_id}: {detail or 'a key has the wrong type'}")
    if code == Code.NOT_FOUND:
        raise TaskNotFound(f"no task {task_id}")
    if code == Code.LEASE_LOST:
        raise LeaseLost(task_id)
    if code == Code.CANCELLED:
        raise TaskCancelled(task_id)
    if code == Code.ALREADY_FINAL:
        raise LeaseLost(task_id, f"task {task_id} already has its final result")
    raise ScriptError(f"script returned unknown code {code} for task {task_id}")


#: Scripts that admit new work run only while Redis is below ``maxmemory``: above it Redis refuses
#: the call whole, before it writes anything (the caller gets RedisOutOfMemory).
_ADMIT_WORK = frozenset({"submitTasks", "requeueDead"})
#: Read-only scripts run without flags (as they always did, on a replica too).
_READ_ONLY = frozenset({"readStats"})


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


def _read(name: str) -> str:
    return (resources.files("captcha_queue.store") / "lua" / name).read_text(encoding="utf-8")


def _expand(source: str, seen: tuple[str, ...] = ()) -> str:
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            raise ScriptError(f"Lua include cycle through {name}")
        filename = name if name.endswith(".lua") else f"{name}.lua"
        return _expand(_read(f"includes/{filename}"), (*seen, name))

    return _INCLUDE_RE.sub(include, source)


class Script:
    """One Lua script, called by SHA with a SCRIPT LOAD on NOSCRIPT."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    async def __call__(self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def queue_in(self, pipe: Any, keys: Sequence[str], args: Sequence[Any] = ()) -> None:
        """Add an EVALSHA to a pipeline (call ``Scripts.ensure_loaded`` before executing it)."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)


class Scripts(Mapping[str, Script]):
    """Every script in ``lua/``, by name."""

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


_CACHE: Scripts | None = None


def load_scripts() -> Scripts:
    """All scripts of the package, read and hashed once per process."""
    global _CACHE
    if _CACHE is None:
        found: dict[str, Script] = {}
        for entry in _lua_files(resources.files("captcha_queue.store") / "lua"):
            name = _NUM_KEYS_RE.sub("", entry.name[: -len(".lua")])
            if name in found:
                raise ScriptError(f"two Lua scripts are named {name}")
            found[name] = Script(name, _with_flags(name, _expand(entry.read_text(encoding="utf-8"))))
        _CACHE = Scripts(found)
    return _CACHE


#: ``verbNoun-<numKeys>.lua`` (BullMQ style): the script's name is the stem without the suffix.
_NUM_KEYS_RE = re.compile(r"-\d+$")


def _lua_files(folder: Traversable) -> Iterator[Traversable]:
    """Every ``.lua`` file under ``folder``, subfolders included, except ``includes/``."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            if entry.name != "includes":
                yield from _lua_files(entry)
        elif entry.name.endswith(".lua"):
            yield entry
