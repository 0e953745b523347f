"""The gateway bench (bench/gateway.py, workload GW) at a toy size, so its code keeps working; no speed
is asserted here (the figures come from ``make bench`` on a quiet machine)."""

from __future__ import annotations

import pytest
from bench.gateway import GatewaySizes, run_gateway_bench
from bench.report import check_targets, format_table


@pytest.mark.timeout(120)
async def test_the_gateway_bench_measures_all_three(redis_url: str) -> None:
    sizes = GatewaySizes(
        duration_s=0.5, connections=4, load_processes=1, poll_tasks=50, paced_rate=100, paced_s=0.5
    )
    results = await run_gateway_bench(redis_url, sizes)
    by_metric = {name: r.get(name) for r in results for name in r.metrics}
    assert (by_metric["inphp_per_s"] or 0) > 0
    assert (by_metric["resphp_per_s"] or 0) > 0
    assert by_metric["p99_ms"] is not None
    assert all(r.metrics["errors"] == 0 for r in results)  # every request answered OK
    targets = {t.name: t for t in check_targets(results, poll_bound=5, rss_in_flight=2000)}
    assert targets["Gateway poll p99 at the paced rate"].met is not None
    assert "GW gateway" in format_table(results)


@pytest.mark.timeout(120)
async def test_the_gateway_w2_run_completes_every_task(redis_url: str) -> None:
    from bench.gateway import run_gateway_w2

    from captcha_queue.simulator import LatencyModel, SimulatorConfig, run_simulator

    config = SimulatorConfig(
        time_scale=0.02, threads=1000, latency={"turnstile": LatencyModel.parse("19.5:19.5:19.5")}
    )
    async with run_simulator(config) as sim:
        sizes = GatewaySizes(w2_clients=10, w2_tasks=20)
        result = await run_gateway_w2(redis_url, sim.base_url, time_scale=0.02, solve_s=20.0, sizes=sizes)
    assert result.metrics["errors"] == 0
    assert (result.get("throughput_per_s") or 0) > 0
    assert (result.get("resphp_per_task") or 0) >= 1  # every task polled at least once through the gateway
    assert sim.stats()["submits"] == 20  # every task reached the provider once
