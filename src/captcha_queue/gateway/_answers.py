"""A stored Result as each protocol answers it: res.php (``OK|...``, JSON ``status``/``request``) and the
JSON API (``errorId``/``status``/``solution``), plus the JSON API's error ids.

What the gateway stores with a task (``metadata["gateway"]``: the client key's id and the method's
variant) is what tells, at poll time, whose task it is and how its answer is shaped, without reading
anything but the result.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..models import Result
from ..protocol.answers import Answer, error
from ..protocol.methods import VARIANTS
from ..protocol.tasktypes import DIALECTS, GATEWAY_DIALECTS, task_type_for, write_solution

__all__ = [
    "JSON_ERROR_IDS",
    "decode_result",
    "gateway_metadata",
    "json_error",
    "json_solution",
    "legacy_answer",
    "owner_of",
    "result_code",
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

_decoder = msgspec.json.Decoder(Result)


def decode_result(raw: Any) -> Result | None:
    """A stored Result, or None when unreadable (never raises)."""
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def gateway_metadata(key_id: str, variant: str, dialect: str | None = None) -> dict[str, Any]:
    part = {"key": key_id, "variant": variant}
    if dialect is not None:
        part["dialect"] = dialect  # whose task type createTask named (see json_solution)
    return {"gateway": part}


def _gateway_part(result: Result) -> dict[str, Any]:
    meta = result.metadata or {}
    part = meta.get("gateway")
    return part if isinstance(part, dict) else {}


def owner_of(result: Result) -> str | None:
    """The id of the client key that submitted the task (None: not submitted through a gateway)."""
    owner = _gateway_part(result).get("key")
    return owner if isinstance(owner, str) else None


def variant_of(result: Result) -> str:
    variant = _gateway_part(result).get("variant")
    return variant if isinstance(variant, str) else ""


def result_code(result: Result) -> str:
    """The service code a failed result is answered with (the service's own, else UNSOLVABLE)."""
    code = result.error_code or ""
    return code if code.startswith("ERROR_") else "ERROR_CAPTCHA_UNSOLVABLE"


def legacy_answer(result: Result) -> Answer:
    """res.php's answer for a final result: the answer where the method's clients read it."""
    if not result.ok or result.solution is None:
        return error(result_code(result))
    solution = result.solution
    value: Any = solution.data if solution.data is not None else solution.text
    extra: dict[str, Any] = {}
    spec = VARIANTS.get(variant_of(result))
    if spec is not None and spec.answer_field == "result":
        extra["result"] = value  # Enterprise, Cloudflare: clients read `result` (others `request`)
    if solution.user_agent:
        extra["user_agent"] = solution.user_agent
    return Answer(ok=True, request=value, extra=extra)


def json_error(code: str, description: str = "") -> dict[str, Any]:
    """A JSON API error body."""
    return {
        "errorId": JSON_ERROR_IDS.get(code, _OTHER_ERROR_ID),
        "errorCode": code,
        "errorDescription": description or code,
    }


def json_solution(result: Result) -> dict[str, Any]:
    """The JSON API ``solution`` object of a successful result: as the provider whose task type the
    client named returns it (a task queued through in.php: as the first gateway dialect that has it)."""
    assert result.solution is not None
    variant = variant_of(result)
    stored = _gateway_part(result).get("dialect")
    dialects = [d for d in DIALECTS if d == stored] + list(GATEWAY_DIALECTS)
    task_type = next(filter(None, (task_type_for(d, variant) for d in dialects)), None)
    return write_solution(task_type, result.solution)
