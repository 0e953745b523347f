"""A stored Result as the JSON API (``createTask``/``getTaskResult``, Anti-Captcha's and 2captcha's v2)
answers it, shared by the gateway (getTaskResult) and the webhook deliverer (a ``callbackUrl`` gets the
same document, as Anti-Captcha sends it). Pure: no I/O.

What a gateway stores with a task (``metadata["gateway"]``: the method's variant and whose task type
the client named) is what shapes the ``solution`` object, without reading anything but the result.
"""

from __future__ import annotations

from typing import Any

from ..models import Result
from .tasktypes import DIALECTS, GATEWAY_DIALECTS, task_type_for, write_solution

__all__ = [
    "JSON_ERROR_IDS",
    "gateway_part",
    "json_error",
    "json_solution",
    "result_code",
    "task_result",
    "variant_of",
]

#: errorId of each errorCode, from the anti-captcha.com and 2captcha.com error tables (both publish
#: the same ids). A code neither table lists is answered with ``_OTHER_ERROR_ID``.
JSON_ERROR_IDS: dict[str, int] = {
    "ERROR_KEY_DOES_NOT_EXIST": 1,
    "ERROR_NO_SLOT_AVAILABLE": 2,
    "ERROR_ZERO_CAPTCHA_FILESIZE": 3,
    "ERROR_TOO_BIG_CAPTCHA_FILESIZE": 4,
    "ERROR_ZERO_BALANCE": 10,
    "ERROR_IP_NOT_ALLOWED": 11,
    "ERROR_CAPTCHA_UNSOLVABLE": 12,
    "ERROR_BAD_DUPLICATES": 13,
    "ERROR_NO_SUCH_METHOD": 14,
    "ERROR_IMAGE_TYPE_NOT_SUPPORTED": 15,
    "ERROR_NO_SUCH_CAPCHA_ID": 16,
    "ERROR_IP_BLOCKED": 21,
    "ERROR_TASK_ABSENT": 22,
    "ERROR_TASK_NOT_SUPPORTED": 23,
}
_OTHER_ERROR_ID = 110  # a parameter error the tables do not name (ERROR_PAGEURL, ERROR_GOOGLEKEY, ...)


def gateway_part(result: Result) -> dict[str, Any]:
    """What a gateway stored with the task (``metadata["gateway"]``), or {}."""
    meta = result.metadata or {}
    part = meta.get("gateway")
    return part if isinstance(part, dict) else {}


def variant_of(result: Result) -> str:
    variant = gateway_part(result).get("variant")
    return variant if isinstance(variant, str) else ""


def result_code(result: Result) -> str:
    """The service code a failed result is answered with (the service's own, else UNSOLVABLE)."""
    code = result.error_code or ""
    return code if code.startswith("ERROR_") else "ERROR_CAPTCHA_UNSOLVABLE"


def json_error(code: str, description: str = "") -> dict[str, Any]:
    """A JSON API error body."""
    return {
        "errorId": JSON_ERROR_IDS.get(code, _OTHER_ERROR_ID),
        "errorCode": code,
        "errorDescription": description or code,
    }


def json_solution(result: Result) -> dict[str, Any]:
    """The JSON API ``solution`` object of a successful result: as the provider whose task type the
    client named returns it (``protocol/tasktypes.py``; a task queued through in.php: as the first
    gateway dialect that has its variant)."""
    assert result.solution is not None
    variant = variant_of(result)
    stored = gateway_part(result).get("dialect")
    dialects = [d for d in DIALECTS if d == stored] + list(GATEWAY_DIALECTS)
    task_type = next(filter(None, (task_type_for(d, variant) for d in dialects)), None)
    return write_solution(task_type, result.solution)


def task_result(result: Result) -> dict[str, Any]:
    """getTaskResult's document for a final result: ``ready`` with its solution, or the error body."""
    if not result.ok or result.solution is None:
        return json_error(result_code(result))
    return {
        "errorId": 0,
        "status": "ready",
        "solution": json_solution(result),
        "cost": "0",
        "ip": "",
        "createTime": int(result.submitted_at),
        "endTime": int(result.finished_at),
        "solveCount": result.attempts,
    }
