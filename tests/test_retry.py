"""The retry policy and the backoff: pure functions, no I/O."""

from __future__ import annotations

import random

import pytest

from captcha_queue.errors import (
    AccountError,
    LeaseLost,
    RedisUnavailable,
    SolverBusy,
    TaskCancelled,
    TaskRejected,
    TransientError,
    Unsolvable,
)
from captcha_queue.worker.retry import Action, Backoff, RetryPolicy


def test_backoff_ceiling_grows_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(base_s=1.0, cap_s=10.0)
    assert [backoff.ceiling_s(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.ceiling_s(10_000) == 10.0  # no overflow


def test_backoff_is_full_jitter_within_bounds() -> None:
    backoff = Backoff(base_s=1.0, cap_s=100.0)
    rng = random.Random(7)
    draws = [backoff.delay_s(4, rng) for _ in range(2_000)]
    assert all(0.0 <= d <= 8.0 for d in draws)
    # Full jitter spreads over the whole range, not just near the ceiling.
    assert min(draws) < 0.5
    assert max(draws) > 7.5
    assert 3.5 < sum(draws) / len(draws) < 4.5


def test_backoff_scaled_and_validated() -> None:
    scaled = Backoff(base_s=2.0, cap_s=60.0).scaled(0.01)
    assert scaled.base_s == pytest.approx(0.02)
    assert scaled.cap_s == pytest.approx(0.6)
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base_s=-1)


POLICY = RetryPolicy(transient=Backoff(1.0, 30.0), busy=Backoff(0.5, 8.0))


def test_transient_retries_with_backoff_until_attempts_run_out() -> None:
    rng = random.Random(1)
    first = POLICY.decide(TransientError("HTTP_502"), attempt=1, max_attempts=3, rng=rng)
    assert first.action is Action.RETRY
    assert first.consumes_attempt
    assert first.code == "HTTP_502"
    assert 0.0 <= first.delay_s <= 1.0
    second = POLICY.decide(TransientError("HTTP_502"), attempt=2, max_attempts=3, rng=rng)
    assert second.action is Action.RETRY
    assert 0.0 <= second.delay_s <= 2.0
    last = POLICY.decide(TransientError("HTTP_502"), attempt=3, max_attempts=3, rng=rng)
    assert last.action is Action.FAIL
    assert last.code == "HTTP_502"


def test_transient_respects_the_services_retry_after_hint() -> None:
    error = TransientError("ERROR_SERVER_ERROR", retry_after_s=10.0)
    decision = POLICY.decide(error, attempt=1, max_attempts=3)
    assert decision.delay_s >= 10.0


def test_unsolvable_is_a_fresh_solve_then_a_final_error() -> None:
    error = Unsolvable("ERROR_CAPTCHA_UNSOLVABLE")
    assert POLICY.decide(error, attempt=1, max_attempts=2).action is Action.FRESH_SOLVE
    final = POLICY.decide(error, attempt=2, max_attempts=2)
    assert final.action is Action.FAIL
    assert final.code == "ERROR_CAPTCHA_UNSOLVABLE"


def test_rejected_fails_at_once_with_the_services_code() -> None:
    decision = POLICY.decide(TaskRejected("ERROR_PAGEURL"), attempt=1, max_attempts=5)
    assert decision.action is Action.FAIL
    assert decision.code == "ERROR_PAGEURL"


def test_busy_never_consumes_an_attempt_even_on_the_last_one() -> None:
    rng = random.Random(3)
    for busy_count in (1, 2, 5, 50):
        decision = POLICY.decide(
            SolverBusy("ERROR_NO_SLOT_AVAILABLE"), attempt=3, max_attempts=3, busy_count=busy_count, rng=rng
        )
        assert decision.action is Action.BUSY
        assert not decision.consumes_attempt
        assert 0.0 <= decision.delay_s <= 8.0


def test_account_errors_pause_and_carry_the_pause_length() -> None:
    banned = POLICY.decide(AccountError("IP_BANNED", pause_s=300.0), attempt=1, max_attempts=3)
    assert banned.action is Action.PAUSE
    assert banned.delay_s == 300.0
    assert not banned.consumes_attempt
    bad_key = POLICY.decide(AccountError("ERROR_WRONG_USER_KEY"), attempt=3, max_attempts=3)
    assert bad_key.action is Action.PAUSE
    assert bad_key.delay_s == 0.0


def test_lease_lost_and_cancelled_drop_the_task() -> None:
    assert POLICY.decide(LeaseLost("t1"), attempt=1, max_attempts=3).action is Action.DROP
    assert POLICY.decide(TaskCancelled("t1"), attempt=1, max_attempts=3).action is Action.DROP


def test_unexpected_errors_are_treated_as_transient() -> None:
    decision = POLICY.decide(RuntimeError("bug"), attempt=1, max_attempts=3)
    assert decision.action is Action.RETRY
    assert decision.code == "RuntimeError"
    assert POLICY.decide(RedisUnavailable("x"), attempt=3, max_attempts=3).action is Action.FAIL


def test_policy_scaled() -> None:
    scaled = POLICY.scaled(0.1)
    assert scaled.transient.base_s == pytest.approx(0.1)
    assert scaled.busy.cap_s == pytest.approx(0.8)
