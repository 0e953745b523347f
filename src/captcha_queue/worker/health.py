"""Health of a worker process, served next to ``/metrics``: ``/healthz`` and ``/readyz``.

``/healthz`` answers 200 ``ok`` while the process serves HTTP at all (a liveness probe). ``/readyz``
answers 200 only when this worker can do its work now, else 503; both with a small JSON body that
names each check:

- ``redis``: Redis answers a PING within ``timeout_s``;
- ``scripts``: the Lua scripts are loaded (any the server lost, after a restart, are loaded again);
- ``limit``: the fleet limit is known (the runtime's ``set_limit_unknown`` hook said so);
- ``account``: the worker's solver account is not paused.

The checks run on the worker's own event loop (a loop that does not answer is not ready either),
through a client of their own so they never wait for, or take, the worker's connections. Details
are fixed phrases and codes: no URL, password or API key can reach an unauthenticated endpoint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from ..queue._producer import AsyncCaptchaQueue

__all__ = ["READY_TIMEOUT_S", "Check", "Readiness", "ping_check", "readiness_body", "scripts_check"]

#: How long one readiness check may take (PING; then scripts and pauses together).
READY_TIMEOUT_S = 1.0


class Check(msgspec.Struct, frozen=True):
    ok: bool
    detail: str


def readiness_body(checks: dict[str, Check]) -> tuple[bool, bytes]:
    """Whether every check passed, and the JSON body naming each."""
    ready = all(c.ok for c in checks.values())
    body = {"status": "ready" if ready else "unready", "checks": checks}
    return ready, msgspec.json.encode(body)


class Readiness:
    """The readiness checks of one worker process (see the module docstring).

    ``queue``: a queue on a client of its own (closed by the caller); ``account_ref``: the account as
    pauses name it; ``limit_known``: whether the fleet limit is known now. Create it on the worker's
    loop; ``from_thread`` is what the HTTP server thread calls.
    """

    def __init__(
        self,
        queue: AsyncCaptchaQueue,
        *,
        account_ref: str | Sequence[str],
        limit_known: Callable[[], bool],
        timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        self.queue = queue
        #: The accounts this process serves (``worker --accounts``: several; ready while one is not paused).
        self.account_refs = [account_ref] if isinstance(account_ref, str) else list(account_ref)
        self.account_ref = ", ".join(self.account_refs)
        self.timeout_s = timeout_s
        self._limit_known = limit_known
        self._loop = asyncio.get_running_loop()

    async def check(self) -> dict[str, Check]:
        """Run every check once."""
        checks: dict[str, Check] = {"redis": await self._ping()}
        if checks["redis"].ok:
            scripts, account = await asyncio.gather(self._scripts(), self._account())
        else:
            scripts = account = Check(False, "not checked: Redis does not answer")
        checks["scripts"] = scripts
        checks["limit"] = (
            Check(True, "known")
            if self._limit_known()
            else Check(False, "unknown: the account has not answered yet, no solve is sent")
        )
        checks["account"] = account
        return checks

    def from_thread(self) -> tuple[bool, bytes]:
        """Run the checks on the worker's loop from another thread; (ready, JSON body)."""
        wait_s = 2 * self.timeout_s + 1.0
        coro = self.check()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop is closed: the worker is on its way out
            coro.close()
            return readiness_body({"loop": Check(False, "the worker's event loop is closed")})
        try:
            checks = future.result(timeout=wait_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            checks = {"loop": Check(False, f"the worker's event loop did not answer within {wait_s:g} s")}
        except Exception as exc:  # a bug in a check must not take the endpoint down
            checks = {"loop": Check(False, f"the checks failed: {type(exc).__name__}")}
        return readiness_body(checks)

    async def _ping(self) -> Check:
        return await ping_check(self.queue, self.timeout_s)

    async def _scripts(self) -> Check:
        return await scripts_check(self.queue, self.timeout_s)

    async def _account(self) -> Check:
        paused: list[str] = []
        for ref in self.account_refs:
            try:
                state = await asyncio.wait_for(self.queue.pause_state(ref), self.timeout_s)
            except TimeoutError:
                return Check(False, f"could not read the pauses within {self.timeout_s:g} s")
            except Exception as exc:
                return Check(False, f"could not read the pauses: {type(exc).__name__}")
            if not state.accounts:
                return Check(True, f"account {ref} not paused")
            paused.append(f"{ref} paused ({state.accounts[0].code or 'no code'})")
        if len(paused) == 1:
            return Check(False, f"account {paused[0]}")
        return Check(False, f"every account paused: {', '.join(paused)}")


async def ping_check(queue: AsyncCaptchaQueue, timeout_s: float = READY_TIMEOUT_S) -> Check:
    """Redis answers a PING within ``timeout_s`` (the workers' and the dashboard's ``redis`` check)."""
    try:
        await asyncio.wait_for(queue.client.ping(), timeout_s)
    except TimeoutError:
        return Check(False, f"no answer to PING within {timeout_s:g} s")
    except Exception as exc:  # connection refused, reset, auth: the class name says which
        return Check(False, f"PING failed: {type(exc).__name__}")
    return Check(True, "PONG")


async def scripts_check(queue: AsyncCaptchaQueue, timeout_s: float = READY_TIMEOUT_S) -> Check:
    """The Lua scripts are loaded (any the server lost are loaded again): the ``scripts`` check."""
    scripts = queue.scripts
    try:
        await asyncio.wait_for(scripts.ensure_loaded(queue.client), timeout_s)
    except TimeoutError:
        return Check(False, f"SCRIPT EXISTS/LOAD took more than {timeout_s:g} s")
    except Exception as exc:
        return Check(False, f"could not load the scripts: {type(exc).__name__}")
    return Check(True, f"{len(scripts)} loaded")
