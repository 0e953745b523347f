"""Draining one worker process on request (``AdminAPI.drain_worker``, ``captcha-queue workers drain``).

Real parts: a private redis-server, the simulator as an HTTP server on 127.0.0.1, a real
``captcha-queue worker --processes 2`` supervisor whose children are stopped by pid.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from captcha_queue.cli import cli
from captcha_queue.errors import InvalidArgument
from captcha_queue.models import AccountSpec
from captcha_queue.processes import alive
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator
from captcha_queue.worker.retry import Backoff
from captcha_queue.worker.supervisor import Supervisor

from .helpers import ProcessManager
from .test_worker_processes import KEY, LEASE_S, SCALE, eventually, simulator, specs, wait_exit, worker_env

__all__ = ["simulator"]  # the fixture, imported

INFO = {"host": "h", "pid": 1, "started_at": 1.0, "version": "t"}


async def test_drain_one_child_of_two_finishes_its_tasks_exits_0_and_is_not_restarted(
    queue: AsyncCaptchaQueue,
    simulator: RunningSimulator,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    tmp_path: Path,
) -> None:
    log = tmp_path / "supervisor.log"
    argv = [
        "-m",
        "captcha_queue",
        "worker",
        "--processes",
        "2",
        "--concurrency",
        "8",
        "--lease-s",
        str(LEASE_S),
        "--time-scale",
        str(SCALE),
        "--grace-s",
        "20",
        "--log-format",
        "json",
        "--log-level",
        "info",
    ]
    with log.open("ab") as sink:
        supervisor = processes.spawn_python(
            argv, worker_env(subprocess_env, simulator), capture=False, stdout=sink
        )

    async def two_live() -> bool:
        return len(await queue.workers()) == 2

    await eventually(two_live, what="two children registered")
    first = [w.id for w in await queue.workers()]
    ids = await queue.submit_many(specs(40))

    async def both_busy() -> bool:
        return all(w.info.get("in_flight", 0) > 0 for w in await queue.workers())

    await eventually(both_busy, what="both children holding tasks")
    victim = next(w for w in await queue.workers() if w.info.get("in_flight", 0) > 0)
    survivor = next(i for i in first if i != victim.id)
    reason = "rolling deploy\nforged line " + "x" * 450
    assert await queue.drain_worker(victim.id, reason=reason)
    pending = await queue.drain_requests()
    assert set(pending) == {victim.id}
    assert pending[victim.id].reason == reason
    assert await queue.drain_worker(victim.id, reason="again")  # still pending: kept as it is
    assert (await queue.drain_requests())[victim.id].reason == reason

    async def victim_gone() -> bool:
        return victim.id not in {w.id for w in await queue.workers(include_dead=True)}

    await eventually(victim_gone, what="the drained child unregistered")
    pid = int(victim.info["pid"])

    async def exited() -> bool:
        return not alive(pid)

    await eventually(exited, what="the drained child exited")
    assert await queue.drain_requests() == {}  # its unregistration deleted the request

    # Every task ends exactly once: none lost by the drained child, none solved twice.
    results = [await queue.wait_result(i, timeout_s=30) for i in ids]
    assert all(r is not None and r.ok for r in results)
    more = await queue.submit_many(specs(10, start=40))
    assert all(r is not None and r.ok for r in [await queue.wait_result(i, timeout_s=30) for i in more])
    stats = simulator.stats()
    assert stats["submits"] == 50
    assert stats["duplicate_submits"] == {}
    assert (await queue.stats()).completed == 50
    # The drained child finished what it held (grace_s 20): no task was released to be claimed again.
    records = [await queue.task_record(i) for i in ids]
    assert all(r is not None and r.result is not None and r.result.attempts == 1 for r in records)
    assert not [a for r in records if r is not None for a in r.history if a.outcome == "released"]

    # Not restarted: the survivor alone is registered and the supervisor said why.
    assert [w.id for w in await queue.workers(include_dead=True)] == [survivor]
    lines = [msgspec.json.decode(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    drained = [line for line in lines if "drained on request; not restarted" in line.get("msg", "")]
    assert len(drained) == 1
    assert str(pid) in drained[0]["msg"]
    assert not any("restarting" in line.get("msg", "") for line in lines)
    asked = [line for line in lines if "drain requested" in line.get("msg", "")]
    assert len(asked) == 1
    assert "\n" not in asked[0]["msg"]
    assert "rolling deploy\\nforged line" in asked[0]["msg"]
    assert len(asked[0]["msg"]) < 450  # the reason is cut (logs.MAX_VALUE_CHARS)
    assert supervisor.poll() is None

    # Draining the last child ends the supervisor, with 0.
    assert await queue.drain_worker(survivor, reason="last one")
    assert await wait_exit(supervisor, timeout_s=30) == 0
    assert await queue.workers(include_dead=True) == []


async def test_drain_of_an_unknown_or_dead_worker_is_false_and_writes_nothing(
    queue: AsyncCaptchaQueue,
) -> None:
    assert await queue.drain_worker("nobody:1:abc", reason="r") is False
    await queue.register_worker("gone:1:abc", INFO, ttl_s=0.001)

    async def lapsed() -> bool:
        return not await queue.workers()

    await eventually(lapsed, what="registration lapsed")
    assert await queue.drain_worker("gone:1:abc", reason="r") is False
    assert await queue.client.exists(queue.keys.worker_drains) == 0
    assert (await queue.workers(include_dead=True))[0].drain is None


@pytest.mark.parametrize(
    ("worker_id", "reason"),
    [
        ("w:1:abc", ""),
        ("w:1:abc", "   "),
        ("w:1:abc", "x" * 501),
        ("w:1:abc", 42),
        ("", "r"),
        ("w:1:abc\nforged", "r"),
        ("w" * 201, "r"),
        (None, "r"),
    ],
)
async def test_bad_input_raises_and_writes_nothing(
    queue: AsyncCaptchaQueue, worker_id: object, reason: object
) -> None:
    await queue.register_worker("w:1:abc", INFO, ttl_s=30)
    with pytest.raises(InvalidArgument):
        await queue.drain_worker(worker_id, reason=reason)  # type: ignore[arg-type]
    assert await queue.client.exists(queue.keys.worker_drains) == 0
    assert (await queue.workers())[0].drain is None


async def test_the_heartbeat_answers_the_request_and_unregistering_deletes_it(
    queue: AsyncCaptchaQueue,
) -> None:
    assert await queue.heartbeat_worker("w:1:abc", INFO, ttl_s=30) == (1, None)
    assert await queue.drain_worker("w:1:abc", reason="maintenance")
    live, drain = await queue.heartbeat_worker("w:1:abc", INFO, ttl_s=30)
    assert live == 1
    assert drain is not None
    assert drain.reason == "maintenance"
    assert drain.since_ms > 0
    entry = (await queue.workers())[0]
    assert entry.drain == drain
    await queue.unregister_worker("w:1:abc")
    assert await queue.drain_requests() == {}
    await queue.register_worker("w:1:abc", INFO, ttl_s=30)  # the same id again: no stale request
    assert await queue.heartbeat_worker("w:1:abc", INFO, ttl_s=30) == (1, None)


def test_the_cli_drains_a_live_worker_and_refuses_an_unknown_one_in_one_line(
    sync_queue: object, cli_env: dict[str, str | None]
) -> None:
    from captcha_queue.queue import CaptchaQueue

    assert isinstance(sync_queue, CaptchaQueue)
    sync_queue.register_worker("w:1:abc", INFO, ttl_s=30)
    runner = CliRunner()
    done = runner.invoke(cli, ["workers", "drain", "w:1:abc", "--reason", "deploy"], env=cli_env)
    assert done.exit_code == 0, done.output
    assert "drain requested for worker w:1:abc" in done.output
    assert sync_queue.drain_requests()["w:1:abc"].reason == "deploy"
    listing = runner.invoke(cli, ["workers"], env=cli_env)
    assert listing.exit_code == 0
    assert "deploy" in listing.output
    unknown = runner.invoke(cli, ["workers", "drain", "nobody:1:x"], env=cli_env)
    assert unknown.exit_code == 1
    assert unknown.output.strip().splitlines() == [
        "error: no live worker 'nobody:1:x' in namespace "
        f"{cli_env['CAPTCHA_QUEUE_NAMESPACE']} (see `captcha-queue workers`)"
    ]
    bad = runner.invoke(cli, ["workers", "drain", "w:1:abc", "--reason", ""], env=cli_env)
    assert bad.exit_code != 0
    assert len(bad.output.strip().splitlines()) == 1
    assert sync_queue.drain_requests()["w:1:abc"].reason == "deploy"


async def test_a_real_worker_process_drains_and_exits_0(
    queue: AsyncCaptchaQueue, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    """One unsupervised ``worker --processes 1``: the request stops it as SIGTERM would, exit 0."""
    argv = ["-m", "captcha_queue", "worker", "--processes", "1", "--solver", "instant", "--lease-s", "3"]
    proc = processes.spawn_python(argv, subprocess_env, capture=False)

    async def registered() -> bool:
        return len(await queue.workers()) == 1

    await eventually(registered, what="worker registered")
    assert await queue.drain_worker((await queue.workers())[0].id, reason="bye")
    asked = time.monotonic()
    assert await wait_exit(proc, timeout_s=20) == 0
    # Seen at the next renewal (a third of the lease), then an idle worker stops at once: the report
    # loop, woken with that renewal, used to lose its cancellation in a Redis call and hold the exit 5 s.
    assert time.monotonic() - asked < 4.5
    assert await queue.workers(include_dead=True) == []


async def test_a_drain_request_for_one_namespace_drains_a_namespaces_process(
    redis_url: str, namespace: str, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    """``worker --namespaces a,b``: one process, a worker per namespace; draining either drains it."""
    other = namespace + "-b"
    argv = ["-m", "captcha_queue", "worker", "--processes", "1", "--solver", "instant", "--lease-s", "1"]
    proc = processes.spawn_python([*argv, "--namespaces", f"{namespace}:1,{other}:1"], subprocess_env)
    async with (
        AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as first,
        AsyncCaptchaQueue.from_url(redis_url, namespace=other) as second,
    ):

        async def both_registered() -> bool:
            return len(await first.workers()) == 1 and len(await second.workers()) == 1

        await eventually(both_registered, what="a worker in each namespace")
        assert await second.drain_worker((await second.workers())[0].id, reason="move host")
        assert await wait_exit(proc, timeout_s=20) == 0
        assert await first.workers(include_dead=True) == []
        assert await second.workers(include_dead=True) == []
        assert await second.drain_requests() == {}


async def test_the_supervisor_restarts_a_clean_exit_unless_the_child_reported_its_drain(
    tmp_path: Path,
) -> None:
    """The supervisor's side alone: only a child that wrote its drain on its pipe stays stopped."""
    starts = tmp_path / "starts"
    report = "from captcha_queue.worker.supervisor import report_drained; report_drained()"
    drains = [sys.executable, "-c", f"open({str(starts)!r}, 'a').write('d'); {report}"]
    exits = [sys.executable, "-c", f"open({str(starts)!r}, 'a').write('e')"]  # exit 0, no report
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    supervisor = Supervisor([drains, exits], env=env, restart_backoff=Backoff(base_s=0.01, cap_s=0.05))
    running = asyncio.create_task(supervisor.run(install_signals=False))

    async def restarted() -> bool:
        text = await asyncio.to_thread(lambda: starts.read_text() if starts.exists() else "")
        return text.count("e") >= 3

    await eventually(restarted, timeout_s=20, what="the child without a report restarted")
    supervisor.request_stop()
    await asyncio.wait_for(running, 20)  # 1: the restarted child may die of the SIGTERM, no handler
    assert starts.read_text().count("d") == 1  # drained once, never started again


