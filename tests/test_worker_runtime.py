"""The worker runtime in process: a real Redis, the simulator as a real HTTP server, real solvers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from captcha_queue.errors import AccountError
from captcha_queue.models import Result
from captcha_queue.queue._core import as_str
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.solvers import CaptchaAISolver, InstantSolver
from captcha_queue.solvers.base import Solver
from captcha_queue.worker.events import NullEvents
from captcha_queue.worker.limiter import read_slot_state
from captcha_queue.worker.logs import configure_logging
from captcha_queue.worker.runtime import Worker, WorkerConfig

KEY = "0123456789abcdef0123456789abcdef"
SCALE = 0.01
PAGE = "https://example.test/task/"


def turnstile(n: int) -> dict[str, str | int | float]:
    return {"sitekey": "0x4AAAAAAAC3DHQFLr1GavRN", "pageurl": f"{PAGE}{n}"}


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(time_scale=SCALE, threads=50, seed=1)) as sim:
        yield sim


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run(), name="worker")
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30.0)


T = TypeVar("T")


async def wait_until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def wait_until_async(
    read: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout_s: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check(await read()):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def results(queue: AsyncCaptchaQueue, ids: list[str], timeout_s: float = 30.0) -> list[Result]:
    found = [await queue.wait_result(i, timeout_s=timeout_s) for i in ids]
    assert all(r is not None for r in found), "some tasks never finished"
    return [r for r in found if r is not None]


def fast_config(**overrides: object) -> WorkerConfig:
    options: dict[str, object] = {
        "concurrency": 50,
        "lease_s": 3.0,
        "claim_block_s": 0.5,
        "time_scale": SCALE,
        "grace_s": 5.0,
    }
    options.update(overrides)
    return WorkerConfig(**options)  # type: ignore[arg-type]


async def test_tasks_flow_through_the_simulator_within_the_fleet_limit(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=SCALE)
    workers = [Worker(queue, solver, fast_config(solver_limit=4)) for _ in range(2)]
    async with running(workers[0]), running(workers[1]):
        ids = await queue.submit_many([{"method": "turnstile", "params": turnstile(i)} for i in range(30)])
        done = await results(queue, ids)
        assert {r.status for r in done} == {"success"}
        live = await queue.workers()
        assert {w.id for w in live} == {w.worker_id for w in workers}
        state = await read_slot_state(queue.client, queue.keys, "default")
        assert (state.configured, state.effective) == (4, 4)
    await solver.aclose()
    stats = simulator.stats()
    assert stats["submits"] == 30
    assert stats["duplicate_submits"] == {}
    assert 1 <= stats["max_in_flight"] <= 4
    assert await queue.workers() == []  # unregistered on stop
    assert (await read_slot_state(queue.client, queue.keys, "default")).used == 0


async def test_the_instant_solver_and_no_limit(queue: AsyncCaptchaQueue) -> None:
    solver = InstantSolver()
    worker = Worker(queue, solver, fast_config(concurrency=100))
    async with running(worker):
        ids = await queue.submit_many([{"method": "turnstile", "params": turnstile(i)} for i in range(300)])
        done = await results(queue, ids)
    assert len(done) == 300
    assert all(r.ok and r.solution is not None for r in done)
    assert worker.limiter is None
    assert worker.finished == 300


def test_the_worker_takes_its_config_object(queue: AsyncCaptchaQueue) -> None:
    worker = Worker(queue, InstantSolver(), fast_config(concurrency=2000, solver_limit=500))
    assert worker.config.concurrency == 2000
    assert worker.config.solver_limit == 500
    assert Worker(queue, InstantSolver()).config == WorkerConfig()


def test_busy_pause_settings_are_checked() -> None:
    assert WorkerConfig(busy_pause_after=3, busy_pause_s=5.0).busy_pause_after == 3
    for bad in ({"busy_pause_after": 0}, *({"busy_pause_s": v} for v in (0.0, float("nan"), float("inf")))):
        with pytest.raises(ValueError, match="busy_pause"):
            WorkerConfig(**bad)  # type: ignore[arg-type]


async def test_rejected_tasks_fail_at_once_and_unsolvable_ones_are_solved_afresh(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=SCALE)
    worker = Worker(queue, solver, fast_config(solver_limit=10))
    async with running(worker):
        # The simulator's control endpoint queues the next answers of in.php.
        simulator.control({"next_errors": {"in": ["ERROR_PAGEURL"]}})
        rejected = await queue.submit("turnstile", turnstile(1), max_attempts=3)
        result = await queue.wait_result(rejected, timeout_s=20)
        assert result is not None
        assert (result.status, result.error_code, result.attempts) == ("error", "ERROR_PAGEURL", 1)
    await solver.aclose()


async def test_an_account_error_pauses_the_account_and_fails_nothing(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    class BadKeySolver(CaptchaAISolver):
        """The account says no until the test lets it work again."""

        broken = True

        async def submit(self, method: str, params: dict[str, str | int | float]) -> str:  # type: ignore[override]
            if self.broken:
                raise AccountError("ERROR_KEY_DOES_NOT_EXIST", "the account has no threads")
            return await super().submit(method, params)

        async def account_info(self):  # type: ignore[no-untyped-def]
            if self.broken:
                raise AccountError("ERROR_KEY_DOES_NOT_EXIST", "the account has no threads")
            return await super().account_info()

    solver = BadKeySolver(KEY, simulator.base_url, time_scale=SCALE)
    worker = Worker(queue, solver, fast_config(solver_limit=5, probe_every_s=20.0))  # probe: 0.2 s
    async with running(worker):
        ids = await queue.submit_many([{"method": "turnstile", "params": turnstile(i)} for i in range(8)])
        await wait_until(lambda: worker.breaker.paused)
        await asyncio.sleep(0.3)
        (pause,) = (await queue.pause_state(solver.account_ref)).accounts
        assert pause.code == "ERROR_KEY_DOES_NOT_EXIST"
        assert pause.worker == worker.worker_id
        stats = await queue.stats()
        assert stats.failed == 0
        assert stats.completed == 0
        assert stats.queued_total + stats.in_flight == 8
        solver.broken = False  # the probe finds the account working and lifts the pause
        done = await results(queue, ids)
        assert {r.status for r in done} == {"success"}
        assert max(r.attempts for r in done) == 1  # the released claims consumed no attempt
    await solver.aclose()


async def test_expired_while_waiting_for_a_slot(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    solver: Solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=SCALE)
    worker = Worker(queue, solver, fast_config(solver_limit=1))
    # A slot held elsewhere for the whole test: nothing here can reach the solver.
    await queue.client.zadd(queue.keys.slots("default"), {"someone-else": 10**13})
    await queue.client.hset(queue.keys.slots("default") + ":owners", "someone-else", "t")
    async with running(worker):
        task_id = await queue.submit("turnstile", turnstile(1), expires_in_s=0.5)
        result = await queue.wait_result(task_id, timeout_s=10)
        assert result is not None
        assert result.status == "expired"
    await solver.aclose()
    assert simulator.stats()["submits"] == 0


async def test_unsolvable_is_solved_afresh_and_transient_errors_retry(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=SCALE)
    worker = Worker(queue, solver, fast_config(solver_limit=10))
    async with running(worker):
        # The worker reads its balance at start (res.php getbalance): the forced error is for the poll.
        await wait_until(lambda: worker.registry.info.balance is not None)
        simulator.control({"next_errors": {"res": ["ERROR_CAPTCHA_UNSOLVABLE"]}})
        unsolvable = await queue.submit("turnstile", turnstile(1), max_attempts=3)
        first = await queue.wait_result(unsolvable, timeout_s=20)
        simulator.control({"next_errors": {"in": ["ERROR_SERVER_ERROR"]}})
        flaky = await queue.submit("turnstile", turnstile(2), max_attempts=3)
        second = await queue.wait_result(flaky, timeout_s=20)
    await solver.aclose()
    assert first is not None
    assert (first.status, first.attempts) == ("success", 2)
    assert second is not None
    assert (second.status, second.attempts) == ("success", 2)
    by_task = simulator.stats()["submits_by_task"]
    assert by_task[f"{PAGE}1"] == 2  # a fresh solve: a second remote task
    assert by_task[f"{PAGE}2"] == 1  # the first submit never reached the service


async def test_busy_costs_no_attempt_and_lowers_the_fleet_limit(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=SCALE)
    worker = Worker(queue, solver, fast_config(solver_limit=10))
    async with running(worker):
        simulator.control({"next_errors": {"in": ["ERROR_NO_SLOT_AVAILABLE"] * 4}})
        task_id = await queue.submit("turnstile", turnstile(1), max_attempts=1)
        result = await queue.wait_result(task_id, timeout_s=20)
        state = await read_slot_state(queue.client, queue.keys, "default")
    await solver.aclose()
    assert result is not None
    assert (result.status, result.attempts) == ("success", 1)  # four busy answers, one attempt
    assert state.configured == 10
    assert state.effective is not None
    assert state.effective < 10  # the fleet backed off


async def test_json_logs_carry_one_line_per_task_and_never_the_key(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", logging.DEBUG, secrets=[KEY])
    try:
        solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=SCALE)
        worker = Worker(queue, solver, fast_config(solver_limit=5))
        async with running(worker):
            ids = await queue.submit_many([{"method": "turnstile", "params": turnstile(i)} for i in range(3)])
            await results(queue, ids)
            logging.getLogger("captcha_queue.worker").info("canary %s", KEY)
        await solver.aclose()
    finally:
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
    err = capfd.readouterr().err
    assert KEY not in err
    assert "canary ***" in err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    finished = [line for line in lines if line.get("status") == "success"]
    assert sorted(line["task_id"] for line in finished) == sorted(ids)
    assert all({"method", "attempts", "queue_wait_s", "solve_s"} <= line.keys() for line in finished)
    assert any(line["level"] == "debug" for line in lines)  # state changes at debug


async def test_the_fleet_uses_at_least_90_percent_of_its_limit_while_there_is_a_backlog(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    limit = 8
    solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=SCALE)
    workers = [Worker(queue, solver, fast_config(solver_limit=limit)) for _ in range(2)]
    samples: list[int] = []
    async with running(workers[0]), running(workers[1]):
        ids = await queue.submit_many([{"method": "turnstile", "params": turnstile(i)} for i in range(150)])
        await wait_until(lambda: sum(w.in_flight for w in workers) >= limit)
        while True:
            stats = await queue.stats()
            if stats.queued_total <= limit:
                break
            samples.append((await read_slot_state(queue.client, queue.keys, "default")).used)
            await asyncio.sleep(0.01)
        await results(queue, ids)
    await solver.aclose()
    assert len(samples) >= 20
    assert max(samples) <= limit
    assert sum(samples) / len(samples) >= 0.9 * limit, samples


async def test_a_cancelled_task_is_dropped_and_its_slot_freed_when_the_service_is_done(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=0.2)  # first poll after 2 s: in flight
    worker = Worker(queue, solver, fast_config(solver_limit=5, lease_s=0.6))  # renewed every 0.2 s
    async with running(worker):
        task_id = await queue.submit("turnstile", turnstile(1))
        await wait_until(lambda: worker.limiter is not None and worker.limiter.holding == 1)
        assert await queue.cancel(task_id)
        await wait_until(lambda: worker.in_flight == 0)
        result = await queue.get_result(task_id)
        assert result is not None
        assert result.status == "cancelled"
        # The service solves on (a cancel cannot reach it): the slot stays counted until it is done.
        assert worker.limiter is not None
        assert worker.limiter.holding == 1
        await wait_until(lambda: worker.limiter is not None and worker.limiter.holding == 0, timeout_s=30.0)
        await wait_until_async(
            lambda: read_slot_state(queue.client, queue.keys, "default"), lambda s: s.used == 0
        )
    await solver.aclose()


async def test_the_limit_comes_from_threadsinfo_and_follows_it_at_run_time(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=SCALE)
    worker = Worker(queue, solver, fast_config(limit_refresh_s=20.0))  # re-read every 0.2 s
    async with running(worker):
        await wait_until(lambda: worker.limiter is not None)
        assert worker.limiter is not None
        assert worker.limiter.limit == 50  # the simulator's threads
        simulator.control({"threads": 7})
        await wait_until(lambda: worker.limiter is not None and worker.limiter.limit == 7)
        state = await read_slot_state(queue.client, queue.keys, "default")
        assert (state.configured, state.effective) == (7, 7)
    await solver.aclose()


async def test_an_idle_worker_stops_without_sitting_out_its_claim_block(queue: AsyncCaptchaQueue) -> None:
    worker = Worker(queue, InstantSolver(), fast_config(claim_block_s=8.0))
    task = asyncio.create_task(worker.run(), name="worker")
    await wait_until_async(lambda: queue.workers(), lambda found: len(found) == 1)
    started = time.monotonic()
    worker.stop()
    await asyncio.wait_for(task, 30.0)
    assert time.monotonic() - started < 5.0  # the blocked claim gave up its wait, not its 8 s
    assert await queue.workers() == []


# -- the fleet limit on every path, one account's pause -----------------------------------------------

BAD_KEY = "fedcba9876543210fedcba9876543210"


class Recorder(NullEvents):
    """The events the issue asks to be visible in metrics, as the runtime reports them."""

    def __init__(self) -> None:
        self.limit_unknown: list[bool] = []
        self.account_pauses: list[str] = []
        self.account_states: list[bool] = []

    def set_limit_unknown(self, unknown: bool) -> None:
        self.limit_unknown.append(unknown)

    def account_paused(self, code: str) -> None:
        self.account_pauses.append(code)

    def set_account_paused(self, paused: bool) -> None:
        self.account_states.append(paused)


@contextlib.asynccontextmanager
async def three_threads() -> AsyncIterator[RunningSimulator]:
    """An account with 3 threads that queues anything over them silently: its in-flight maximum is
    what the fleet did (over 3 is a broken limit)."""
    config = SimulatorConfig(time_scale=SCALE, threads=3, over_capacity="queue", seed=2)
    async with run_simulator(config) as sim:
        yield sim


async def test_no_solve_is_sent_before_the_account_has_told_the_limit(queue: AsyncCaptchaQueue) -> None:
    """Before the fix a failed threadsinfo at start left the worker without any limit: the simulator
    saw 30 solves in flight against 3 threads. Now the account call is retried and tasks wait."""
    async with three_threads() as sim:
        sim.control({"next_errors": {"res": ["ERROR_SERVER_ERROR"] * 3}})  # threadsinfo fails 3 times
        ids = await queue.submit_many([{"method": "turnstile", "params": turnstile(i)} for i in range(30)])
        solver = CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE)
        events = Recorder()
        worker = Worker(queue, solver, fast_config(concurrency=50), events=events)
        async with running(worker):
            done = await results(queue, ids)
        await solver.aclose()
        assert {r.status for r in done} == {"success"}
        assert 1 <= sim.stats()["max_in_flight"] <= 3
        assert worker.limiter is not None
        assert worker.limiter.limit == 3
        assert events.limit_unknown[0] is True  # said so in the metrics...
        assert events.limit_unknown[-1] is False  # ...until the account answered


async def test_after_an_account_error_at_start_and_a_resume_the_limit_still_holds(
    queue: AsyncCaptchaQueue,
) -> None:
    """Before the fix an account error at start left the worker without a limit for good: after the
    account was fixed and the pause lifted, it solved without any."""
    async with three_threads() as sim:
        solver = CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE)
        sim.control({"accounts": {KEY: {"state": "bad"}}})
        worker = Worker(queue, solver, fast_config(concurrency=50, probe_every_s=20.0))  # probe: 0.2 s
        async with running(worker):
            await wait_until(lambda: worker.breaker.paused)
            ids = await queue.submit_many(
                [{"method": "turnstile", "params": turnstile(i)} for i in range(30)]
            )
            await asyncio.sleep(0.3)
            assert sim.stats()["submits"] == 0
            assert (await queue.stats()).queued_total == 30  # nothing claimed while the account is paused
            sim.control({"accounts": {KEY: {"state": "ok"}}})  # the account probe lifts the pause
            done = await results(queue, ids)
        await solver.aclose()
        assert {r.status for r in done} == {"success"}
        assert max(r.attempts for r in done) == 1
        assert 1 <= sim.stats()["max_in_flight"] <= 3


async def test_a_bad_key_pauses_only_its_own_account(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Before the fix one worker with a wrong key paused the whole namespace, for good: the worker with
    a working key stopped too. Now the pause belongs to the bad key's account and names its worker."""
    simulator.control({"accounts": {BAD_KEY: {"state": "bad"}}})
    good, bad = (CaptchaAISolver(k, simulator.base_url, time_scale=SCALE) for k in (KEY, BAD_KEY))
    # No account probes: they would hide a pause that stops the wrong workers behind quick lifts.
    good_worker = Worker(queue, good, fast_config(solver_limit=5, probe_every_s=3600.0))
    bad_worker = Worker(queue, bad, fast_config(solver_limit=5, probe_every_s=3600.0))
    async with contextlib.AsyncExitStack() as good_running:
        async with running(bad_worker):
            first = await queue.submit_many(
                [{"method": "turnstile", "params": turnstile(i)} for i in range(5)]
            )
            await wait_until(lambda: bad_worker.breaker.paused)
            await good_running.enter_async_context(running(good_worker))
            ids = first + await queue.submit_many(
                [{"method": "turnstile", "params": turnstile(i)} for i in range(5, 25)]
            )
            done = await asyncio.wait_for(results(queue, ids), 20.0)  # before the fix: all stopped
            assert {r.status for r in done} == {"success"}
            assert max(r.attempts for r in done) == 1  # tasks the bad worker held went back unharmed
            assert not good_worker.breaker.paused
            assert bad_worker.breaker.paused
        # The bad worker is gone; its account's pause stays (the key is still wrong), stopping nobody.
        more = await queue.submit_many(
            [{"method": "turnstile", "params": turnstile(i)} for i in range(25, 30)]
        )
        assert {r.status for r in await results(queue, more)} == {"success"}
    await good.aclose()
    await bad.aclose()
    from captcha_queue.solvers.base import key_fingerprint

    pauses = (await queue.pause_state()).accounts
    assert len(pauses) == 1
    (pause,) = pauses
    assert (pause.worker, pause.account, pause.key) == (
        bad_worker.worker_id,
        "default",
        key_fingerprint(BAD_KEY),
    )
    assert pause.ref == f"default/{key_fingerprint(BAD_KEY)}"
    assert pause.code == "ERROR_KEY_DOES_NOT_EXIST"
    assert (await queue.stats()).paused is None  # the namespace is not paused
    for key in await queue.client.keys("{" + queue.keys.namespace + "}*"):
        assert BAD_KEY.encode() not in key
        if await queue.client.type(key) == b"hash":
            fields = await queue.client.hgetall(key)
            assert BAD_KEY not in "".join(as_str(k) + as_str(v) for k, v in fields.items())
    # Both keys run under the account name "default", whose fleet limit is keyed by the name: said.
    assert any("also used with another API key" in r.getMessage() for r in caplog.records)
    assert await queue.resume(account="other") == []
    lifted = await queue.resume(account=key_fingerprint(BAD_KEY))
    assert [p.ref for p in lifted] == [pause.ref]
    assert (await queue.pause_state()).accounts == ()


