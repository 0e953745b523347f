"""Fleet-wide solver slots: a counting semaphore in Redis with leased slots, one per solver account.

At most N solves are in flight across every worker on every machine. A slot is a member of
``keys.slots(account)`` (holder = task id, score = lease deadline in server-time ms), owned by the
lease token of the claim holding it (``keys.slot_owners(account)``), so a stale worker can never
release a slot that the task's new owner adopted.

A slot counts a solve at the service, not a worker's intent, so no slot is freed while its solve may
still run there. When its holder stops renewing it (killed, stalled) or gives its task up mid-solve
(lease lost, cancelled, shutdown, Redis lost its data), the slot becomes a *ghost*, counted until the
solve must be over (``orphan_hold_s`` after its submit could have started) unless the task's next
owner resumes the same remote id and adopts it. A worker killed between the submit and recording the
remote id therefore leaves a ghost, and the task's next submit takes a slot of its own: N holds at
the service, not just in Redis. The Lua side is ``lua/includes/slots.lua``.

Batching keeps the fleet near its limit without hammering Redis: every task of a process that waits
for a slot joins one FIFO, and a single pump takes slots for all of them in one script call (and
gives finished slots back in one call). When the fleet is full the pump retries on a short, growing
timer, or at once when a local slot is freed. Nothing is held while idle: a slot is taken just before
a submit and released as soon as the answer (or the error) is in.

The effective limit adapts (AIMD): a ``SolverBusy`` answer lowers it multiplicatively for the whole
fleet (at most once per cooldown, however many workers saw it), and successful solves raise it back
additively, one step per recovery interval, never above the configured N.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from ..errors import RedisUnavailable
from ..options import check_settings, setting
from ..store.connection import on_primary_change, redis_errors_async
from ..store.keys import Keys
from ..store.scripts import load_scripts
from .retry import Backoff

__all__ = ["LimiterConfig", "SlotLimiter", "SlotState", "read_slot_state"]

log = logging.getLogger("captcha_queue.worker.limiter")

#: How a slot is given back: ``ok`` (solved), ``busy`` (the service was full: lowers the limit),
#: ``error`` (the solve is over or never started), ``abandon`` (the solve may still run: a ghost),
#: ``abandon_lost`` (as ``abandon``, Redis lost its data: a slot it no longer has is counted again).
Outcome = Literal["ok", "busy", "error", "abandon", "abandon_lost"]
#: After Redis failed under a worker, it grants nothing new for this long once Redis answers again:
#: the pump's longest retry delay (2 s) and 1.5 s for a loaded machine's slow event loops, so every
#: worker that saw the same failure (a failover: every connection breaks) re-registers its held
#: slots before anyone is granted one. (2.5 s left 0.5 s: too little on a machine running CI.)
REBUILD_QUIET_S = 3.5
_HOW = {"ok": "0", "busy": "0", "error": "0", "abandon": "1", "abandon_lost": "2"}


@dataclass(frozen=True)
class LimiterConfig:
    """Tuning of the fleet-wide semaphore. Durations are real seconds (already time-scaled)."""

    lease_s: float = 30.0
    decrease_factor: float = 0.7
    busy_cooldown_s: float = 5.0
    recover_every_s: float = 5.0
    recover_fraction: float = 0.05  # one increase adds this share of N (at least 1)
    batch_max: int = 256
    retry_min_s: float = 0.005  # first wait when the fleet is full
    retry_max_s: float = 0.2  # longest wait between tries while tasks wait for a slot
    #: How long a solve left running at the service (a ghost) keeps counting: the longest a solve
    #: can take there (the CaptchaAI SDK polls for 180 s at most; the slowest kinds take 60-90 s).
    orphan_hold_s: float = setting(
        180.0,
        help="How long a solve left running at the service by a dead or stalled worker keeps its "
        "fleet slot: the longest a solve takes there (time-scaled).",
        unit="s",
        min=0.0,
    )

    def __post_init__(self) -> None:
        check_settings(self)

    def scaled(self, time_scale: float) -> LimiterConfig:
        """Scale the AIMD pacing, the full-fleet retry timer and the ghost hold (not the lease)."""
        return LimiterConfig(
            lease_s=self.lease_s,
            decrease_factor=self.decrease_factor,
            busy_cooldown_s=self.busy_cooldown_s * time_scale,
            recover_every_s=self.recover_every_s * time_scale,
            recover_fraction=self.recover_fraction,
            batch_max=self.batch_max,
            retry_min_s=min(self.retry_min_s, self.retry_max_s * time_scale),
            retry_max_s=max(0.01, min(self.retry_max_s, self.retry_max_s * time_scale * 10)),
            orphan_hold_s=self.orphan_hold_s * time_scale,
        )


@dataclass(frozen=True)
class SlotState:
    """The fleet-wide limit of one account as Redis holds it."""

    configured: int | None
    effective: int | None
    used: int
    changed_ms: int | None = None


async def read_slot_state(client: aioredis.Redis, keys: Keys, account: str) -> SlotState:
    """Read an account's limit and use (for stats, the CLI and metrics). Expired slots still count."""
    async with redis_errors_async(client), client.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.slot_limit(account), "configured", "effective", "changed_ms")
        pipe.zcard(keys.slots(account))
        limit, used = await pipe.execute()
    configured, effective, changed = (int(v) if v is not None else None for v in limit)
    return SlotState(configured, effective, int(used), changed)


