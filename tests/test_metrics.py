"""metrics.py: the hooks feed the right series, /metrics serves them, and two registries never collide."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from captcha_queue.errors import SolverBusy, TaskRejected, TransientError, Unsolvable
from captcha_queue.models import Result, Stats
from captcha_queue.worker.metrics import MetricsServer, WorkerMetrics, serve_metrics

CANARY_KEY = "0123456789abcdef0123456789abcdef"


def scrape(server: MetricsServer) -> dict[str, list[Sample]]:
    """GET /metrics and parse it with prometheus_client's own parser: family name -> samples."""
    with urllib.request.urlopen(server.url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict[str, list[Sample]], sample_name: str, **labels: str) -> float:
    """The one sample named ``sample_name`` whose labels include ``labels``."""
    matches = [
        s
        for samples in families.values()
        for s in samples
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, (sample_name, labels, matches)
    return matches[0].value


def result(
    status: str = "success",
    *,
    priority: str = "normal",
    method: str = "turnstile",
    wait_s: float = 0.5,
    solve_s: float = 2.0,
    e2e_s: float = 3.0,
) -> Result:
    return Result(
        id="t1",
        status=status,  # type: ignore[arg-type]
        method=method,
        priority=priority,  # type: ignore[arg-type]
        attempts=1,
        submitted_at=1_000.0,
        finished_at=1_000.0 + e2e_s,
        queue_wait_s=wait_s,
        solve_s=solve_s,
    )


@pytest.fixture
def metrics() -> WorkerMetrics:
    return WorkerMetrics(methods=("turnstile", "base64"))


@pytest.fixture
def server(metrics: WorkerMetrics) -> Iterator[MetricsServer]:
    with metrics.serve(0) as running:
        yield running


def test_counters_match_what_was_recorded(metrics: WorkerMetrics, server: MetricsServer) -> None:
    for _ in range(7):
        metrics.task_started()
    for _ in range(5):
        metrics.task_finished(result("success", priority="high"))
    metrics.task_finished(result("error", priority="low", method="base64"))
    metrics.task_finished(result("expired"))
    metrics.retry(TransientError("HTTP_502"))
    metrics.retry(TransientError("TIMEOUT"))
    metrics.retry(Unsolvable("ERROR_CAPTCHA_UNSOLVABLE"))
    metrics.retry("stalled")
    metrics.retry("no-such-reason")
    for _ in range(4):
        metrics.solver_request("in", "OK")
    metrics.solver_request("in.php", "ERROR_NO_SLOT_AVAILABLE")
    for _ in range(3):
        metrics.solver_request("res", "CAPCHA_NOT_READY")
    metrics.solver_request("res", "OK")

    got = scrape(server)
    assert value(got, "captcha_queue_tasks_started_total") == 7
    assert value(got, "captcha_queue_tasks_finished_total", status="success") == 5
    assert value(got, "captcha_queue_tasks_finished_total", status="error") == 1
    assert value(got, "captcha_queue_tasks_finished_total", status="expired") == 1
    assert value(got, "captcha_queue_tasks_finished_total", status="cancelled") == 0
    assert value(got, "captcha_queue_retries_total", reason="transient") == 2
    assert value(got, "captcha_queue_retries_total", reason="unsolvable") == 1
    assert value(got, "captcha_queue_retries_total", reason="stalled") == 1
    assert value(got, "captcha_queue_retries_total", reason="other") == 1
    assert value(got, "captcha_queue_solver_requests_total", endpoint="in", code="OK") == 4
    assert (
        value(got, "captcha_queue_solver_requests_total", endpoint="in", code="ERROR_NO_SLOT_AVAILABLE") == 1
    )
    assert value(got, "captcha_queue_solver_requests_total", endpoint="res", code="CAPCHA_NOT_READY") == 3
    assert value(got, "captcha_queue_solver_requests_total", endpoint="res", code="OK") == 1


def test_histograms_observe_the_result_timings(metrics: WorkerMetrics, server: MetricsServer) -> None:
    metrics.task_finished(result(priority="high", wait_s=0.02, solve_s=1.5, e2e_s=1.6))
    metrics.task_finished(result(priority="high", wait_s=0.2, solve_s=4.0, e2e_s=4.5))
    metrics.task_finished(result(priority="low", method="base64", wait_s=30.0, solve_s=0.7, e2e_s=31.0))

    got = scrape(server)
    assert value(got, "captcha_queue_queue_wait_seconds_count", priority="high") == 2
    assert value(got, "captcha_queue_queue_wait_seconds_sum", priority="high") == pytest.approx(0.22)
    assert value(got, "captcha_queue_queue_wait_seconds_count", priority="low") == 1
    assert value(got, "captcha_queue_queue_wait_seconds_count", priority="normal") == 0
    assert value(got, "captcha_queue_end_to_end_seconds_sum", priority="high") == pytest.approx(6.1)
    assert value(got, "captcha_queue_solve_seconds_count", method="turnstile") == 2
    assert value(got, "captcha_queue_solve_seconds_sum", method="base64") == pytest.approx(0.7)
    # the 0.05 s bucket of high-priority queue wait holds exactly the first task
    assert value(got, "captcha_queue_queue_wait_seconds_bucket", priority="high", le="0.05") == 1
    assert value(got, "captcha_queue_queue_wait_seconds_bucket", priority="high", le="+Inf") == 2


def test_gauges_from_hooks_and_stats(metrics: WorkerMetrics, server: MetricsServer) -> None:
    got = scrape(server)
    assert math.isnan(value(got, "captcha_queue_solver_slots_limit"))
    assert value(got, "captcha_queue_paused") == 0

    metrics.set_in_flight(42)
    metrics.set_slots(9, 10)
    metrics.set_paused(True)
    metrics.set_account_paused(True)
    metrics.set_limit_unknown(True)
    metrics.account_paused("ERROR_ZERO_BALANCE")
    metrics.account_paused("ERROR: 1001")  # not a label-safe code
    got = scrape(server)
    assert value(got, "captcha_queue_account_paused") == 1
    assert value(got, "captcha_queue_solver_limit_unknown") == 1
    assert value(got, "captcha_queue_account_pauses_total", code="ERROR_ZERO_BALANCE") == 1
    assert value(got, "captcha_queue_account_pauses_total", code="OTHER") == 1
    assert value(got, "captcha_queue_worker_in_flight") == 42
    assert value(got, "captcha_queue_solver_slots_used") == 9
    assert value(got, "captcha_queue_solver_slots_limit") == 10
    assert value(got, "captcha_queue_paused") == 1

    stats = Stats(
        queued={"high": 3, "normal": 20, "low": 100},
        delayed=4,
        in_flight=17,
        completed=50,
        failed=2,
        dead=3,
        cancelled=0,
        expired=0,
        workers=2,
        oldest_queued_age_s=12.5,
        paused=None,
        solver_slots_used=15,
        solver_slots_limit=20,
        submitted=170,
        dead_letters=1,
    )
    metrics.observe_stats(stats, now_s=1_700_000_000.0)
    got = scrape(server)
    assert value(got, "captcha_queue_queued", priority="high") == 3
    assert value(got, "captcha_queue_queued", priority="low") == 100
    assert value(got, "captcha_queue_delayed") == 4
    assert value(got, "captcha_queue_in_flight") == 17
    assert value(got, "captcha_queue_workers") == 2
    assert value(got, "captcha_queue_oldest_queued_age_seconds") == 12.5
    assert value(got, "captcha_queue_dead_letters") == 1
    assert value(got, "captcha_queue_paused") == 0
    assert value(got, "captcha_queue_account_paused") == 1  # this worker's account: not in Stats
    assert value(got, "captcha_queue_solver_slots_used") == 15
    assert value(got, "captcha_queue_namespace_events_total", event="submitted") == 170
    assert value(got, "captcha_queue_namespace_events_total", event="completed") == 50
    assert value(got, "captcha_queue_namespace_events_total", event="dead") == 3
    assert value(got, "captcha_queue_stats_refreshed_timestamp_seconds") == 1_700_000_000.0


def test_two_workers_in_one_process_keep_separate_registries() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()
    first.task_started()
    with first.serve(0) as s1, serve_metrics(second, 0) as s2:
        assert s1.port != s2.port
        assert value(scrape(s1), "captcha_queue_tasks_started_total") == 1
        assert value(scrape(s2), "captcha_queue_tasks_started_total") == 0


def test_label_values_stay_bounded_and_never_carry_free_text(
    metrics: WorkerMetrics, server: MetricsServer
) -> None:
    # A code that is not an upper-case service code (a leaked key, an HTML page) is counted as OTHER.
    metrics.solver_request("in", CANARY_KEY)
    metrics.solver_request("res", f"ERROR key={CANARY_KEY}")
    metrics.solver_request("somewhere", "OK")
    for n in range(300):
        metrics.solver_request("res", f"ERROR_MADE_UP_{n}")
    metrics.task_finished(result(method="Not A Method"))
    for n in range(50):
        metrics.task_finished(result(method=f"method_{n}"))
    metrics.retry(TaskRejected("ERROR_PAGEURL"))
    metrics.retry(SolverBusy("ERROR_NO_SLOT_AVAILABLE"))

    with urllib.request.urlopen(server.url, timeout=5) as response:
        text = response.read().decode()
    assert CANARY_KEY not in text
    got = {f.name: f.samples for f in text_string_to_metric_families(text)}
    requests = got["captcha_queue_solver_requests"]
    codes = {s.labels["code"] for s in requests if s.name.endswith("_total")}
    assert len(codes) <= 201
    assert value(got, "captcha_queue_solver_requests_total", endpoint="other", code="OK") == 1
    assert value(got, "captcha_queue_solver_requests_total", endpoint="in", code="OTHER") == 1
    methods = {s.labels["method"] for s in got["captcha_queue_solve_seconds"]}
    assert len(methods) <= 32
    assert "Not A Method" not in methods
    assert value(got, "captcha_queue_retries_total", reason="other") == 1
    assert value(got, "captcha_queue_retries_total", reason="busy") == 1


def test_serving_on_a_busy_port_is_one_clear_error(server: MetricsServer) -> None:
    from captcha_queue.errors import CaptchaQueueError

    with pytest.raises(CaptchaQueueError, match=f"cannot serve metrics on 127.0.0.1:{server.port}"):
        serve_metrics(WorkerMetrics(), server.port)


@pytest.mark.timeout(60)
async def test_a_real_worker_feeds_the_metrics_it_serves(redis_url: str, namespace: str) -> None:
    """A Worker on the real queue with the instant solver: /metrics agrees with what was done."""
    import asyncio

    from captcha_queue.models import TaskSpec
    from captcha_queue.queue._producer import AsyncCaptchaQueue
    from captcha_queue.solvers.instant import InstantSolver
    from captcha_queue.worker.runtime import Worker, WorkerConfig

    per_priority = 8
    metrics = WorkerMetrics(methods=("turnstile",))
    params = {"sitekey": "0x4AAAAAAA", "pageurl": "https://example.com"}
    specs = [
        TaskSpec(method="turnstile", params=params, priority=priority)  # type: ignore[arg-type]
        for priority in ("high", "normal", "low")
        for _ in range(per_priority)
    ]
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        ids = await q.submit_many(specs)
        solver = InstantSolver()
        worker = Worker(
            q, solver, WorkerConfig(concurrency=10, claim_block_s=0.2, lease_s=10.0), events=metrics
        )
        running = asyncio.create_task(worker.run())
        try:
            results = [r async for r in q.as_completed(ids, timeout_s=30.0)]
        finally:
            worker.stop()
            await running
            await solver.aclose()
        await metrics.refresh(q)

    total = 3 * per_priority
    assert len(results) == total
    assert all(r.ok for r in results)
    with metrics.serve(0) as server:
        got = await asyncio.to_thread(scrape, server)
    assert value(got, "captcha_queue_tasks_started_total") == total
    assert value(got, "captcha_queue_tasks_finished_total", status="success") == total
    assert value(got, "captcha_queue_tasks_finished_total", status="error") == 0
    assert value(got, "captcha_queue_solver_requests_total", endpoint="in", code="OK") == total
    for priority in ("high", "normal", "low"):
        assert value(got, "captcha_queue_queue_wait_seconds_count", priority=priority) == per_priority
        assert value(got, "captcha_queue_end_to_end_seconds_count", priority=priority) == per_priority
        assert value(got, "captcha_queue_queued", priority=priority) == 0
    assert value(got, "captcha_queue_solve_seconds_count", method="turnstile") == total
    assert value(got, "captcha_queue_namespace_events_total", event="submitted") == total
    assert value(got, "captcha_queue_namespace_events_total", event="completed") == total
    assert value(got, "captcha_queue_in_flight") == 0
    assert value(got, "captcha_queue_worker_in_flight") == 0
