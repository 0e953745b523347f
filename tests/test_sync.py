"""The blocking CaptchaQueue: the same names as AsyncCaptchaQueue, one implementation underneath."""

from __future__ import annotations

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from captcha_queue import AsyncCaptchaQueue, CaptchaQueue, InvalidTask, RedisUnavailable, TaskSpec

from .helpers import RC


@pytest.fixture
def queue(sync_queue: CaptchaQueue) -> CaptchaQueue:
    """This module tests the synchronous facade, so here ``queue`` is the conftest's ``sync_queue``."""
    return sync_queue


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))}


def test_the_sync_api_has_the_same_names_kinds_and_defaults_as_the_async_one() -> None:
    async_names = _public(AsyncCaptchaQueue) - {"aclose", "from_url"}
    missing = async_names - _public(CaptchaQueue)
    assert not missing
    # Async only: claim's ``stop`` is an asyncio.Event of the caller's own loop.
    async_only = {("claim", "stop")}
    for name in async_names:
        params = inspect.signature(getattr(AsyncCaptchaQueue, name)).parameters
        async_params = [
            (p.name, p.kind, p.default) for key, p in params.items() if (name, key) not in async_only
        ]
        sync_params = [
            (p.name, p.kind, p.default)
            for p in inspect.signature(getattr(CaptchaQueue, name)).parameters.values()
        ]
        assert async_params == sync_params, name  # names, kinds and defaults: a twin, not a look-alike


def test_it_runs_the_one_async_implementation(queue: CaptchaQueue) -> None:
    assert isinstance(queue.async_queue, AsyncCaptchaQueue)


def test_a_task_from_submit_to_result(queue: CaptchaQueue) -> None:
    task_id = queue.submit("userrecaptcha", RC, priority="high", metadata={"order": 1})
    assert queue.get_result(task_id) is None
    [claim] = queue.claim("w", 1, lease_s=10)
    claim = queue.record_remote(claim, "42")
    assert queue.renew([claim]).renewed == [task_id]
    result = queue.complete(claim, "token")
    assert queue.wait_result(task_id, timeout_s=5) == result
    assert queue.get_result(task_id) == result
    assert result.metadata == {"order": 1}
    assert queue.stats().completed == 1
    assert queue.epoch() == queue.stats().epoch


def test_wait_result_blocks_until_another_thread_finishes_the_task(queue: CaptchaQueue) -> None:
    task_id = queue.submit("userrecaptcha", RC)
    [claim] = queue.claim("w", 1)
    timer = threading.Timer(0.1, lambda: queue.complete(claim, "late token"))
    timer.start()
    try:
        result = queue.wait_result(task_id, timeout_s=10)
    finally:
        timer.join()
    assert result is not None
    assert result.solution is not None
    assert result.solution.text == "late token"


def test_iterators_as_completed_and_listen(queue: CaptchaQueue) -> None:
    ids = queue.submit_many([TaskSpec("userrecaptcha", RC)] * 3)
    for claim in queue.claim("w", 3):
        queue.complete(claim, "t")
    assert sorted(r.id for r in queue.as_completed(ids, timeout_s=5)) == sorted(ids)
    events = queue.listen(from_id="0-0")
    assert [next(events).id for _ in range(3)] == ids
    events.close()  # type: ignore[attr-defined]


def test_cancel_dead_letters_and_requeue(queue: CaptchaQueue) -> None:
    cancelled = queue.submit("userrecaptcha", RC)
    assert queue.cancel(cancelled)
    doomed = queue.submit("userrecaptcha", RC, max_attempts=1)
    [claim] = queue.claim("w", 1)
    failed = queue.fail(claim, "ERR", retry_in_s=0)
    assert failed is not None
    assert (failed.id, failed.status, failed.error_code) == (doomed, "error", "ERR")
    assert [d.id for d in queue.dead_letters()] == [doomed]
    letter = queue.dead_letter(doomed)
    assert letter is not None
    assert letter.id == doomed
    assert queue.requeue(doomed)
    [claim] = queue.claim("w", 1)
    queue.release(claim)
    assert queue.requeue_all() == 0
    assert queue.purge_dead() == 0
    assert queue.reap() == 0  # the one claim left was released: no lease to reap


def test_errors_cross_the_thread_boundary_unchanged(queue: CaptchaQueue) -> None:
    with pytest.raises(InvalidTask) as info:
        queue.submit("userrecaptcha", RC, priority="asap")
    assert info.value.field == "priority"
    with CaptchaQueue.from_url("redis://127.0.0.1:1/0") as unreachable, pytest.raises(RedisUnavailable):
        unreachable.submit("userrecaptcha", RC)


def test_many_threads_share_one_queue(queue: CaptchaQueue) -> None:
    def submit_batch(_: int) -> list[str]:
        return [queue.submit("userrecaptcha", RC) for _ in range(25)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = [task_id for batch in pool.map(submit_batch, range(8)) for task_id in batch]
    assert len(set(ids)) == 200
    assert queue.stats().queued["normal"] == 200


def test_close_stops_the_loop_thread_and_is_idempotent(redis_url: str, namespace: str) -> None:
    before = {t.ident for t in threading.enumerate() if t.name == "captcha-queue-loop"}
    q = CaptchaQueue.from_url(redis_url, namespace=namespace)
    q.submit("userrecaptcha", RC)
    q.close()
    q.close()
    after = {t.ident for t in threading.enumerate() if t.name == "captcha-queue-loop"}
    assert after <= before
