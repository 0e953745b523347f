"""Report requests for an account ref no worker serves any more (the account removed, its key
rotated): ``report_backlog`` lists them, ``purge_reports`` / ``captcha-queue reports purge`` drop them,
and workers drop those older than ``report_expire_s`` by themselves, counted. Real Redis, a real worker
subprocess and the simulator."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from click.testing import CliRunner

from captcha_queue import CaptchaQueue
from captcha_queue.cli import cli
from captcha_queue.errors import InvalidArgument, ScriptError
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import SimulatorConfig, run_simulator
from captcha_queue.solvers.base import account_ref, key_fingerprint

from .helpers import CliEnv, ProcessManager, free_port
from .test_reports import KEY, REF, reports_sent, solved
from .test_worker_processes import eventually

ROTATED = "9" * 32  # the key "main" used before: its ref is not the one its workers serve now
GONE = account_ref("main", key_fingerprint(ROTATED))
SCALE = 0.05


async def queued_for_gone(q: AsyncCaptchaQueue, n: int) -> list[str]:
    ids = await solved(q, n, account=GONE)
    for task_id in ids:
        assert await q.report(task_id, correct=False)
    return ids


async def test_the_backlog_lists_each_ref_and_purge_drops_its_requests(queue: AsyncCaptchaQueue) -> None:
    ids = await queued_for_gone(queue, 3)
    (taken,) = await queue.take_reports(GONE, 1, lease_s=30.0)  # a worker took one, then went away
    before = time.time()
    (backlog,) = await queue.report_backlog()
    assert (backlog.account, backlog.waiting, backlog.taken, backlog.workers) == (GONE, 2, 1, 0)
    assert backlog.oldest_at is not None
    assert backlog.oldest_at <= before

    assert await queue.purge_reports(GONE, older_than_s=3600.0) == []  # none that old
    dropped = await queue.purge_reports(GONE)
    assert sorted(r.id for r in dropped) == sorted(ids)
    assert taken in dropped
    assert await queue.report_backlog() == []
    assert await queue.client.exists(queue.keys.reports(GONE), queue.keys.reports_taken(GONE)) == 0
    assert await queue.report(ids[0], correct=False) is False  # still marked: reported once


async def test_bad_purge_arguments_write_nothing(queue: AsyncCaptchaQueue) -> None:
    await queued_for_gone(queue, 1)
    for bad in (math.nan, -1.0, math.inf, True):
        with pytest.raises(InvalidArgument, match="older_than_s"):
            await queue.purge_reports(GONE, older_than_s=bad)
    with pytest.raises(InvalidArgument, match="account ref"):
        await queue.purge_reports("no such/ref!")
    (backlog,) = await queue.report_backlog()
    assert backlog.waiting == 1


async def test_the_cli_lists_and_purges_unserved_refs(queue: AsyncCaptchaQueue, cli_env: CliEnv) -> None:
    await queued_for_gone(queue, 2)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), env=cli_env)
        return result.exit_code, result.output

    code, shown = await asyncio.to_thread(invoke, "reports", "list")
    assert code == 0, shown
    assert GONE in shown
    assert ROTATED not in shown
    code, shown = await asyncio.to_thread(invoke, "reports", "purge")
    assert code != 0
    assert "--account REF" in shown
    assert len(shown.strip().splitlines()) == 1
    code, shown = await asyncio.to_thread(invoke, "reports", "purge", "--account", "bad ref!")
    assert code != 0
    code, shown = await asyncio.to_thread(invoke, "reports", "purge", "--unserved")
    assert code == 0, shown
    assert f"{GONE}: 2 report requests dropped" in shown
    code, shown = await asyncio.to_thread(invoke, "reports", "list", "--json")
    assert (code, shown.strip()) == (0, "[]")


async def test_workers_drop_requests_too_old_to_send_and_count_them(
    queue: AsyncCaptchaQueue, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    """A worker of the current key sends its own account's requests; the rotated key's wait for no
    one, and the worker's sweep drops them once older than --report-expire-s (20 s, time-scaled: 1 s)."""
    gone_ids = await queued_for_gone(queue, 2)
    (own,) = await solved(queue, 1, account=REF)
    assert await queue.report(own, correct=False)
    async with run_simulator(SimulatorConfig(time_scale=SCALE, threads=20, seed=4)) as sim:
        port = free_port()
        env = {**subprocess_env, "CAPTCHAAI_KEY": KEY, "CAPTCHAAI_URL": sim.base_url}
        argv = [
            *("-m", "captcha_queue", "worker", "--processes", "1", "--account", "main"),
            *("--lease-s", "2", "--time-scale", str(SCALE), "--report-expire-s", "20"),
            *("--metrics-port", str(port), "--log-level", "error"),
        ]
        worker = processes.spawn_python(argv, env, capture=False)

        async def counted() -> bool:
            sent = await asyncio.to_thread(reports_sent, port)
            return sent.get((GONE, "bad", "expired")) == 2.0 and sent.get((REF, "bad", "sent")) == 1.0

        await eventually(counted, timeout_s=20.0, what="one report sent, the rotated key's two dropped")
        assert await queue.report_backlog() == []
        assert processes.stop(worker)
    assert await queue.report(gone_ids[0], correct=True) is False


async def test_the_sync_twins(queue: AsyncCaptchaQueue, sync_queue: CaptchaQueue) -> None:
    await queued_for_gone(queue, 2)
    (backlog,) = await asyncio.to_thread(sync_queue.report_backlog)
    assert (backlog.account, backlog.waiting) == (GONE, 2)
    assert await asyncio.to_thread(sync_queue.expire_reports, 3600.0) == []
    assert len(await asyncio.to_thread(sync_queue.expire_reports, 0.0)) == 2
    assert await asyncio.to_thread(sync_queue.purge_reports, GONE) == []
    assert await asyncio.to_thread(sync_queue.account_balances) == {}


async def test_the_index_of_refs_loses_a_ref_once_it_has_nothing_left(queue: AsyncCaptchaQueue) -> None:
    """report_backlog reads an index (the workers' ACL denies SCAN); a ref whose requests were all sent
    leaves it at the next sweep, one with requests younger than the age stays."""
    (sent,) = await solved(queue, 1, account=REF)
    assert await queue.report(sent, correct=True)
    for request in await queue.take_reports(REF, 10):
        await queue.ack_report(request)
    await queued_for_gone(queue, 1)
    assert await queue.client.smembers(queue.keys.report_refs) == {REF.encode(), GONE.encode()}
    assert [b.account for b in await queue.report_backlog()] == [GONE]  # nothing left for REF
    assert await queue.expire_reports(3600.0) == []
    assert await queue.client.smembers(queue.keys.report_refs) == {GONE.encode()}
    await queue.client.sadd(queue.keys.report_refs, "not a ref!")  # written by hand: ignored
    assert [b.account for b in await queue.report_backlog()] == [GONE]


async def test_an_index_of_another_type_refuses_and_writes_nothing(queue: AsyncCaptchaQueue) -> None:
    (task_id,) = await solved(queue, 1, account=GONE)
    await queue.client.set(queue.keys.report_refs, "someone else's")
    with pytest.raises(ScriptError, match=r"report_refs|wrong"):
        await queue.report(task_id, correct=False)
    assert await queue.client.llen(queue.keys.reports(GONE)) == 0
    with pytest.raises(ScriptError):
        await queue.purge_reports(GONE)
    await queue.client.delete(queue.keys.report_refs)
    assert await queue.report(task_id, correct=False)  # not marked by the refused call
