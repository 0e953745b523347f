"""The simulator's JSON API (``createTask``, ``getTaskResult``, ``getBalance``, reports), per profile.

A ``task`` object is turned back into the in.php method and params of ``protocol/methods.py`` (the
inverse of ``solvers.jsontasks``), then goes through the same engine as an ``in.php`` submit: the same
validation, accounts, thread limits, funds, faults and timers. Answers are rendered in the profile's
dialect: ``solution`` objects as each task type documents them, error codes translated (``json_codes``)
and, for CapSolver, HTTP statuses (401 for a key it refuses).

CapSolver answers ``ImageToTextTask`` in ``createTask`` itself (``status: ready``), as its docs say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..protocol.methods import VARIANTS, MethodSpec
from ..solvers.jsontasks import TaskType, task_types
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

#: Fixed in.php params a variant implies (the friendly names of methods.py, as wire params).
_IMPLIED: Mapping[str, Mapping[str, str]] = {
    "recaptcha_v2_invisible": {"invisible": "1"},
    "recaptcha_v2_enterprise": {"enterprise": "1"},
    "recaptcha_v3": {"version": "v3"},
    "recaptcha_v3_enterprise": {"version": "v3", "enterprise": "1"},
    "geetest_v4": {"version": "4"},
    "coordinates": {"coordinatescaptcha": "1"},
    "grid": {"img_type": "recaptcha"},
}


def _reverse(dialect: str) -> dict[str, list[tuple[str, TaskType]]]:
    """Task type name -> the variants it can mean (in table order)."""
    names: dict[str, list[tuple[str, TaskType]]] = {}
    for variant, task_type in task_types(dialect).items():
        for name in (task_type.proxyless, task_type.proxied):
            if name:
                names.setdefault(name, []).append((variant, task_type))
    return names


def _pick_variant(candidates: list[tuple[str, TaskType]], task: Mapping[str, Any]) -> tuple[str, TaskType]:
    names = [variant for variant, _ in candidates]
    if "recaptcha_v3" in names:
        enterprise = bool(task.get("isEnterprise")) or "Enterprise" in str(task.get("type"))
        wanted = "recaptcha_v3_enterprise" if enterprise else "recaptcha_v3"
    elif "geetest_v3" in names:
        v4 = str(task.get("version", "")) == "4" or "captchaId" in task
        wanted = "geetest_v4" if v4 else "geetest_v3"
    elif "recaptcha_v2_invisible" in names:
        wanted = "recaptcha_v2_invisible" if task.get("isInvisible") else "recaptcha_v2"
    else:
        wanted = names[0]
    return next(c for c in candidates if c[0] == wanted)


def _params_of(variant: str, task_type: TaskType, task: Mapping[str, Any]) -> dict[str, str]:
    params: dict[str, str] = {}
    metadata = task.get("metadata")
    flat = {**task, **(metadata if isinstance(metadata, dict) else {})}
    for ours, theirs in task_type.fields.items():
        value = flat.get(theirs)
        if value is None or value == "" or value is False:
            continue
        params.setdefault(ours, "1" if value is True else str(value))
    if "proxyAddress" in task:
        credentials = ""
        if task.get("proxyLogin"):
            credentials = f"{task['proxyLogin']}:{task.get('proxyPassword', '')}@"
        params["proxy"] = f"{credentials}{task['proxyAddress']}:{task.get('proxyPort', '')}"
        params["proxytype"] = str(task.get("proxyType", "http")).upper()
    elif isinstance(task.get("proxy"), str) and task["proxy"]:
        parts = task["proxy"].split(":")
        if len(parts) >= 3:
            kind, host, port = parts[0], parts[1], parts[2]
            credentials = f"{parts[3]}:{parts[4]}@" if len(parts) >= 5 else ""
            params["proxy"] = f"{credentials}{host}:{port}"
            params["proxytype"] = kind.upper()
    params.update(_IMPLIED.get(variant, {}))
    return params


class _JsonView:
    """Per-request helpers bound to one simulator and its profile's dialect."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        profile = simulator.profile
        assert profile.json_dialect is not None
        self.dialect = profile.json_dialect
        self.codes = profile.json_codes or {}
        self.statuses = profile.json_status or {}
        self.types = _reverse(self.dialect)

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
    candidates = view.types.get(str(task["type"]))
    if not candidates:
        # the key is checked first: a wrong key is the answer whatever the task
        check = simulator.accounts.check(key, ip)
        if check.code is not None:
            return view.error(check.code)
        return view.error("ERROR_TASK_NOT_SUPPORTED")
    variant, task_type = _pick_variant(candidates, task)
    spec = VARIANTS[variant]
    params = _params_of(variant, task_type, task)
    raw = {"key": key, "method": spec.wire_method, **params}
    answer = simulator.submit(raw, {}, ip)
    simulator.stats.codes[answer.code] += 1
    if not answer.ok:
        return view.error(str(answer.request))
    created = simulator.tasks[int(answer.request)]
    # Anti-Captcha and 2captcha number their tasks; CapSolver's ids are strings.
    task_id: int | str = str(created.id) if view.dialect == "capsolver" else created.id
    if view.dialect == "capsolver" and variant == "image":
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
    spec: MethodSpec = task.spec
    name = spec.name.removesuffix("_file")
    value = task.answer
    task_type = task_types(view.dialect).get(name)
    answer_field = task_type.answer[0] if task_type is not None else "token"
    solution: dict[str, Any]
    if name == "coordinates":
        points = value if isinstance(value, list) else []
        if view.dialect == "anticaptcha":
            solution = {"coordinates": [[p["x"], p["y"]] for p in points]}
        else:
            solution = {"coordinates": [{"x": p["x"], "y": p["y"]} for p in points]}
    elif answer_field == "*" and isinstance(value, dict):
        solution = dict(value)
    elif name == "rotate":
        solution = {"rotate": round(float(value))}
    else:
        solution = {answer_field: value}
    if task.user_agent:
        solution["userAgent"] = task.user_agent
    return solution


def _report(view: _JsonView, task: SimTask, *, good: bool) -> tuple[int, dict[str, Any]]:
    if task.state != "done":
        return view.error("ERROR_WRONG_CAPTCHA_ID")
    answer: Answer = view.simulator.report_task(task, good=good)
    if not answer.ok and answer.code != "ERROR_DUPLICATE_REPORT":
        return view.error(answer.code)
    return view.ok({"status": "success"})