class _Waiter:
    __slots__ = ("future", "resume", "token")

    def __init__(self, token: str, future: asyncio.Future[None], resume: bool) -> None:
        self.token = token
        self.future = future
        self.resume = resume


class SlotLimiter:
    """One process's handle on the fleet-wide slots of one solver account.

    ``run()`` is the pump (a background task of the worker). ``acquire`` waits for a slot;
    ``release`` is immediate locally and flushed by the pump; ``renew`` extends every held slot.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        account: str = "default",
        *,
        limit: int,
        config: LimiterConfig | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("the solver limit must be at least 1")
        self.account = account
        self.config = config or LimiterConfig()
        self._client = client
        self._scripts = load_scripts()
        self._keys = (keys.slots(account), keys.slot_limit(account), keys.slot_owners(account))
        self._limit = limit
        self._held: dict[str, str] = {}
        self._waiters: OrderedDict[str, _Waiter] = OrderedDict()
        self._releases: dict[str, tuple[str, str]] = {}  # holder -> (token, how: see _HOW)
        self._registered = False
        self._busy = 0  # busy answers since the last flush (counted in the limit hash)
        self._successes = 0
        self._wake = asyncio.Event()
        # A renewal names the slots held when it starts: a release of one of them must not reach
        # Redis before it, or the renewal takes the freed slot for one Redis lost (and holds every
        # new grant of the fleet for a lease). The pump's calls and a renewal never overlap.
        self._serial = asyncio.Lock()
        # After Redis failed under us (a failover to a replica may have lost the latest slot writes,
        # with the data set's epoch unchanged): the next call re-registers every held slot (a renewal:
        # one Redis lost holds every grant of the fleet for a lease), and this process grants nothing
        # new for REBUILD_QUIET_S after Redis answers again, long enough for the other workers, who
        # saw the same failure, to re-register theirs first.
        self._suspect = False
        self._quiet_until = 0.0
        self._lost_until = 0.0
        self.effective: int = limit
        self.used: int = 0
        # A Sentinel client that follows a failover without any error (the old primary still
        # answered) must rebuild as after one: the new primary may lack slots granted on the old.
        on_primary_change(client, self.note_redis_failure)

    # -- what the runtime calls ------------------------------------------------------------------
    @property
    def limit(self) -> int:
        return self._limit

    @property
    def suspect(self) -> bool:
        """Whether Redis failed (or the primary moved) since the held slots were last re-registered."""
        return self._suspect

    @property
    def holding(self) -> int:
        return len(self._held)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def holds(self, holder: str, token: str) -> bool:
        """Whether this claim (task id and lease token) holds its slot. A new claim of the same task
        (its lease lapsed, this worker claimed it again) does not: it takes or adopts a slot itself."""
        return self._held.get(holder) == token

    async def set_limit(self, limit: int) -> SlotState:
        """Set the configured fleet-wide N (at start, and whenever it changes at run time)."""
        if limit < 1:
            raise ValueError("the solver limit must be at least 1")
        async with redis_errors_async(self._client):
            configured, effective, used = await self._scripts.setSlotLimit(
                self._client, [self._keys[1], self._keys[0]], [limit]
            )
        self._limit = int(configured)
        self.effective, self.used = int(effective), int(used)
        log.debug("solver limit of account %s: configured %s, effective %s", self.account, limit, effective)
        return SlotState(int(configured), int(effective), int(used))

    async def acquire(self, holder: str, token: str, *, resume: bool = False) -> None:
        """Wait for a slot for ``holder`` (a task id) owned by ``token``. Cancel to stop waiting.

        ``resume``: the holder polls the remote id its task already has, whose solve is counted
        already (its previous owner's live slot or ghost is adopted, without taking free room).
        """
        if self._held.get(holder) == token:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[holder] = _Waiter(token, future, resume)
        self._wake.set()
        try:
            await future
        except asyncio.CancelledError:
            self._waiters.pop(holder, None)
            if future.done() and not future.cancelled():
                # Granted in the same instant: an adopted slot stays counted (its solve runs on).
                self.release(holder, token, outcome="abandon" if resume else "error")
            raise

    def release(self, holder: str, token: str, *, outcome: Outcome = "ok") -> None:
        """Give a slot back (flushed by the pump); see ``Outcome``. ``busy`` lowers the effective limit."""
        waiter = self._waiters.get(holder)
        if waiter is not None and waiter.token == token:
            self._waiters.pop(holder)
            if not waiter.future.done():
                waiter.future.cancel()
        if outcome == "busy":
            self._busy += 1
        elif outcome == "ok":
            self._successes += 1
        if self._held.get(holder) == token:
            del self._held[holder]
            how = _HOW[outcome]
            if how == _HOW["abandon"] and (self._suspect or time.monotonic() < self._lost_until):
                # Given up (a lease lost) around a Redis failure: the failure may have lost this slot,
                # and the solve runs on at the service. Counted again if Redis no longer has it.
                how = _HOW["abandon_lost"]
            self._releases[holder] = (token, how)
        self._wake.set()

    def note_redis_failure(self) -> None:
        """Redis failed under one of this worker's calls: re-register the held slots at the next
        call, and grant nothing new until REBUILD_QUIET_S after Redis answers again."""
        self._suspect = True
        self._wake.set()

    async def renew(self) -> list[str]:
        """Extend every held slot in one call. Returns holders whose slot another claim now owns.

        A held slot is never given up by a renewal: its solve is running. One that Redis lost is
        registered again (and the fleet grants nothing new for a lease, until every worker did so).
        """
        async with self._serial:
            return await self._renew_locked()

    async def _renew_locked(self) -> list[str]:
        if not self._held:
            return []
        held = dict(self._held)
        args: list[object] = [int(self.config.lease_s * 1000), self._hold_ms()]
        for holder, token in held.items():
            args += [holder, token]
        async with redis_errors_async(self._client):
            reply = await self._scripts.renewSlots(self._client, list(self._keys), args)
        self.effective, self.used = int(reply[0]), int(reply[1])
        lost = [_text(h) for h in reply[2:]]
        for holder in lost:
            self._held.pop(holder, None)
        if lost:
            log.warning("%d solver slots are now held by their tasks' new owners", len(lost))
        return lost

    def _hold_ms(self) -> int:
        return int(self.config.orphan_hold_s * 1000)

    # -- the pump ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Flush releases and grant waiting acquires, batched, until cancelled."""
        backoff = Backoff(self.config.retry_min_s, self.config.retry_max_s)
        full_rounds = 0
        redis_failures = 0
        while True:
            if not self._registered:
                # The limit hash must exist before the first acquire: missing later, it tells the
                # acquire script that Redis lost its data (and every slot with it).
                try:
                    await self.set_limit(self._limit)
                except RedisUnavailable as exc:
                    self._suspect = True
                    redis_failures += 1
                    delay = Backoff(0.05, 2.0).delay_s(redis_failures)
                    log.warning("solver slots: %s; retrying in %.2fs", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                self._registered = True
            if full_rounds and not self._releases:
                # The fleet was full: wait for a local release or a short, growing timer.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff.ceiling_s(full_rounds)):
                        await self._wake.wait()
            elif not self._releases and not self._waiters:
                await self._wake.wait()
            self._wake.clear()
            try:
                async with self._serial:
                    starved = await self._cycle()
            except RedisUnavailable as exc:
                self._suspect = True
                redis_failures += 1
                delay = Backoff(0.05, 2.0).delay_s(redis_failures)
                log.warning("solver slots: %s; retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                self._wake.set()
                continue
            redis_failures = 0
            full_rounds = full_rounds + 1 if starved else 0

    async def _cycle(self) -> bool:
        """One release call and one acquire call. Returns True if waiters remain ungranted."""
        if self._suspect:
            # A slot given up with its solve still running may be one the failure lost (released
            # before this renewal could name it): count it again if Redis no longer has it.
            for holder, (token, how) in self._releases.items():
                if how == _HOW["abandon"]:
                    self._releases[holder] = (token, _HOW["abandon_lost"])
            await self._renew_locked()  # the held slots first: Redis may have lost them
            self._suspect = False
            self._quiet_until = time.monotonic() + REBUILD_QUIET_S
            # The runs whose claims the failure lost learn it at their next lease renewal (within a
            # renew period, a third of a lease): their slots are given up as possibly lost until then.
            self._lost_until = time.monotonic() + 2 * self.config.lease_s
        if self._releases or self._busy or self._successes:
            await self._flush_releases()
        for holder in [h for h, w in self._waiters.items() if w.future.done()]:
            self._waiters.pop(holder, None)
        if not self._waiters:
            return False
        if time.monotonic() < self._quiet_until:
            return True  # waiters wait: the other workers re-register their slots first
        batch = list(self._waiters.items())[: self.config.batch_max]
        args: list[object] = [int(self.config.lease_s * 1000), self._limit, self._hold_ms()]
        for holder, queued in batch:
            args += [holder, queued.token, "1" if queued.resume else "0"]
        async with redis_errors_async(self._client):
            reply = await self._scripts.acquireSlots(self._client, list(self._keys), args)
        self.effective, self.used = int(reply[0]), int(reply[1])
        granted = [_text(h) for h in reply[2:]]
        tokens = dict(batch)
        for holder in granted:
            waiter = self._waiters.get(holder)
            if waiter is None or waiter is not tokens[holder] or waiter.future.done():
                # The task stopped waiting while the script ran: give the slot straight back (an
                # adopted slot stays counted: its solve runs on).
                self._releases[holder] = (tokens[holder].token, "1" if tokens[holder].resume else "0")
                continue
            del self._waiters[holder]
            self._held[holder] = waiter.token
            waiter.future.set_result(None)
        return bool(self._waiters) and len(granted) < len(batch)

    async def _flush_releases(self) -> None:
        releases, busy, successes = self._releases, self._busy, self._successes
        self._releases, self._busy, self._successes = {}, 0, 0
        cfg = self.config
        step = max(1, math.ceil(self._limit * cfg.recover_fraction))
        args: list[object] = [
            busy,
            successes,
            cfg.decrease_factor,
            int(cfg.busy_cooldown_s * 1000),
            int(cfg.recover_every_s * 1000),
            step,
            self._hold_ms(),
        ]
        for holder, (token, how) in releases.items():
            args += [holder, token, how]
        try:
            async with redis_errors_async(self._client):
                reply = await self._scripts.releaseSlots(self._client, list(self._keys), args)
        except BaseException:
            # Keep what was not written, for the next try.
            for holder, pending in releases.items():
                self._releases.setdefault(holder, pending)
            self._busy += busy
            self._successes += successes
            raise
        before = self.effective
        self.effective, self.used = int(reply[0]), int(reply[1])
        if self.effective != before:
            log.debug("effective solver limit of account %s: %d -> %d", self.account, before, self.effective)

    async def aclose(self) -> None:
        """Give back every slot still held (shutdown): as ghosts, their solves may run on."""
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.cancel()
        self._waiters.clear()
        for holder, token in list(self._held.items()):
            self.release(holder, token, outcome="abandon")
        if self._releases:
            with contextlib.suppress(RedisUnavailable):
                async with self._serial:
                    await self._flush_releases()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
