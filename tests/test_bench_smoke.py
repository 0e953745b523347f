"""The bench suite at a toy size, so ``make test`` keeps its code from rotting (no speed is asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import naive
from bench.harness import RunResult, ScriptCounter, percentile
from bench.report import Meta, check_targets, format_table, write_markdown
from bench.workloads import w1_task

from captcha_queue import AsyncCaptchaQueue, TaskSpec

from .helpers import RC


async def test_naive_baseline_runs_and_counts(redis_url: str) -> None:
    tasks = [w1_task(n) for n in range(60)]
    result = await naive.run_naive_throughput(
        redis_url, workload="W1", tasks=tasks, processes=1, time_scale=0.02, timeout_s=30
    )
    assert result.error is None
    assert result.metrics["completed"] == 60
    assert (result.get("throughput_per_s") or 0) > 0
    assert (result.get("redis_cmds_per_task") or 0) > 0


def test_report_writer_and_targets(tmp_path: Path) -> None:
    results = [
        RunResult("W1", "captcha-queue", "1 proc", {"throughput_per_s": 5000.0, "redis_cmds_per_task": 9.0}),
        RunResult("W1", "arq", "1 proc", {"throughput_per_s": 1000.0}),
        RunResult(
            "W2",
            "captcha-queue",
            "1 proc x 2000, limit 2000",
            {"throughput_per_s": 1900.0, "ideal_per_s": 2000.0, "pct_of_ideal": 95.0, "resphp_per_task": 3.0},
        ),
        RunResult("W2", "naive", "4 procs", {"throughput_per_s": 3.6, "processes": 4}),
        RunResult("W3", "captcha-queue", "1 waiter", {"wake_p50_ms": 0.4, "wake_p99_ms": 1.2}),
        RunResult("W2", "saq", "1 proc x 2000", error="BenchError: it broke"),
    ]
    targets = check_targets(results, poll_bound=5, rss_in_flight=2000)
    by_name = {t.name: t for t in targets}
    assert by_name["W1 vs the best peer"].met is True
    assert by_name["W2 throughput vs ideal"].met is True
    assert by_name["W2 vs the naive design"].met is True
    assert by_name["W3 wake-up p99, 1 waiter"].met is True
    assert by_name["Queue overhead p99"].met is None  # not measured here
    meta = Meta(
        date="2000-01-01", command="python -m bench --quick", machine={"cpu": "x"}, versions={"a": "1"}
    )
    path = tmp_path / "results" / "2000-01-01.md"
    write_markdown(path, meta, results, targets)
    text = path.read_text()
    assert "python -m bench --quick" in text
    assert "| W2 throughput vs ideal |" in text
    assert "failed: BenchError: it broke" in text
    assert "W3" in format_table(results, targets)


def test_chart_draws(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench.report import draw_chart

    results = [
        RunResult("W1", "captcha-queue", "1 proc", {"throughput_per_s": 5000.0}),
        RunResult("W1", "naive", "1 proc", {"throughput_per_s": 3000.0}),
        RunResult("W3", "captcha-queue", "1 waiter", {"wake_p50_ms": 0.4, "wake_p99_ms": 1.2}),
    ]
    path = tmp_path / "chart.png"
    draw_chart(path, results)
    assert path.stat().st_size > 1000


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0


@pytest.mark.timeout(30)
async def test_script_counter_attributes_lua_commands_to_their_script(redis_url: str, namespace: str) -> None:
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        await q.submit_many([TaskSpec("userrecaptcha", RC)] * 3)
        first = await q.claim("w", 1, block_s=0)
        await q.complete(first[0], "token")  # every script loaded: no NOSCRIPT retry below
        with ScriptCounter(redis_url) as counter:
            claims = await q.claim("w", 2, block_s=0)
            await q.complete(claims[0], "token")
    assert len(claims) == 2
    # A fenced finish of an active task: EVALSHA and 13 commands inside (docs/benchmarks.md).
    assert counter.counts["completeTask"] == 14
    assert counter.counts["claimTasks"] > 2
    assert counter.per_task(2)["completeTask"] == 7.0
