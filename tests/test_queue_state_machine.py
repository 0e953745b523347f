"""A Hypothesis state machine over submit / claim / renew / complete / fail / release / lease expiry /
cancel / worker crash / reap, against a real Redis.

Invariants after every step: each task is in exactly one place (one queue list entry, or the delayed
set, or the active set, or finished with a result) and its state says the same; at most one final
result per task (one event in the stream), never changed once written; no task lost; no claim handed
out for a finished task; a write with a stale or cancelled lease is refused and changes nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from captcha_queue import CaptchaQueue, Claim, LeaseLost, Result, TaskCancelled
from captcha_queue.models import PRIORITIES
from captcha_queue.queue._core import as_str

from .helpers import RC

WORKERS = ("w1", "w2", "w3")


class QueueMachine(RuleBasedStateMachine):
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.namespace = f"sm-{uuid.uuid4().hex[:10]}"
        self.q = CaptchaQueue.from_url(self.redis_url, namespace=self.namespace)
        self.r = redis.Redis.from_url(self.redis_url)
        self.keys = self.q.async_queue.keys
        self.submitted: dict[str, int] = {}  # id -> max_attempts
        self.held: list[Claim] = []  # claims some worker believes it holds (maybe stale)
        self.finals: dict[str, Result] = {}  # the first final result seen per task
        self.past_ms = 0  # distinct past scores keep Redis' order independent of the random ids

    def _in_the_past(self) -> int:
        self.past_ms += 1
        return self.past_ms

    def teardown(self) -> None:
        try:
            keys = list(self.r.scan_iter(match="{" + self.namespace + "}*", count=1000))
            if keys:
                self.r.delete(*keys)
        finally:
            self.r.close()
            self.q.close()

    # -- helpers -------------------------------------------------------------------------------
    def _state(self, task_id: str) -> dict[str, Any]:
        raw = self.r.hget(self.keys.state, task_id)
        assert raw is not None, f"task {task_id} lost its state"
        state: dict[str, Any] = msgspec.json.decode(raw)
        return state

    def _expected_refusal(self, claim: Claim) -> type[Exception] | None:
        """What a write with this claim must raise, judged from the state before the write."""
        state = self._state(claim.task.id)
        if state.get("token") != claim.lease_token:
            return LeaseLost
        if state["status"] == "active":
            return None
        if state["status"] == "done" and state.get("final") == "cancelled":
            return TaskCancelled
        return LeaseLost

    def _record_final(self, result: Result | None) -> None:
        if result is not None:
            first = self.finals.setdefault(result.id, result)
            assert first == result, "a final result changed"

    def _held_write(self, claim: Claim, action: Any) -> Any:
        expected = self._expected_refusal(claim)
        before = (self.r.hget(self.keys.state, claim.task.id), self.r.hget(self.keys.results, claim.task.id))
        if expected is None:
            return action()
        with pytest.raises(LeaseLost) as info:
            action()
        assert type(info.value) is expected
        after = (self.r.hget(self.keys.state, claim.task.id), self.r.hget(self.keys.results, claim.task.id))
        assert after == before, "a refused write changed something"
        self.held.remove(claim)
        return None

    # -- rules ---------------------------------------------------------------------------------
    @rule(priority=st.sampled_from(PRIORITIES), max_attempts=st.integers(1, 3), n=st.integers(1, 3))
    def submit(self, priority: str, max_attempts: int, n: int) -> None:
        specs = [
            {"method": "userrecaptcha", "params": RC, "priority": priority, "max_attempts": max_attempts}
        ]
        for task_id in self.q.submit_many(specs * n):
            assert task_id not in self.submitted
            self.submitted[task_id] = max_attempts

    @rule(worker=st.sampled_from(WORKERS), count=st.integers(1, 4))
    def claim(self, worker: str, count: int) -> None:
        for claim in self.q.claim(worker, count, lease_s=60, block_s=0):
            assert claim.task.id in self.submitted
            assert claim.task.id not in self.finals, "a finished task was handed out"
            assert 1 <= claim.attempt <= self.submitted[claim.task.id]
            self.held.append(claim)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), action=st.sampled_from(["complete", "retry", "fatal", "release"]))
    def work(self, data: st.DataObject, action: str) -> None:
        """A worker finishes, fails (retryable or fatal) or releases one of the claims it holds."""
        claim = data.draw(st.sampled_from(self.held))
        expected = self._expected_refusal(claim)
        calls = {
            "complete": lambda: self.q.complete(claim, "token"),
            "retry": lambda: self.q.fail(claim, "ERR", retry_in_s=0),
            "fatal": lambda: self.q.fail(claim, "ERR"),
            "release": lambda: self.q.release(claim),
        }
        result = self._held_write(claim, calls[action])
        if expected is not None:
            return
        self.held.remove(claim)
        if action == "complete":
            assert result is not None
            assert result.status == "success"
        elif action == "retry" and claim.attempt < self.submitted[claim.task.id]:
            assert result is None  # a retry was scheduled; make it due now, in a replayable order
            assert self.r.zadd(self.keys.delayed, {claim.task.id: self._in_the_past()}, xx=True, ch=True)
        elif action in ("retry", "fatal"):
            assert result is not None
            assert result.status == "error"
            # Only retries that ran out of attempts are dead-lettered; a fatal error is not.
            assert (self.q.dead_letter(claim.task.id) is not None) == (action == "retry")
        self._record_final(result)

    @precondition(lambda self: self.held)
    @rule()
    def renew(self) -> None:
        # A stale claim and the current one may share a task id: compare as multisets.
        expected = [(c.task.id, self._expected_refusal(c)) for c in self.held]
        outcome = self.q.renew(self.held)
        assert Counter(outcome.renewed) == Counter(i for i, e in expected if e is None)
        assert Counter(outcome.cancelled) == Counter(i for i, e in expected if e is TaskCancelled)
        assert Counter(outcome.lost) == Counter(i for i, e in expected if e is LeaseLost)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), crash=st.booleans())
    def fault(self, data: st.DataObject, crash: bool) -> None:
        """A worker hangs past its lease (it keeps its claim, now stale once reaped), or is killed -9
        (its claims vanish with it and its leases run out)."""
        claim = data.draw(st.sampled_from(self.held))
        victims = [c for c in self.held if c.worker_id == claim.worker_id] if crash else [claim]
        for victim in victims:
            if self._expected_refusal(victim) is None:
                self.r.zadd(self.keys.active, {victim.task.id: self._in_the_past()}, xx=True)
            if crash:
                self.held.remove(victim)

    @precondition(lambda self: self.submitted)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(list(self.submitted)))  # insertion order: replayable
        was_final = self.r.hexists(self.keys.results, task_id)
        assert self.q.cancel(task_id) is (not was_final)
        if not was_final:
            result = self.q.get_result(task_id)
            assert result is not None
            assert result.status == "cancelled"
            self._record_final(result)

    @rule(thorough=st.booleans())
    def maintenance(self, thorough: bool) -> None:
        """The periodic reap any worker may run (the claim path runs the same, in smaller batches)."""
        self.q.reap(batch=1000 if thorough else 1)

    # -- invariants ----------------------------------------------------------------------------
    @invariant()
    def each_task_in_exactly_one_place(self) -> None:
        queued = Counter(
            as_str(task_id) for p in PRIORITIES for task_id in self.r.lrange(self.keys.queue(p), 0, -1)
        )
        delayed = {as_str(m) for m in self.r.zrange(self.keys.delayed, 0, -1)}
        active = {as_str(m) for m in self.r.zrange(self.keys.active, 0, -1)}
        results = {as_str(k) for k in self.r.hkeys(self.keys.results)}
        assert set(queued) | delayed | active | results <= set(self.submitted), "an unknown id appeared"
        for task_id in self.submitted:
            places = queued[task_id] + (task_id in delayed) + (task_id in active) + (task_id in results)
            assert places == 1, f"task {task_id} is in {places} places"  # none lost, none doubled
            status = self._state(task_id)["status"]
            expected = (
                "queued"
                if queued[task_id]
                else "delayed"
                if task_id in delayed
                else "active"
                if task_id in active
                else "done"
            )
            assert status == expected

    @invariant()
    def final_results_are_written_once_and_never_change(self) -> None:
        for _task_id, raw in self.r.hgetall(self.keys.results).items():
            self._record_final(msgspec.json.decode(raw, type=Result))
        entries = self.r.xrange(self.keys.events)
        assert entries is not None
        announced: Counter[str] = Counter()
        for _, fields in entries:
            assert fields is not None
            announced[as_str(fields[b"id"])] += 1
        assert all(n == 1 for n in announced.values()), "a task was finished twice"
        assert set(announced) == set(self.finals)


@pytest.mark.timeout(120)
def test_queue_state_machine(redis_url: str) -> None:
    QueueMachine.redis_url = redis_url
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