async def test_a_supervisor_whose_children_all_drain_exits_0_by_itself() -> None:
    report = "from captcha_queue.worker.supervisor import report_drained; report_drained()"
    child = [sys.executable, "-c", report]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    supervisor = Supervisor([child, child], env=env, restart_backoff=Backoff(base_s=0.01, cap_s=0.05))
    assert await asyncio.wait_for(supervisor.run(install_signals=False), 20) == 0


async def test_a_drain_request_for_one_account_drains_an_accounts_process(
    queue: AsyncCaptchaQueue,
    simulator: RunningSimulator,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
) -> None:
    """``worker --accounts a,b``: one process, a worker per account; draining either drains it."""
    for name in ("a", "b"):
        await queue.add_account(
            AccountSpec(name=name, base_url=simulator.base_url, limit=2, key_env="DRAIN_KEY")
        )
    argv = ["-m", "captcha_queue", "worker", "--accounts", "a,b", "--processes", "1", "--lease-s", "3"]
    env = {**subprocess_env, "DRAIN_KEY": KEY}
    proc = processes.spawn_python([*argv, "--time-scale", str(SCALE)], env, capture=False)

    async def both_registered() -> bool:
        return len(await queue.workers()) == 2

    await eventually(both_registered, what="a worker per account")
    ids = await queue.submit_many(specs(4))
    assert await queue.drain_worker((await queue.workers())[1].id, reason="rotate keys")
    assert await wait_exit(proc, timeout_s=30) == 0
    assert await queue.workers(include_dead=True) == []
    # What it held it finished (or handed back): nothing is left in flight, every task is done or queued.
    results = [await queue.get_result(i) for i in ids]
    assert all(r.ok for r in results if r is not None)
    stats = await queue.stats()
    assert stats.in_flight == 0
    assert stats.completed + stats.queued_total + stats.delayed == 4
    assert simulator.stats()["duplicate_submits"] == {}
