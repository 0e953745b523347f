"""A stored Result as each protocol answers it: res.php (``OK|...``, JSON ``status``/``request``) here, the
JSON API (``errorId``/``status``/``solution``, its error ids) in ``protocol.jsonapi`` (re-exported: the
webhook deliverer renders a callbackUrl's document with it too).

What the gateway stores with a task (``metadata["gateway"]``: the client key's id and the method's
variant) is what tells, at poll time, whose task it is and how its answer is shaped, without reading
anything but the result.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..models import Result
from ..protocol.answers import Answer, error
from ..protocol.jsonapi import (
    JSON_ERROR_IDS,
    gateway_part,
    json_error,
    json_solution,
    result_code,
    variant_of,
)
from ..protocol.methods import VARIANTS

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
        part["dialect"] = dialect  # whose task type createTask named (protocol.jsonapi.json_solution)
    return {"gateway": part}


def owner_of(result: Result) -> str | None:
    """The id of the client key that submitted the task (None: not submitted through a gateway)."""
    owner = gateway_part(result).get("key")
    return owner if isinstance(owner, str) else None


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
