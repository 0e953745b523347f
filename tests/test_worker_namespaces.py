"""One worker process serving several namespaces with weights (``worker --namespaces a:3,b:1``): the
account's fleet limit N holds across namespaces (at the simulator), both drain, the weights show
while both are backlogged; bad input is one line; ``stats --namespaces`` adds up per-namespace stats.
A real worker subprocess, the simulator, real Redis (and the real 3-primary Cluster where it runs)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner

from captcha_queue.cli import cli
from captcha_queue.errors import InvalidArgument
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.store.keys import Keys
from captcha_queue.worker.config import WorkerSettings, parse_namespaces
from captcha_queue.worker.metrics import WorkerMetrics
from captcha_queue.worker.namespaces import (
    NamespaceEvents,
    NamespaceSeries,
    NamespacesReadiness,
    NamespacesState,
    knows_limit,
    weighted_shares,
)

from .cluster_fixtures import RedisClusterDeployment, needs_cluster_tools
from .helpers import CliEnv, ProcessManager, free_port
from .test_multi_account import readyz, scrape, turnstile
from .test_worker_processes import eventually

KEY = "d4" * 16
SCALE = 0.05
THREADS = 4  # the account's threads at the simulator: N, read by the worker (threadsinfo)
PER_NAMESPACE = 40


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    # Beyond its threads the account answers ERROR_ZERO_BALANCE: N broken would show as that code.
    config = SimulatorConfig(
        keys=(KEY,), time_scale=SCALE, threads=THREADS, over_capacity="zero_balance", seed=5
    )
    async with run_simulator(config) as sim:
        yield sim


# -- the split ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (4, [3, 1], [3, 1]),
        (5, [1, 1], [3, 2]),
        (3, [100, 1, 1], [1, 1, 1]),
        (10, [1, 1, 1], [4, 3, 3]),
        (200, [3, 1], [150, 50]),
        (7, [5, 1, 1], [5, 1, 1]),
        (2, [1, 1000], [1, 1]),
    ],
)
def test_weighted_shares_sum_to_the_total_with_one_at_least_each(
    total: int, weights: list[int], expected: list[int]
) -> None:
    assert weighted_shares(total, weights) == expected


def test_weighted_shares_hold_the_total_for_every_split() -> None:
    for total in range(3, 60):
        for weights in ([3, 1], [1, 1, 1], [5, 2, 1], [1, 1000, 7]):
            shares = weighted_shares(total, weights)
            assert sum(shares) == total
            assert min(shares) >= 1
            exact = [total * w / sum(weights) for w in weights]
            # Less than one off its exact share, but for the slots given to shares raised to 1.
            raised = sum(1 for x in exact if x < 1)
            assert all(abs(s - x) < 1 + raised for s, x in zip(shares, exact, strict=True)), (total, weights)
    with pytest.raises(ValueError, match="cannot be split into 2 shares"):
        weighted_shares(1, [1, 1])


def test_namespaces_setting_refuses_bad_input_naming_it() -> None:
    assert parse_namespaces("a:3, b:1") == [("a", 3), ("b", 1)]
    assert parse_namespaces("x:y:2") == [("x:y", 2)]  # the weight follows the last ':'
    for bad, says in [
        ("a:3,a:1", "a is given twice"),
        ("a:0", "must be 1-1000, not 0"),
        ("a", "is not NAME:WEIGHT"),
        ("a:1.5", "is not NAME:WEIGHT"),
        ("a:nan", "is not NAME:WEIGHT"),
        ("a:-1", "is not NAME:WEIGHT"),
        ("a:1,,b:1", "is not NAME:WEIGHT"),
        ("bad ns:1", "namespace 'bad ns' must be"),
    ]:
        with pytest.raises(InvalidArgument, match=says):
            WorkerSettings(namespaces=bad, solver="instant")
    with pytest.raises(InvalidArgument, match="need --solver-limit 3 at least"):
        WorkerSettings(namespaces="a:1,b:1,c:1", solver="instant", solver_limit=2)
    with pytest.raises(InvalidArgument, match="need --concurrency 2 at least"):
        WorkerSettings(namespaces="a:1,b:1", solver="instant", concurrency=1)
    # With --accounts, each account's registered limit is split (test_namespace_accounts.py).
    assert WorkerSettings(namespaces="a:1,b:1,c:1", solver="instant", accounts="all", solver_limit=2).accounts


@pytest.mark.parametrize("value", ["a:3,a:1", "a:0", "a:x"])
def test_worker_refuses_bad_namespaces_in_one_line(cli_env: CliEnv, value: str) -> None:
    result = CliRunner().invoke(cli, ["worker", "--solver", "instant", "--namespaces", value], env=cli_env)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "namespaces" in lines[0]
    assert "Traceback" not in result.output


# -- one process, two namespaces, one account ---------------------------------------------------------


async def test_one_worker_serves_two_namespaces_by_weight_within_the_account_limit(
    redis_url: str,
    two_namespaces: tuple[str, str],
    subprocess_env: dict[str, str],
    cli_env: CliEnv,
    processes: ProcessManager,
    simulator: RunningSimulator,
) -> None:
    await two_namespaces_by_weight(redis_url, *two_namespaces, subprocess_env, cli_env, processes, simulator)


@needs_cluster_tools
@pytest.mark.timeout(150)
async def test_on_a_cluster_the_namespaces_of_one_worker_live_on_two_primaries(
    subprocess_env: dict[str, str],
    cli_env: CliEnv,
    processes: ProcessManager,
    simulator: RunningSimulator,
) -> None:
    with RedisClusterDeployment() as cluster:
        await asyncio.to_thread(cluster.start)
        names: dict[int, str] = {}
        base = uuid.uuid4().hex[:8]
        for i in range(60):
            names.setdefault(cluster.port_of_slot_owner(Keys(f"c{base}-{i}").prefix), f"c{base}-{i}")
            if len(names) == 2:
                break
        heavy, light = names.values()  # one slot on each of two primaries: one fleet uses both shards
        env = {**subprocess_env, "REDIS_URL": cluster.url}
        await two_namespaces_by_weight(
            cluster.url, heavy, light, env, {**cli_env, "REDIS_URL": cluster.url}, processes, simulator
        )


async def two_namespaces_by_weight(
    redis_url: str,
    heavy: str,
    light: str,
    subprocess_env: dict[str, str],
    cli_env: CliEnv,
    processes: ProcessManager,
    simulator: RunningSimulator,
) -> None:
    """40 tasks in each namespace, one worker with ``heavy:3,light:1`` on an account of 4 threads."""
    async with (
        AsyncCaptchaQueue.from_url(redis_url, namespace=heavy) as qa,
        AsyncCaptchaQueue.from_url(redis_url, namespace=light) as qb,
    ):
        ids_a = await qa.submit_many([turnstile(i) for i in range(PER_NAMESPACE)])
        ids_b = await qb.submit_many([turnstile(i) for i in range(PER_NAMESPACE)])
        port = free_port()
        env = {**subprocess_env, "CAPTCHAAI_KEY": KEY, "CAPTCHAAI_URL": simulator.base_url}
        argv = [
            *("-m", "captcha_queue", "worker", "--namespaces", f"{heavy}:3,{light}:1", "--processes", "1"),
            *("--concurrency", "20", "--lease-s", "2", "--time-scale", str(SCALE), "--grace-s", "2"),
            *("--metrics-port", str(port), "--log-level", "warning"),
        ]
        processes.spawn_python(argv, env, capture=False)

        results_a = [r async for r in qa.as_completed(ids_a, timeout_s=90.0)]
        # The heavy namespace drained first; the light one had its quarter of the account meanwhile.
        light_done_then = (await qb.stats()).completed
        results_b = [r async for r in qb.as_completed(ids_b, timeout_s=90.0)]

        assert len(results_a) == len(results_b) == PER_NAMESPACE
        assert all(r.ok for r in results_a + results_b), [r.error_code for r in results_a + results_b]
        assert 3 <= light_done_then <= PER_NAMESPACE * 0.6, light_done_then  # about 40/3 by weight

        # N held at the service across both namespaces: never more than its threads in flight, and it
        # never had to refuse one (ERROR_ZERO_BALANCE beyond its threads).
        account = simulator.account(KEY)
        assert 3 <= account["max_in_flight"] <= THREADS, account
        assert simulator.stats()["codes"].get("ERROR_ZERO_BALANCE", 0) == 0
        # Each namespace's limiter holds its static share of the account's threads.
        sa, sb = await qa.stats(), await qb.stats()
        assert (sa.solver_slots_limit, sb.solver_slots_limit) == (3, 1)
        assert (sa.completed, sb.completed, sa.failed, sb.failed) == (PER_NAMESPACE, PER_NAMESPACE, 0, 0)

        # Metrics carry the namespace where a value is per namespace; /readyz checks each.
        async def metrics_agree() -> bool:
            samples = await asyncio.to_thread(scrape, port)

            def value(name: str, **labels: str) -> float | None:
                return samples.get((name, tuple(sorted(labels.items()))))

            finished = "captcha_queue_namespace_tasks_finished_total"
            return (
                value(finished, namespace=heavy, status="success") == PER_NAMESPACE
                and value(finished, namespace=light, status="success") == PER_NAMESPACE
                and value("captcha_queue_namespace_solver_slots_limit", namespace=heavy) == 3
                and value("captcha_queue_namespace_solver_slots_limit", namespace=light) == 1
                and value("captcha_queue_tasks_finished_total", status="success") == 2 * PER_NAMESPACE
            )

        await eventually(metrics_agree, timeout_s=20.0, what="per-namespace metrics")
        status, body = await asyncio.to_thread(readyz, port)
        checks = json.loads(body)["checks"]
        assert status == 200, body
        assert {f"limit:{heavy}", f"account:{heavy}", f"limit:{light}", f"account:{light}"} <= set(checks)

        # stats across namespaces: the rows are the per-namespace stats, the totals their sums.
        # (The CLI runs its own event loop: in a thread, off this test's loop.)
        runner = CliRunner()
        args = ["stats", "--namespaces", f"{heavy},{light}"]
        result = await asyncio.to_thread(runner.invoke, cli, [*args, "--json"], env=cli_env)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        for ns, stats in ((heavy, sa), (light, sb)):
            row = doc["namespaces"][ns]
            assert (row["completed"], row["submitted"], row["solver_slots_limit"]) == (
                stats.completed,
                stats.submitted,
                stats.solver_slots_limit,
            )
        totals = doc["totals"]
        assert (totals["completed"], totals["submitted"]) == (2 * PER_NAMESPACE, 2 * PER_NAMESPACE)
        assert (totals["solver_slots_limit"], totals["queued_total"]) == (THREADS, 0)
        table = await asyncio.to_thread(runner.invoke, cli, args, env=cli_env)
        assert table.exit_code == 0, table.output
        total_row = next(line for line in table.output.splitlines() if "total" in line)
        assert str(2 * PER_NAMESPACE) in total_row
        assert f"/ {THREADS}" in total_row


def test_stats_namespaces_refuses_bad_input_in_one_line(cli_env: CliEnv) -> None:
    result = CliRunner().invoke(cli, ["stats", "--namespaces", "a,,b"], env=cli_env)
    assert result.exit_code == 2
    assert "namespaces must be namespace names separated by commas" in result.output
    result = CliRunner().invoke(cli, ["stats", "--namespaces", "a,b", "--watch"], env=cli_env)
    assert result.exit_code == 2
    assert "--namespaces does not combine with --watch" in result.output


async def test_two_processes_hold_the_given_limit_across_namespaces(
    redis_url: str,
    two_namespaces: tuple[str, str],
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    simulator: RunningSimulator,
) -> None:
    """``--solver-limit 3`` split 2 + 1 (equal weights, the first takes the remainder), held by two
    supervised processes together; the namespaces from the environment, passed on to the children."""
    first, second = two_namespaces
    count = 15
    async with (
        AsyncCaptchaQueue.from_url(redis_url, namespace=first) as qa,
        AsyncCaptchaQueue.from_url(redis_url, namespace=second) as qb,
    ):
        ids_a = await qa.submit_many([turnstile(i) for i in range(count)])
        ids_b = await qb.submit_many([turnstile(i) for i in range(count)])
        env = {
            **subprocess_env,
            "CAPTCHAAI_KEY": KEY,
            "CAPTCHAAI_URL": simulator.base_url,
            "CAPTCHA_QUEUE_NAMESPACES": f"{first}:1,{second}:1",
        }
        argv = [
            *("-m", "captcha_queue", "worker", "--processes", "2", "--solver-limit", "3"),
            *("--concurrency", "10", "--lease-s", "2", "--time-scale", str(SCALE), "--grace-s", "2"),
            *("--log-level", "warning"),
        ]
        processes.spawn_python(argv, env, capture=False)
        results = [r async for r in qa.as_completed(ids_a, timeout_s=60.0)]
        results += [r async for r in qb.as_completed(ids_b, timeout_s=60.0)]

        assert len(results) == 2 * count
        assert all(r.ok for r in results), [r.error_code for r in results]
        sa, sb = await qa.stats(), await qb.stats()
        assert (sa.solver_slots_limit, sb.solver_slots_limit) == (2, 1)
        assert (sa.workers, sb.workers) == (2, 2)  # each process serves both namespaces
        assert 2 <= simulator.account(KEY)["max_in_flight"] <= 3


async def test_readyz_checks_the_limit_and_the_pause_of_each_namespace(
    redis_url: str, two_namespaces: tuple[str, str]
) -> None:
    first, second = two_namespaces
    metrics = WorkerMetrics()
    series = NamespaceSeries(metrics.registry)
    state = NamespacesState()
    events = {ns: NamespaceEvents(metrics, series, ns, state) for ns in two_namespaces}
    async with (
        AsyncCaptchaQueue.from_url(redis_url, namespace=first) as qa,
        AsyncCaptchaQueue.from_url(redis_url, namespace=second) as qb,
    ):
        ready = NamespacesReadiness(
            {first: qa, second: qb}, {ns: knows_limit(e) for ns, e in events.items()}, account_ref="acct"
        )
        checks = await ready.check()
        assert [name for name, check in checks.items() if not check.ok] == [
            f"limit:{first}",
            f"limit:{second}",
        ]

        known: list[bool] = []
        for ns in two_namespaces:  # the process knows its limit when every namespace does
            events[ns].set_limit_unknown(False)
            known.append(metrics.limit_known)
        assert known == [False, True]
        assert all(check.ok for check in (await ready.check()).values())

        # The account paused in one namespace: unready, and the check names where.
        await qb.pause("zero balance", account="acct", code="ERROR_ZERO_BALANCE")
        checks = await ready.check()
        assert [name for name, check in checks.items() if not check.ok] == [f"account:{second}"]
        assert "ERROR_ZERO_BALANCE" in checks[f"account:{second}"].detail

        # The process's series are the sums over its namespaces; the labelled ones per namespace.
        events[first].set_slots(2, 3)
        events[second].set_slots(1, 1)
        events[first].set_in_flight(5)
        events[second].set_in_flight(2)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in metrics.registry.collect()
            for s in family.samples
        }
        assert samples[("captcha_queue_solver_slots_used", ())] == 3
        assert samples[("captcha_queue_solver_slots_limit", ())] == 4
        assert samples[("captcha_queue_worker_in_flight", ())] == 7
        assert samples[("captcha_queue_namespace_solver_slots_limit", (("namespace", first),))] == 3
        assert samples[("captcha_queue_namespace_worker_in_flight", (("namespace", second),))] == 2
