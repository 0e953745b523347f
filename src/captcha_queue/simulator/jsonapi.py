"""The simulator's JSON API (``createTask``, ``getTaskResult``, ``getBalance``, reports), per profile.

A ``task`` object is turned back into the in.php method and params of ``protocol/methods.py`` by the
task type table (``protocol/tasktypes.py``, the profile's dialect only), then goes through the same
engine as an ``in.php`` submit: the same validation, accounts, thread limits, funds, faults and
timers. Answers are rendered in the profile's dialect: ``solution`` objects as the table shapes them,
error codes translated (``json_codes``) and, for CapSolver, HTTP statuses (401 for a key it refuses).

CapSolver answers ``ImageToTextTask`` in ``createTask`` itself (``status: ready``), as its docs say.
"""

from __future__ import annotations

from typing import Any

from ..models import Solution
from ..protocol.answers import plain_value
from ..protocol.methods import MethodSpec
from ..protocol.tasktypes import DialectName, parse_task, task_type_for, write_solution
from .engine import Answer, SimTask, Simulator

__all__ = ["JSON_ENDPOINTS", "handle_json"]

JSON_ENDPOINTS: tuple[str, ...] = (
    "createTask",
    "getTaskResult",
    "getBalance",
    "reportIncorrectImageCaptcha",
    "reportIncorrectRecaptcha",
    "reportCorrectRecaptcha",
    "reportIncorrectHcaptcha",
    "reportIncorrect",
    "reportCorrect",
    "feedbackTask",
)
_REPORTS_GOOD = frozenset({"reportCorrectRecaptcha", "reportCorrect"})


class _JsonView:
    """Per-request helpers bound to one simulator and its profile's dialect."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        profile = simulator.profile
        assert profile.json_dialect is not None
        self.dialect: DialectName = profile.json_dialect
        self.codes = profile.json_codes or {}
        self.statuses = profile.json_status or {}

    def error(self, code: str) -> tuple[int, dict[str, Any]]:
        code = self.codes.get(code, code)
        self.simulator.stats.codes[code] += 1
        body = {"errorId": 1, "errorCode": code, "errorDescription": code.replace("_", " ").lower()}
        return self.statuses.get(code, 200 if self.dialect != "capsolver" else 400), body

    def ok(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.simulator.stats.codes["OK"] += 1
        return 200, {"errorId": 0, **body}


def handle_json(simulator: Simulator, method: str, body: Any, ip: str) -> tuple[int, dict[str, Any]]:
    """One JSON API call: (HTTP status, answer). ``body`` is the decoded request (any JSON value)."""
    view = _JsonView(simulator)
    if not isinstance(body, dict):
        return view.error("ERROR_BAD_PARAMETERS" if view.dialect != "capsolver" else "ERROR_BAD_REQUEST")
    key = str(body.get("clientKey") or "")
    if method == "createTask":
        return _create(view, key, body.get("task"), ip)
    check = simulator.accounts.check(key, ip)
    if check.code is not None or check.account is None:
        return view.error(check.code or "ERROR_KEY_DOES_NOT_EXIST")
    account = check.account
    if method == "getBalance":
        extra: dict[str, Any] = {"packages": []} if view.dialect == "capsolver" else {}
        return view.ok({"balance": round(account.balance, 6), **extra})
    task = simulator.lookup(account, str(body.get("taskId", "")))
    if isinstance(task, str):
        return view.error(task)
    if method == "getTaskResult":
        simulator.stats.poll_requests += 1
        simulator.stats.polls += 1
        return _result(view, task)
    if method == "feedbackTask":
        result = body.get("result")
        good = not (isinstance(result, dict) and result.get("invalid"))
        return _report(view, task, good=good)
    return _report(view, task, good=method in _REPORTS_GOOD)


def _create(view: _JsonView, key: str, task: Any, ip: str) -> tuple[int, dict[str, Any]]:
    simulator = view.simulator
    if not isinstance(task, dict) or not task.get("type"):
        return view.error("ERROR_TASK_ABSENT" if view.dialect != "capsolver" else "ERROR_INVALID_TASK_DATA")
    parsed = parse_task(task, (view.dialect,))
    if parsed is None:
        # the key is checked first: a wrong key is the answer whatever the task
        check = simulator.accounts.check(key, ip)
        if check.code is not None:
            return view.error(check.code)
        return view.error("ERROR_TASK_NOT_SUPPORTED")
    raw = {"key": key, "method": parsed.method, **parsed.params}
    answer = simulator.submit(raw, {}, ip)
    simulator.stats.codes[answer.code] += 1
    if not answer.ok:
        return view.error(str(answer.request))
    created = simulator.tasks[int(answer.request)]
    # Anti-Captcha and 2captcha number their tasks; CapSolver's ids are strings.
    task_id: int | str = str(created.id) if view.dialect == "capsolver" else created.id
    if view.dialect == "capsolver" and created.spec.name == "image":
        simulator.finish_now(created)  # CapSolver: recognition tasks answer in createTask
        if created.code is None:
            return view.ok({"taskId": task_id, "status": "ready", "solution": _solution(view, created)})
    if view.dialect == "capsolver":  # "status: null or ready" (its createTask docs); "idle" while queued
        return view.ok({"taskId": task_id, "status": "idle"})
    return view.ok({"taskId": task_id})


def _result(view: _JsonView, task: SimTask) -> tuple[int, dict[str, Any]]:
    if task.state != "done":
        return view.ok({"status": "processing"})
    if task.code is not None:
        return view.error(task.code)
    body: dict[str, Any] = {"status": "ready", "solution": _solution(view, task)}
    if view.dialect != "capsolver":
        body["cost"] = f"{task.price:.6f}"
    return view.ok(body)


def _solution(view: _JsonView, task: SimTask) -> dict[str, Any]:
    """The ``solution`` object of a finished task, as the dialect's task type returns it."""
    spec: MethodSpec = task.spec
    value = task.answer
    data = value if isinstance(value, dict | list) else None
    solution = Solution(text=plain_value(value), user_agent=task.user_agent or None, data=data)
    return write_solution(task_type_for(view.dialect, spec.name), solution)


def _report(view: _JsonView, task: SimTask, *, good: bool) -> tuple[int, dict[str, Any]]:
    if task.state != "done":
        return view.error("ERROR_WRONG_CAPTCHA_ID")
    answer: Answer = view.simulator.report_task(task, good=good)
    if not answer.ok and answer.code != "ERROR_DUPLICATE_REPORT":
        return view.error(answer.code)
    return view.ok({"status": "success"})