async def test_busy_answers_that_do_not_clear_pause_the_account(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    """2captcha's ERROR_ZERO_BALANCE (no funds) is a busy answer: before the fix it was resubmitted
    without end (50 in.php calls in 8 scaled seconds, no attempt counted). Now a run of busy answers
    pauses the account for a while, counted, and its tasks go back to the queue."""
    simulator.control({"next_errors": {"in": ["ERROR_ZERO_BALANCE"] * 500}})  # threadsinfo says 50
    solver = CaptchaAISolver(KEY, simulator.base_url, time_scale=SCALE)
    events = Recorder()
    # The defaults: 20 busy answers in a row pause the account for 60 s (3 s at this time scale).
    worker = Worker(queue, solver, fast_config(solver_limit=10, time_scale=0.05), events=events)
    async with running(worker):
        ids = await queue.submit_many([{"method": "turnstile", "params": turnstile(i)} for i in range(10)])
        await wait_until(lambda: bool(events.account_pauses), timeout_s=10.0)
        await wait_until(lambda: worker.in_flight == 0)
        calls = simulator.stats()["submit_requests"]
        assert calls <= 20 + 10  # the run that paused it, plus submits already on their way
        await asyncio.sleep(1.0)  # paused: nothing reaches in.php
        assert simulator.stats()["submit_requests"] == calls
        state = worker.breaker.account_state
        assert state is not None
        assert state.code == "ERROR_ZERO_BALANCE"
        assert state.until_ms is not None  # ends by itself
        assert "busy answers in a row" in state.reason
        stats = await queue.stats()
        assert (stats.queued_total, stats.failed, stats.completed) == (10, 0, 0)
        assert stats.paused is None  # the account's pause, not the namespace's
    await solver.aclose()
    assert events.account_pauses == ["ERROR_ZERO_BALANCE"]
    assert events.account_states[0] is True
    states = await queue.client.hmget(queue.keys.state, ids)
    assert [json.loads(s)["attempts"] for s in states if s is not None] == [0] * 10  # none consumed
