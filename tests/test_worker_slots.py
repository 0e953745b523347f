"""Solver slots in the running worker: a slot belongs to one claim (task id and lease token).

A real Redis, the simulator as a real HTTP server, the worker runtime in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import msgspec
import pytest

from captcha_queue.models import Claim, RenewOutcome
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import SimulatorConfig, run_simulator
from captcha_queue.simulator.faults import FaultPlan
from captcha_queue.solvers import CaptchaAISolver
from captcha_queue.worker.limiter import LimiterConfig
from captcha_queue.worker.runtime import Worker, WorkerConfig

KEY = "0123456789abcdef0123456789abcdef"
SCALE = 0.1  # turnstile: first poll after 1 s, then every 0.5 s


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run(), name="worker")
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30.0)


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.mark.timeout(60)
async def test_a_worker_reclaiming_its_own_task_mid_submit_keeps_the_fleet_limit(
    redis_url: str, namespace: str
) -> None:
    """N + 1 after a self-reclaim: the task's lease lapses while its in.php is in flight (the
    renewals did not get through, as in a Redis cut), and the same worker claims it again. The new
    claim found the old claim's slot "held" (by task id) and submitted at once: a second solve no
    slot counted. Now the old run stops, its submit stays counted (a ghost) until its solve must be
    over, and the new claim takes a slot of its own: the service never holds more than N = 1.

    The renewals are held back until the worker has claimed the task again, so the two happen in the
    order that showed the defect (a renewal first would report the lease lost and stop the old run)."""
    in_php_s, solve_s = 4.0, 3.0
    sim_config = SimulatorConfig(
        time_scale=SCALE,
        threads=10,
        over_capacity="queue",
        seed=3,
        faults=FaultPlan({"slow": 1.0}),  # the first in.php is answered in_php_s late
        slow_real_s=in_php_s,
    )
    async with (
        run_simulator(sim_config) as sim,
        AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as producer,
        AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as queue,
    ):
        renewals = asyncio.Event()
        real_renew = queue.renew

        async def held_back_renew(claims: Sequence[Claim], lease_s: float = 30.0) -> RenewOutcome:
            await renewals.wait()
            return await real_renew(claims, lease_s)

        queue.renew = held_back_renew  # type: ignore[method-assign]
        solver = CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE)
        config = WorkerConfig(
            concurrency=5,
            lease_s=1.5,
            solver_limit=1,
            claim_block_s=0.2,
            time_scale=SCALE,
            grace_s=2.0,
            # A solve may run at the service for in.php + solve time after its slot was taken.
            limiter=LimiterConfig(orphan_hold_s=(in_php_s + solve_s + 1.0) / SCALE),
        )
        worker = Worker(queue, solver, config)
        try:
            async with running(worker):
                params = {"sitekey": "0x4AAAAAAAC3DHQFLr1GavRN", "pageurl": "https://example.test/cut"}
                task_id = await producer.submit("turnstile", {**params, "x_sim_solve_s": solve_s})
                await until(lambda: sim.stats()["requests"].get("in", 0) >= 1)
                sim.control({"faults": {}})  # later requests are answered at once
                # The lease lapses; the worker's own claim call requeues the task and claims it again.
                await until_async(lambda: claimed_again(producer, task_id))
                await asyncio.sleep(0.5)  # the new claim submits, or waits for a slot
                renewals.set()
                result = await producer.wait_result(task_id, timeout_s=30.0)
        finally:
            await solver.aclose()
    stats = sim.stats()
    assert stats["max_in_flight"] <= 1, f"{stats['max_in_flight']} solves at once with N = 1"
    assert result is not None
    assert result.ok, result
    assert result.attempts == 2  # the lease lapsed once and the task was claimed again


async def claimed_again(queue: AsyncCaptchaQueue, task_id: str) -> bool:
    raw = await queue.client.hget(queue.keys.state, task_id)
    state = msgspec.json.decode(raw) if raw else {}
    return state.get("status") == "active" and state.get("attempts") == 1


async def until_async(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
