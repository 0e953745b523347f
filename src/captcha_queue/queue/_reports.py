"""Refunds: a verdict on a solved task's answer, sent to the account that solved it, once.

The producer holds no solver key, so ``report`` goes through Redis: one script (reportTask) checks the
task's success result (its provider, account and remote id, written by ``complete``), marks the task
reported and queues a ``ReportRequest`` on that account's report list. Workers of that account (the
same account ref: name and key fingerprint) take requests under a lease (takeReports), call
``Solver.report`` and ack them.

Delivery is **at least once**: a second ``report`` of a task answers False and queues nothing (the
mark), but a worker that dies between taking a request and acking it leaves the request to be taken
again once its lease passes, so the service may hear a verdict twice (services answer a repeated report
with an error, e.g. the simulator's ``ERROR_DUPLICATE_REPORT``; nothing is paid twice). The other
choice, at most once, would lose the refund of every request a crash interrupts.
"""

from __future__ import annotations

import time

import msgspec

from ..errors import InvalidArgument, TaskNotFound
from ..models import ReportRequest
from ..store.connection import redis_errors_async
from ..store.keys import validate_account_ref
from ..store.scripts import Code
from ._core import QueueCore, as_str, decode_result, log

__all__ = ["ReportAPI"]

_request_decoder = msgspec.json.Decoder(ReportRequest)
_encoder = msgspec.json.Encoder()
_MAX_TASK_ID_CHARS = 200


def check_task_id(task_id: object) -> str:
    """``task_id`` if it can name a task, else InvalidArgument (nothing is read)."""
    if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > _MAX_TASK_ID_CHARS:
        raise InvalidArgument(
            f"task id must be a non-empty string of at most {_MAX_TASK_ID_CHARS} characters", field="task_id"
        )
    return task_id


class ReportAPI(QueueCore):
    """Verdicts on answers: ``report`` (producers) and the worker's ``take_reports`` / ``ack_report``."""

    async def report(self, task_id: str, *, correct: bool) -> bool:
        """Tell the account that solved ``task_id`` whether its answer worked (``correct=False``
        claims a refund). True when the verdict was recorded now, False when the task was reported
        before (with either verdict: a task is reported once).

        Raises TaskNotFound for an unknown task, one not finished, one whose result has expired, or
        one that has no answer from a solver account (failed, cancelled, expired, solved before this
        version); InvalidArgument for a bad id or a ``correct`` that is not a bool. A worker of that
        account sends the verdict (at least once, see the module docstring); none need be running
        now, the request waits for one."""
        check_task_id(task_id)
        if not isinstance(correct, bool):
            raise InvalidArgument(f"correct must be True or False, got {correct!r}", field="correct")
        async with redis_errors_async(self.client):
            raw = await self.client.hget(self.keys.results, task_id)
        result = decode_result(raw, task_id)
        if result is None:
            raise TaskNotFound(f"no result for task {task_id} (unknown, not finished, or expired)")
        if result.status != "success" or not result.remote_id or not result.account:
            raise TaskNotFound(f"task {task_id} has no answer from a solver account to report on")
        account = validate_account_ref(result.account)
        request = ReportRequest(
            id=task_id,
            remote_id=result.remote_id,
            correct=correct,
            account=account,
            provider=result.provider,
            requested_at=round(time.time(), 3),
        )
        keys = (self.keys.state, self.keys.results, self.keys.reports(account), self.keys.report_refs)
        reply = await self._script(
            "reportTask", task_id, account, "good" if correct else "bad", _encoder.encode(request), keys=keys
        )
        code = int(reply[0])
        if code == Code.ALREADY_REPORTED:
            return False
        if code == Code.NOT_FOUND:
            raise TaskNotFound(f"task {task_id} cannot be reported: {as_str(reply[1])}")
        self._check(reply, task_id)
        return True

    async def take_reports(
        self, account: str, count: int = 100, lease_s: float = 30.0
    ) -> list[ReportRequest]:
        """Worker side: up to ``count`` report requests for the account ref ``account``, held for
        ``lease_s`` (handed out again after that unless acked)."""
        validate_account_ref(account)
        if count < 1:
            raise InvalidArgument(f"count must be at least 1, got {count}", field="count")
        keys = (self.keys.reports(account), self.keys.reports_taken(account))
        reply = await self._script("takeReports", count, max(1, round(lease_s * 1000)), keys=keys)
        self._check(reply, "-")
        requests: list[ReportRequest] = []
        for raw in reply[1:]:
            try:
                requests.append(_request_decoder.decode(raw))
            except (ValueError, RecursionError) as exc:
                log.warning("unreadable report request dropped: %s", exc)
                await self._ack_raw(account, raw)
        return requests

    async def ack_report(self, request: ReportRequest) -> None:
        """Worker side: the service has answered ``request``; it is not handed out again."""
        # The member is the request as report() encoded it; msgspec encodes a struct the same way again.
        key = self.keys.reports_taken(validate_account_ref(request.account))
        async with redis_errors_async(self.client):
            await self.client.zrem(key, _encoder.encode(request))

    async def _ack_raw(self, account: str, raw: bytes | str) -> None:
        async with redis_errors_async(self.client):
            await self.client.zrem(self.keys.reports_taken(account), raw)
