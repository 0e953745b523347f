"""Refunds: results say who solved them, ``report`` queues one verdict for that account, and a worker
of that account (and no other) sends it to the service: real Redis, the simulator, worker subprocesses."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from captcha_queue import CaptchaQueue
from captcha_queue.cli import cli
from captcha_queue.errors import InvalidArgument, ScriptError, TaskNotFound
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.solvers.base import account_ref, key_fingerprint

from .helpers import RC, CliEnv, ProcessManager, claim_all, free_port
from .test_worker_processes import eventually

KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"
REF = account_ref("main", key_fingerprint(KEY))


async def solved(q: AsyncCaptchaQueue, n: int = 1, *, account: str = REF) -> list[str]:
    """``n`` tasks completed by hand as a worker of ``account`` would (remote ids r0, r1, ...)."""
    ids = [await q.submit("userrecaptcha", RC) for _ in range(n)]
    for i, claim in enumerate(await claim_all(q, n)):
        claim = await q.record_remote(claim, f"r{i}")
        await q.complete(claim, "token", provider="captchaai", account=account)
    return ids


async def test_a_result_says_who_solved_it(queue: AsyncCaptchaQueue) -> None:
    (task_id,) = await solved(queue)
    result = await queue.get_result(task_id)
    assert result is not None
    assert result.ok
    assert (result.provider, result.account, result.remote_id) == ("captchaai", REF, "r0")


async def test_a_verdict_is_queued_once_for_the_account_that_solved_it(queue: AsyncCaptchaQueue) -> None:
    first, second = await solved(queue, 2)
    assert await queue.report(first, correct=False) is True
    assert await queue.report(first, correct=False) is False  # once per task, whatever the verdict
    assert await queue.report(first, correct=True) is False
    assert await queue.report(second, correct=True) is True
    assert await queue.take_reports(account_ref("main", key_fingerprint(OTHER_KEY))) == []
    taken = await queue.take_reports(REF, 10, lease_s=30.0)
    assert [(r.id, r.remote_id, r.correct, r.account) for r in taken] == [
        (first, "r0", False, REF),
        (second, "r1", True, REF),
    ]
    assert await queue.take_reports(REF) == []  # held under the lease
    for request in taken:
        await queue.ack_report(request)
    assert await queue.client.zcard(queue.keys.reports_taken(REF)) == 0


async def test_a_request_not_acked_is_handed_out_again_after_its_lease(queue: AsyncCaptchaQueue) -> None:
    """At least once: a worker that dies between take and ack leaves the request to the next one."""
    (task_id,) = await solved(queue)
    assert await queue.report(task_id, correct=False)
    (taken,) = await queue.take_reports(REF, lease_s=0.2)
    assert await queue.take_reports(REF) == []
    again: list[object] = []

    async def handed_out_again() -> bool:
        again.extend(await queue.take_reports(REF, lease_s=30.0))
        return bool(again)

    await eventually(handed_out_again, timeout_s=5.0, what="the request comes back after its lease")
    assert again == [taken]
    await queue.ack_report(taken)
    await asyncio.sleep(0.25)
    assert await queue.take_reports(REF, lease_s=0.2) == []


async def test_what_cannot_be_reported_is_refused_and_writes_nothing(queue: AsyncCaptchaQueue) -> None:
    (ok_id,) = await solved(queue)
    failing = await queue.submit("userrecaptcha", RC)
    (claim,) = await claim_all(queue, 1)
    await queue.fail(claim, "ERROR_CAPTCHA_UNSOLVABLE", "no")
    queued = await queue.submit("userrecaptcha", RC)
    no_account = await queue.submit("userrecaptcha", RC)
    (claim,) = await claim_all(queue, 1)
    await queue.complete(claim, "token")  # a worker before this version: no account, no remote id
    for task_id in ("no-such-task", failing, queued, no_account):
        with pytest.raises(TaskNotFound):
            await queue.report(task_id, correct=False)
    for bad_id in ("", "   ", "x" * 201, 7, None):
        with pytest.raises(InvalidArgument):
            await queue.report(bad_id, correct=False)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await queue.report(ok_id, correct="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await queue.report(ok_id, correct=float("nan"))  # type: ignore[arg-type]
    assert await queue.client.llen(queue.keys.reports(REF)) == 0
    assert await queue.report(ok_id, correct=False) is True  # none of the refusals marked it


async def test_an_error_result_says_which_account_failed_it_and_cannot_be_reported(
    queue: AsyncCaptchaQueue,
) -> None:
    """A final error names the provider and account of its last attempt (the dashboard's errors per
    account), never a remote id: a verdict is only for answers that were paid for."""
    task_id = await queue.submit("userrecaptcha", RC)
    (claim,) = await claim_all(queue, 1)
    await queue.record_remote(claim, "r9")
    result = await queue.fail(claim, "ERROR_CAPTCHA_UNSOLVABLE", "no", provider="2captcha", account=REF)
    assert result is not None
    assert (result.status, result.provider, result.account, result.remote_id) == (
        "error",
        "2captcha",
        REF,
        None,
    )
    assert await queue.get_result(task_id) == result
    with pytest.raises(TaskNotFound):
        await queue.report(task_id, correct=False)
    retried = await queue.submit("userrecaptcha", RC, max_attempts=1)
    (claim,) = await claim_all(queue, 1)
    dead = await queue.fail(claim, "ERROR_X", "x", retry_in_s=1.0, provider="captchaai", account=REF)
    assert dead is not None
    assert (dead.status, dead.account) == ("error", REF)
    assert (await queue.get_result(retried)) == dead
    await queue.submit("userrecaptcha", RC)
    (claim,) = await claim_all(queue, 1)
    with pytest.raises(InvalidArgument):
        await queue.fail(claim, "ERROR_X", account="a:b")
    assert await queue.status(claim.task_id) == "active"


async def test_a_bad_account_ref_is_refused_at_completion(queue: AsyncCaptchaQueue) -> None:
    await queue.submit("userrecaptcha", RC)
    (claim,) = await claim_all(queue, 1)
    with pytest.raises(InvalidArgument):
        await queue.complete(claim, "token", account="a:b")
    assert await queue.status(claim.task_id) == "active"


def test_the_sync_twin_and_the_cli(redis_url: str, namespace: str, cli_env: CliEnv) -> None:
    async def make() -> list[str]:
        async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
            return await solved(q, 2)

    first, second = asyncio.run(make())
    with CaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        assert q.report(first, correct=True) is True
        assert q.report(first, correct=False) is False
    runner = CliRunner()
    done = runner.invoke(cli, ["report", second, "--bad"], env=cli_env)
    assert done.exit_code == 0, done.output
    assert f"reported {second} bad" in done.output
    again = runner.invoke(cli, ["report", second, "--good", "--json"], env=cli_env)
    assert again.exit_code == 1
    assert '"recorded": false' in again.output.replace('":false', '": false')
    missing = runner.invoke(cli, ["report", "no-such-task", "--bad"], env=cli_env)
    assert missing.exit_code == 1
    assert "no result for task no-such-task" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    neither = runner.invoke(cli, ["report", second], env=cli_env)
    assert neither.exit_code == 2
    assert "--bad" in neither.output


# -- end to end: worker subprocesses and the simulator -----------------------------------------------

SCALE = 0.05


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(time_scale=SCALE, threads=20, seed=3)) as sim:
        yield sim


def start_worker(
    processes: ProcessManager, env: dict[str, str], sim: RunningSimulator, key: str, metrics_port: int
) -> subprocess.Popen[bytes]:
    env = {**env, "CAPTCHAAI_KEY": key, "CAPTCHAAI_URL": sim.base_url}
    argv = [
        *("-m", "captcha_queue", "worker", "--processes", "1", "--concurrency", "20"),
        *("--account", "main", "--lease-s", "2", "--time-scale", str(SCALE), "--grace-s", "2"),
        *("--metrics-port", str(metrics_port), "--log-level", "warning"),
    ]
    return processes.spawn_python(argv, env, capture=False)


def reports_sent(port: int) -> dict[tuple[str, str, str], float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (s.labels["account"], s.labels["verdict"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "captcha_queue_reports_total"
    }


async def test_verdicts_reach_the_account_that_solved_once(
    redis_url: str,
    namespace: str,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    simulator: RunningSimulator,
) -> None:
    """Two worker processes on two accounts (two keys under one name): each verdict goes to the key
    that solved the task, once, and the service records it once (no duplicate, no unknown id)."""
    ports = [free_port(), free_port()]
    keys = [KEY, OTHER_KEY]
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        ids = await q.submit_many(
            [
                {"method": "turnstile", "params": {"sitekey": "0x4AAAA", "pageurl": f"https://e.test/{i}"}}
                for i in range(12)
            ]
        )
        for key, port in zip(keys, ports, strict=True):
            start_worker(processes, subprocess_env, simulator, key, port)
        results = [r async for r in q.as_completed(ids, timeout_s=40.0)]
        assert len(results) == 12
        assert all(r.ok for r in results)
        refs = {account_ref("main", key_fingerprint(k)) for k in keys}
        assert {r.account for r in results} <= refs
        assert all(r.provider == "captchaai" and r.remote_id for r in results)
        for result in results:
            assert await q.report(result.id, correct=False) is True
            assert await q.report(result.id, correct=True) is False
        wanted = {ref: sum(1 for r in results if r.account == ref) for ref in refs}

        async def all_sent() -> bool:
            return int(simulator.stats()["reports"].get("bad", 0)) >= 12

        await eventually(all_sent, timeout_s=20.0, what="every verdict reaches the simulator")
        stats = simulator.stats()
        assert stats["reports"] == {"bad": 12}
        # Sent with the key that solved each one: a report with another key is ERROR_WRONG_CAPTCHA_ID.
        assert "ERROR_WRONG_CAPTCHA_ID" not in stats["codes"]
        assert "ERROR_DUPLICATE_REPORT" not in stats["codes"]

        async def counted() -> bool:
            got: dict[tuple[str, str, str], float] = {}
            for port in ports:
                got.update(await asyncio.to_thread(reports_sent, port))
            return got == {(ref, "bad", "sent"): float(n) for ref, n in wanted.items() if n}

        await eventually(counted, timeout_s=10.0, what="captcha_queue_reports_total per account")
        for ref in refs:
            assert await q.client.llen(q.keys.reports(ref)) == 0
            assert await q.client.zcard(q.keys.reports_taken(ref)) == 0


async def test_a_reports_key_of_another_type_is_refused_and_marks_nothing(queue: AsyncCaptchaQueue) -> None:
    (task_id,) = await solved(queue)
    await queue.client.set(queue.keys.reports(REF), "someone else's")
    with pytest.raises(ScriptError, match="expected a list"):
        await queue.report(task_id, correct=False)
    await queue.client.delete(queue.keys.reports(REF))
    assert await queue.report(task_id, correct=False) is True  # the refusal did not mark it


async def test_a_request_a_dead_worker_took_is_sent_by_the_next_one(
    redis_url: str,
    namespace: str,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    simulator: RunningSimulator,
) -> None:
    """A worker that took a request and died before the service heard it: the next worker of the
    account sends it once the lease passed (at least once)."""
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        port = free_port()
        worker = start_worker(processes, subprocess_env, simulator, KEY, port)
        (task_id,) = await q.submit_many(
            [{"method": "turnstile", "params": {"sitekey": "0x4A", "pageurl": "https://e.t"}}]
        )
        result = await q.wait_result(task_id, timeout_s=30.0)
        assert result is not None
        assert result.ok
        processes.kill(worker)  # nobody serves the account now
        assert await q.report(task_id, correct=False)
        (taken,) = await q.take_reports(REF, lease_s=1.0)  # as a worker that dies right after
        assert simulator.stats()["reports"] == {}
        start_worker(processes, subprocess_env, simulator, KEY, free_port())

        async def sent() -> bool:
            return bool(simulator.stats()["reports"])

        await eventually(sent, timeout_s=20.0, what="the next worker sends the request")
        assert simulator.stats()["reports"] == {"bad": 1}
        assert taken.remote_id == result.remote_id


async def test_requests_wait_while_their_account_is_paused(
    queue: AsyncCaptchaQueue, simulator: RunningSimulator
) -> None:
    """A paused account (a wrong key, a banned IP) would refuse the report and lose the refund: its
    workers take nothing until the pause ends, then send it."""
    from captcha_queue.solvers import CaptchaAISolver
    from captcha_queue.worker import Worker, WorkerConfig

    async with CaptchaAISolver(KEY, simulator.base_url, account="main", time_scale=SCALE) as solver:
        worker = Worker(queue, solver, WorkerConfig(time_scale=SCALE))
        (task_id,) = await queue.submit_many(
            [{"method": "turnstile", "params": {"sitekey": "0x4A", "pageurl": "https://e.t"}}]
        )
        (claim,) = await claim_all(queue, 1)
        remote_id = await solver.submit(claim.task.method, claim.task.params)
        claim = await queue.record_remote(claim, remote_id)
        await queue.complete(claim, "token", provider="captchaai", account=solver.account_ref)
        assert await queue.report(task_id, correct=False)
        await queue.pause("key revoked", account=solver.account_ref, code="ERROR_KEY_DOES_NOT_EXIST")
        await worker.breaker.refresh()
        assert await worker.reports.send_once() is False
        assert await queue.client.llen(queue.keys.reports(solver.account_ref)) == 1
        await queue.resume(solver.account_ref)
        await worker.breaker.refresh()
        await worker.reports.send_once()
        assert simulator.stats()["reports"] == {"bad": 1}
        assert await queue.client.zcard(queue.keys.reports_taken(solver.account_ref)) == 0
