"""The admin API's reads for dashboards (recent results, one task's record, an idempotency key's task,
an account's slots) and the audit stream, against a real Redis; the dashboard's pure analysis."""

from __future__ import annotations

import msgspec
import pytest

from captcha_queue.errors import InvalidArgument
from captcha_queue.models import Result, Solution
from captcha_queue.queue._admin import AUDIT_MAXLEN, RECENT_MAX
from captcha_queue.queue._producer import AsyncCaptchaQueue

from .helpers import RC, claim_all


async def test_recent_results_are_newest_first_with_their_stream_ids(queue: AsyncCaptchaQueue) -> None:
    # A result written two minutes ago (a stream id is its write time in ms).
    old = Result(
        id="old", status="success", method="m", priority="normal", attempts=1, submitted_at=1, finished_at=2
    )
    old_id = f"{await queue.server_time_ms() - 120_000}-0"
    await queue.client.xadd(queue.keys.events, {"id": "old", "result": msgspec.json.encode(old)}, id=old_id)
    ids = await queue.submit_many([{"method": "userrecaptcha", "params": RC, "max_attempts": 1}] * 3)
    claims = await claim_all(queue, 3)
    await queue.complete(claims[0], "tok-0")
    await queue.fail(claims[1], "ERROR_CAPTCHA_UNSOLVABLE", "no")
    await queue.complete(claims[2], Solution(text="tok-2"))
    recent = await queue.recent_results(60.0, 10)
    assert [r.id for _eid, r in recent] == [claims[2].task.id, claims[1].task.id, claims[0].task.id]
    assert {r.id for _eid, r in recent} == set(ids)
    assert [r.status for _eid, r in recent] == ["success", "error", "success"]
    now_ms = await queue.server_time_ms()
    for event_id, _r in recent:
        assert now_ms - 60_000 <= int(event_id.split("-")[0]) <= now_ms
    assert len(await queue.recent_results(60.0, 2)) == 2
    assert "old" not in {r.id for _eid, r in recent}  # older than the window
    assert "old" in {r.id for _eid, r in await queue.recent_results(3600.0, 10)}


@pytest.mark.parametrize(
    ("since_s", "limit"), [(0, 10), (-1, 10), (float("nan"), 10), (60, 0), (60, RECENT_MAX + 1), (60, True)]
)
async def test_recent_results_refuse_bad_windows_and_limits(
    queue: AsyncCaptchaQueue, since_s: float, limit: int
) -> None:
    with pytest.raises(InvalidArgument):
        await queue.recent_results(since_s, limit)


async def test_task_record_holds_the_task_its_history_result_and_dead_letter(
    queue: AsyncCaptchaQueue,
) -> None:
    task_id = await queue.submit("userrecaptcha", RC, idempotency_key="order-7", max_attempts=1)
    record = await queue.task_record(task_id)
    assert record is not None
    assert record.status == "queued"
    assert record.task is not None
    assert record.task.idempotency_key == "order-7"
    assert record.result is None
    assert record.dead_letter is None
    assert record.history == []
    assert await queue.task_id_for("order-7") == task_id
    assert await queue.task_id_for("order-8") is None

    (claim,) = await claim_all(queue, 1)
    await queue.fail(claim, "ERROR_BAD_DUPLICATES", "the service gave up", retry_in_s=0.01)
    record = await queue.task_record(task_id)
    assert record is not None
    assert record.status == "done"
    assert isinstance(record.result, Result)
    assert record.result.status == "error"
    assert record.dead_letter is not None
    assert record.dead_letter.id == task_id
    assert [a.error_code for a in record.history] == ["ERROR_BAD_DUPLICATES"]
    assert await queue.task_record("no-such-task") is None
    with pytest.raises(InvalidArgument):
        await queue.task_record("")
    with pytest.raises(InvalidArgument):
        await queue.task_id_for("x" * 1000)


async def test_task_record_shows_an_unreadable_state_as_raw(queue: AsyncCaptchaQueue) -> None:
    await queue.client.hset(queue.keys.state, "hand-written", b"{not json")
    record = await queue.task_record("hand-written")
    assert record is not None
    assert record.state == {"raw": "{not json"}
    assert record.task is None
    assert record.history == []


async def test_slot_usage_counts_live_slots_and_ghosts(queue: AsyncCaptchaQueue) -> None:
    usage = await queue.slot_usage("acct")
    assert (usage.configured, usage.effective, usage.live, usage.ghosts) == (None, None, 0, 0)
    keys = queue.keys
    far = 2**50
    await queue.client.hset(
        keys.slot_limit("acct"),
        mapping={"configured": 10, "effective": 7, "changed_ms": 5, "busy_answers": 12},
    )
    await queue.client.zadd(keys.slots("acct"), {"task-1": far, "task-2": far, "#task-3#tok": far})
    usage = await queue.slot_usage("acct")
    assert (usage.configured, usage.effective, usage.changed_ms, usage.busy_answers) == (10, 7, 5, 12)
    assert (usage.live, usage.ghosts, usage.used) == (2, 1, 3)
    stats = await queue.stats("acct")
    assert stats.solver_slots_used == usage.used
    with pytest.raises(InvalidArgument):
        await queue.slot_usage("a:b")


async def test_slot_usage_and_stats_count_slots_in_use_alike(queue: AsyncCaptchaQueue) -> None:
    """A live slot past its lease still counts (the acquire script's reap turns it into a ghost), a
    ghost whose hold is over does not: slot_usage (the dashboard) and stats (the CLI) agree. Before,
    stats counted 2 here and slot_usage 4 (the browser test saw "1 / 5" against stats' "0 / 5")."""
    keys = queue.keys
    far = 2**50
    await queue.client.zadd(
        keys.slots("acct"), {"task-1": far, "task-2": 1, "#task-3#tok": far, "#task-4#tok": 1}
    )
    usage = await queue.slot_usage("acct")
    assert (usage.live, usage.ghosts, usage.used) == (2, 1, 3)
    assert (await queue.stats("acct")).solver_slots_used == 3


async def test_audit_entries_are_kept_newest_first_and_cut(queue: AsyncCaptchaQueue) -> None:
    first = await queue.record_audit(actor="local@127.0.0.1", role="operator", action="requeue", target="t1")
    await queue.record_audit(
        actor="viewer-token@10.0.0.1", role="viewer", action="purge", outcome="refused", detail="x" * 900
    )
    entries = await queue.audit_log(10)
    assert [e.action for e in entries] == ["purge", "requeue"]
    assert entries[1].id == first
    assert entries[1].target == "t1"
    assert entries[1].at_ms > 0
    assert len(entries[0].detail) == 500
    assert await queue.client.type(queue.keys.audit) in (b"stream", "stream")
    assert await queue.audit_log(0) == []
    with pytest.raises(InvalidArgument):
        await queue.record_audit(actor="a", role="operator", action="")
    with pytest.raises(InvalidArgument):
        await queue.record_audit(actor=1, role="operator", action="x")  # type: ignore[arg-type]
    assert len(await queue.audit_log(10)) == 2  # nothing written by the refused calls
    assert AUDIT_MAXLEN >= 1000


def test_the_audit_stream_is_a_key_of_the_namespace() -> None:
    from captcha_queue.store.keys import Keys

    assert Keys("ns").audit == "{ns}:audit"


def test_records_are_plain_json() -> None:
    from captcha_queue.models import TaskRecord

    doc = msgspec.json.decode(msgspec.json.encode(TaskRecord(id="x", status="queued")))
    assert doc == {"id": "x", "status": "queued"}
