"""The process-wide poll timer: schedule, batching, failures. The backend is a scripted solver."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest

from captcha_queue.errors import SolverError, TransientError, Unsolvable
from captcha_queue.models import Solution
from captcha_queue.solvers import InstantSolver
from captcha_queue.solvers.base import PollItem, PollOutcome
from captcha_queue.worker.polling import PollConfig, PollScheduler
from captcha_queue.worker.retry import Backoff


class ScriptedSolver:
    """Answers after ``ready_after`` polls of an id; records every poll_many call and its time."""

    def __init__(self, ready_after: int = 1, errors: Mapping[str, list[PollOutcome]] | None = None) -> None:
        self.ready_after = ready_after
        self.errors = {k: list(v) for k, v in (errors or {}).items()}
        self.calls: list[tuple[float, list[str]]] = []
        self.counts: dict[str, int] = {}
        self.fail_whole_batch = 0

    async def poll_many(self, items: Sequence[PollItem]) -> dict[str, PollOutcome]:
        ids = [remote_id for remote_id, _, _ in items]
        self.calls.append((time.monotonic(), ids))
        if self.fail_whole_batch:
            self.fail_whole_batch -= 1
            raise TransientError("HTTP_502", "bad gateway")
        out: dict[str, PollOutcome] = {}
        for remote_id in ids:
            queued = self.errors.get(remote_id)
            if queued:
                out[remote_id] = queued.pop(0)
                continue
            self.counts[remote_id] = self.counts.get(remote_id, 0) + 1
            done = self.counts[remote_id] >= self.ready_after
            out[remote_id] = Solution(text=f"answer-{remote_id}") if done else None
        return out


FAST = PollConfig(coalesce_s=0.005, failure_backoff=Backoff(0.01, 0.02), max_failures=3)


async def started(scheduler: PollScheduler) -> AsyncIterator[PollScheduler]:
    task = asyncio.create_task(scheduler.run(), name="poller")
    try:
        yield scheduler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_first_poll_then_interval() -> None:
    solver = ScriptedSolver(ready_after=3)
    scheduler = PollScheduler(solver.poll_many, FAST)
    async for s in started(scheduler):
        t0 = time.monotonic()
        answer = await s.wait_for("1", "base64", {"body": "x"}, first_poll_s=0.15, interval_s=0.1)
        assert answer.text == "answer-1"
    times = [t - t0 for t, _ in solver.calls]
    assert len(times) == 3
    assert 0.14 <= times[0] < 0.3
    assert 0.09 <= times[1] - times[0] < 0.25
    assert 0.09 <= times[2] - times[1] < 0.25


async def test_ids_due_together_go_out_in_one_batch() -> None:
    solver = ScriptedSolver(ready_after=2)
    outcomes: list[str] = []
    scheduler = PollScheduler(solver.poll_many, FAST, on_outcome=outcomes.append)
    async for s in started(scheduler):
        waits = [s.wait_for(str(i), "turnstile", {}, first_poll_s=0.05, interval_s=0.05) for i in range(40)]
        answers = await asyncio.gather(*waits)
    assert [a.text for a in answers] == [f"answer-{i}" for i in range(40)]
    assert len(solver.calls) == 2  # 40 ids, two rounds, one request each
    assert all(len(ids) == 40 for _, ids in solver.calls)
    assert outcomes.count("CAPCHA_NOT_READY") == 40
    assert outcomes.count("OK") == 40


async def test_batches_are_capped() -> None:
    solver = ScriptedSolver(ready_after=1)
    # All 20 fall due together however late the loaded machine runs each waiter's registration (a 5 ms
    # window split them into [3, 3, 7, 7] under load): the cap alone must cut the batches.
    config = PollConfig(batch_max=7, coalesce_s=0.25)
    async for s in started(PollScheduler(solver.poll_many, config)):
        await asyncio.gather(
            *(s.wait_for(str(i), "m", {}, first_poll_s=0.02, interval_s=0.05) for i in range(20))
        )
    assert sorted(len(ids) for _, ids in solver.calls) == [6, 7, 7]


async def test_failed_polls_are_retried_then_given_up() -> None:
    flaky = TransientError("HTTP_502")
    solver = ScriptedSolver(ready_after=1, errors={"ok": [flaky, flaky], "bad": [flaky] * 10})
    async for s in started(PollScheduler(solver.poll_many, FAST)):
        good = await s.wait_for("ok", "m", {}, first_poll_s=0.0, interval_s=0.01)
        assert good.text == "answer-ok"
        with pytest.raises(TransientError, match="HTTP_502"):
            await s.wait_for("bad", "m", {}, first_poll_s=0.0, interval_s=0.01)
    assert sum("bad" in ids for _, ids in solver.calls) == FAST.max_failures


async def test_a_whole_batch_failure_is_a_failed_poll_for_each_id() -> None:
    solver = ScriptedSolver(ready_after=1)
    solver.fail_whole_batch = 1
    async for s in started(PollScheduler(solver.poll_many, FAST)):
        answers = await asyncio.gather(
            *(s.wait_for(str(i), "m", {}, first_poll_s=0.0, interval_s=0.01) for i in range(3))
        )
    assert len(answers) == 3
    assert len(solver.calls) == 2


async def test_final_answers_are_raised_to_the_waiter() -> None:
    solver = ScriptedSolver(errors={"u": [Unsolvable("ERROR_CAPTCHA_UNSOLVABLE")]})
    async for s in started(PollScheduler(solver.poll_many, FAST)):
        with pytest.raises(Unsolvable):
            await s.wait_for("u", "m", {}, first_poll_s=0.0, interval_s=0.01)


async def test_a_cancelled_wait_is_never_polled() -> None:
    solver = ScriptedSolver(ready_after=1)
    async for s in started(PollScheduler(solver.poll_many, FAST)):
        gone = asyncio.create_task(s.wait_for("gone", "m", {}, first_poll_s=0.1, interval_s=0.1))
        await asyncio.sleep(0.01)
        gone.cancel()
        kept = await s.wait_for("kept", "m", {}, first_poll_s=0.15, interval_s=0.1)
        assert kept.text == "answer-kept"
    assert all("gone" not in ids for _, ids in solver.calls)


async def test_a_solve_that_takes_too_long_times_out() -> None:
    solver = ScriptedSolver(ready_after=10_000)
    config = PollConfig(coalesce_s=0.005, solve_timeout_s=0.2)
    async for s in started(PollScheduler(solver.poll_many, config)):
        with pytest.raises(TransientError, match="SOLVE_TIMEOUT"):
            await s.wait_for("slow", "m", {}, first_poll_s=0.0, interval_s=0.03)


async def test_a_resumed_solve_polls_at_once() -> None:
    solver = ScriptedSolver(ready_after=1)
    async for s in started(PollScheduler(solver.poll_many, FAST)):
        t0 = time.monotonic()
        await s.wait_for("r", "m", {}, first_poll_s=5.0, interval_s=5.0, elapsed_s=6.0)
        assert time.monotonic() - t0 < 0.5


async def test_against_the_instant_solver() -> None:
    solver = InstantSolver()
    try:
        params = {"sitekey": "k", "pageurl": "https://a.test/"}
        ids = [await solver.submit("turnstile", params) for _ in range(5)]
        async for s in started(PollScheduler(solver.poll_many, FAST)):
            answers = await asyncio.gather(
                *(s.wait_for(i, "turnstile", {}, first_poll_s=0.01, interval_s=0.01) for i in ids)
            )
        assert all(isinstance(a, Solution) and a.text for a in answers)
        async for s in started(PollScheduler(solver.poll_many, FAST)):
            unknown = s.wait_for("999", "turnstile", {}, first_poll_s=0.0, interval_s=0.01)
            with pytest.raises(SolverError):
                await unknown
    finally:
        await solver.aclose()


def test_config_scaling() -> None:
    scaled = PollConfig().scaled(0.01)
    assert scaled.solve_timeout_s == pytest.approx(6.0)
    assert scaled.failure_backoff.base_s == pytest.approx(0.01)
    assert 0.001 <= scaled.coalesce_s <= 0.02
