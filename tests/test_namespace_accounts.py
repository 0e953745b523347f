"""Several namespaces with their registered accounts in one worker process (``worker --namespaces a:3,b:1
--accounts all``): an account registered in both namespaces has its fleet limit split by weight and
held at the simulator, an account of one namespace keeps its whole limit there; the sums of the
metrics; bad registrations refused in one line. A real worker subprocess, the simulator, real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner

from captcha_queue.cli import cli
from captcha_queue.errors import ConfigError
from captcha_queue.models import AccountSpec, Result
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.solvers.base import account_ref, key_fingerprint
from captcha_queue.worker.metrics import WorkerMetrics
from captcha_queue.worker.namespace_accounts import MixedEvents, MixedState, share_accounts
from captcha_queue.worker.namespaces import NamespaceSeries

from .helpers import CliEnv, ProcessManager, free_port
from .test_multi_account import readyz, scrape, turnstile
from .test_worker_processes import eventually

SHARED = "e5" * 16
SOLO = "f6" * 16
SCALE = 0.05
SHARED_LIMIT = 4  # split 3 + 1 by the weights 3:1
SOLO_LIMIT = 2  # registered in the light namespace only: all of it there
PER_NAMESPACE = 30


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(
        keys=(SHARED, SOLO), names={SHARED: "shared", SOLO: "solo"}, time_scale=SCALE, threads=50, seed=7
    )
    async with run_simulator(config) as sim:
        yield sim


def spec(name: str, **fields: object) -> AccountSpec:
    base: dict[str, object] = {"limit": 4, "key_env": f"{name.upper()}_KEY"}
    return AccountSpec(name=name, **{**base, **fields})  # type: ignore[arg-type]


# -- the plan ----------------------------------------------------------------------------------------


def test_an_account_in_several_namespaces_is_split_by_weight_and_one_in_one_keeps_its_limit() -> None:
    plan = share_accounts(
        {"a": [spec("x", limit=10, priority=5)], "b": [spec("x", limit=10), spec("y", limit=3)]},
        {"a": 3, "b": 1},
    )
    assert [(s.spec.name, s.limit) for s in plan["a"]] == [("x", 8)]
    assert [(s.spec.name, s.limit) for s in plan["b"]] == [("x", 2), ("y", 3)]
    assert plan["a"][0].spec.priority == 5  # routing is each namespace's own
    assert plan["b"][1].of_threads is None  # one namespace: the threads are all its own

    threads = share_accounts({"a": [spec("t", limit=None)], "b": [spec("t", limit=None)]}, {"a": 1, "b": 1})
    of_threads = [s.of_threads for s in (threads["a"][0], threads["b"][0])]
    assert [s.limit for s in (threads["a"][0], threads["b"][0])] == [None, None]
    assert [f(5) for f in of_threads if f is not None] == [3, 2]
    assert [f(1) for f in of_threads if f is not None] == [None, None]  # too few threads for a share

    only = share_accounts({"a": [spec("x")], "b": [spec("x"), spec("y")]}, {"a": 1, "b": 1}, ["x"])
    assert [[s.spec.name for s in shares] for shares in only.values()] == [["x"], ["x"]]


@pytest.mark.parametrize(
    ("registered", "wanted", "says"),
    [
        (
            {"a": [spec("x")], "b": [spec("x", key_env="OTHER")]},
            None,
            r"registered differently .* \(key_env\)",
        ),
        ({"a": [spec("x")], "b": [spec("x", limit=5)]}, None, r"namespaces a and b \(limit\)"),
        ({"a": [spec("x", limit=1)], "b": [spec("x", limit=1)]}, None, "limit 1 cannot be shared by the 2"),
        ({"a": [spec("x")], "b": [spec("y")]}, ["z"], "no registered account z"),
        ({"a": [spec("x")], "b": [spec("y")]}, ["x"], "namespace b has no account to serve"),
        ({"a": [spec("x")], "b": []}, None, "namespace b has no account to serve"),
    ],
)
def test_the_plan_refuses_what_would_break_an_account_limit(
    registered: dict[str, list[AccountSpec]], wanted: list[str] | None, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        share_accounts(registered, {"a": 1, "b": 1}, wanted)


def test_mixed_events_sum_by_namespace_by_account_and_in_all() -> None:
    metrics = WorkerMetrics()
    series = NamespaceSeries(metrics.registry)
    state = MixedState()
    ev = {
        (ns, acct): MixedEvents(metrics, series, ns, acct, state)
        for ns, acct in (("a", "x"), ("b", "x"), ("b", "y"))
    }

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    ev["a", "x"].set_in_flight(3)
    ev["b", "x"].set_in_flight(1)
    ev["b", "y"].set_in_flight(2)
    assert value("captcha_queue_namespace_worker_in_flight", namespace="b") == 3
    assert value("captcha_queue_account_in_flight", account="x") == 4
    assert value("captcha_queue_worker_in_flight") == 6

    ev["a", "x"].set_slots(3, 3)
    ev["b", "x"].set_slots(1, 1)
    assert value("captcha_queue_account_slots_limit", account="x") == 4  # the shares add up to its N
    assert value("captcha_queue_namespace_solver_slots_used", namespace="b") == 1
    ev["b", "y"].set_slots(2, 2)
    assert value("captcha_queue_namespace_solver_slots_limit", namespace="b") == 3
    assert value("captcha_queue_solver_slots_used") == 6

    ev["a", "x"].set_account_paused(True)  # paused in one namespace: x still works in the other
    assert value("captcha_queue_account_paused_state", account="x") == 0
    ev["b", "x"].set_account_paused(True)
    assert value("captcha_queue_account_paused_state", account="x") == 1

    assert not state.namespace_known("b")()
    ev["b", "y"].set_limit_unknown(False)
    assert state.namespace_known("b")()
    assert not state.namespace_known("a")()
    assert metrics.limit_known  # one account of the process can send solves

    done = Result(
        id="t",
        status="success",
        method="turnstile",
        priority="normal",
        attempts=1,
        submitted_at=0.0,
        finished_at=1.0,
    )
    ev["b", "y"].task_finished(done)
    assert value("captcha_queue_namespace_tasks_finished_total", namespace="b", status="success") == 1
    assert value("captcha_queue_account_tasks_finished_total", account="y", status="success") == 1


def test_worker_refuses_an_account_registered_nowhere_in_one_line(
    cli_env: CliEnv, two_namespaces: tuple[str, str]
) -> None:
    heavy, light = two_namespaces
    argv = ["worker", "--namespaces", f"{heavy}:1,{light}:1", "--accounts", "ghost", "--processes", "1"]
    argv += ["--startup-timeout-s", "5"]
    result = CliRunner().invoke(cli, argv, env=cli_env)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "no registered account ghost" in lines[0]


# -- one process, two namespaces, two accounts ----------------------------------------------------------


@pytest.mark.timeout(120)
async def test_one_worker_serves_the_accounts_of_two_namespaces_within_each_account_limit(
    redis_url: str,
    two_namespaces: tuple[str, str],
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    simulator: RunningSimulator,
) -> None:
    heavy, light = two_namespaces
    url = simulator.base_url
    async with (
        AsyncCaptchaQueue.from_url(redis_url, namespace=heavy) as qh,
        AsyncCaptchaQueue.from_url(redis_url, namespace=light) as ql,
    ):
        shared = AccountSpec(name="shared", base_url=url, limit=SHARED_LIMIT, key_env="SHARED_KEY")
        await qh.add_account(shared)
        await ql.add_account(shared)
        # In the light namespace the solo account comes first: most of its work goes there.
        await ql.add_account(
            AccountSpec(name="solo", base_url=url, limit=SOLO_LIMIT, priority=5, key_env="SOLO_KEY")
        )
        ids_h = await qh.submit_many([turnstile(i) for i in range(PER_NAMESPACE)])
        ids_l = await ql.submit_many([turnstile(i) for i in range(PER_NAMESPACE)])
        port = free_port()
        env = {**subprocess_env, "SHARED_KEY": SHARED, "SOLO_KEY": SOLO}
        argv = [
            *("-m", "captcha_queue", "worker", "--namespaces", f"{heavy}:3,{light}:1", "--accounts", "all"),
            *("--processes", "1", "--concurrency", "20", "--lease-s", "2", "--time-scale", str(SCALE)),
            *("--grace-s", "2", "--metrics-port", str(port), "--log-level", "warning"),
        ]
        processes.spawn_python(argv, env, capture=False)
        results = [r async for r in qh.as_completed(ids_h, timeout_s=90.0)]
        results += [r async for r in ql.as_completed(ids_l, timeout_s=90.0)]

        assert len(results) == 2 * PER_NAMESPACE
        assert all(r.ok for r in results), [r.error_code for r in results if not r.ok]
        shared_ref = account_ref("shared", key_fingerprint(SHARED))
        solo_ref = account_ref("solo", key_fingerprint(SOLO))
        assert {r.account for r in results[:PER_NAMESPACE]} == {shared_ref}  # heavy has only shared
        assert solo_ref in {r.account for r in results[PER_NAMESPACE:]}
        # Each account's limit held at the service across both namespaces.
        assert 2 <= simulator.account(SHARED)["max_in_flight"] <= SHARED_LIMIT
        assert 1 <= simulator.account(SOLO)["max_in_flight"] <= SOLO_LIMIT
        # The shared account's limiters hold 3 + 1 of its 4; solo has its 2 in the light namespace.
        assert (await qh.stats("shared")).solver_slots_limit == 3
        assert (await ql.stats("shared")).solver_slots_limit == 1
        assert (await ql.stats("solo")).solver_slots_limit == SOLO_LIMIT

        by_account = {
            "shared": sum(r.account == shared_ref for r in results),
            "solo": sum(r.account == solo_ref for r in results),
        }

        async def metrics_agree() -> bool:
            samples = await asyncio.to_thread(scrape, port)

            def value(name: str, **labels: str) -> float | None:
                return samples.get((name, tuple(sorted(labels.items()))))

            finished = "captcha_queue_namespace_tasks_finished_total"
            account_finished = "captcha_queue_account_tasks_finished_total"
            return (
                value(finished, namespace=heavy, status="success") == PER_NAMESPACE
                and value(finished, namespace=light, status="success") == PER_NAMESPACE
                and value(account_finished, account="shared", status="success") == by_account["shared"]
                and value(account_finished, account="solo", status="success") == by_account["solo"]
                and value("captcha_queue_account_slots_limit", account="shared") == SHARED_LIMIT
                and value("captcha_queue_namespace_solver_slots_limit", namespace=light) == 1 + SOLO_LIMIT
            )

        await eventually(metrics_agree, timeout_s=20.0, what="per-namespace and per-account metrics")
        status, body = await asyncio.to_thread(readyz, port)
        assert status == 200, body
        checks = json.loads(body)["checks"]
        assert {f"limit:{heavy}", f"account:{heavy}", f"limit:{light}", f"account:{light}"} <= set(checks)
        for key in (SHARED, SOLO):
            assert key not in body
