"""The JSON API (``createTask``, ``getTaskResult``, ``getBalance``, ``report*``), as 2captcha's v2 API and
anti-captcha.com answer it: ``{"errorId": 0, ...}`` or ``{"errorId": N, "errorCode": ..., ...}``, HTTP 200.

Task types are read by the task type table (``protocol/tasktypes.py``, every provider's names), then
checked and queued exactly as an in.php submission is (same checks, same ids, same limits); the row
that read a task also shapes its ``solution`` (as that provider returns it). ``taskId`` is a JSON integer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from aiohttp import web

from ..errors import RedisUnavailable
from ..protocol.jsonapi import task_result
from ..protocol.methods import canonical_params
from ..protocol.tasktypes import DialectName, TaskType, accepted_types, parse_task
from ..protocol.validation import check_submit
from ._answers import json_error
from ._keys import KEY_CHARS, ClientKey
from ._legacy import Refused, _pingback_arg, lookup, report, submit
from ._limits import allow_request
from ._state import GATEWAY_KEY, Gateway

__all__ = ["ROUTES", "TASK_TYPES"]

log = logging.getLogger("captcha_queue.gateway")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


#: Every task type name createTask takes -> the rows of the task type table that may read it.
TASK_TYPES: Mapping[str, list[tuple[DialectName, TaskType]]] = MappingProxyType(accepted_types())

#: Legacy codes that the JSON API names otherwise.
_JSON_CODES = {
    "ERROR_WRONG_CAPTCHA_ID": "ERROR_NO_SUCH_CAPCHA_ID",
    "ERROR_WRONG_ID_FORMAT": "ERROR_NO_SUCH_CAPCHA_ID",
    "ERROR_WRONG_USER_KEY": "ERROR_KEY_DOES_NOT_EXIST",
}

Handler = Callable[[Gateway, ClientKey, dict[str, Any]], Awaitable[dict[str, Any]]]


def _reply(body: Mapping[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), content_type="application/json")


def _endpoint(handle: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def endpoint(request: web.Request) -> web.Response:
        gateway = request.app[GATEWAY_KEY]
        try:
            try:
                document = json.loads(await request.read())
            except web.HTTPRequestEntityTooLarge as exc:
                raise Refused("ERROR_TOO_BIG_CAPTCHA_FILESIZE") from exc
            except (ValueError, UnicodeDecodeError) as exc:
                raise Refused("ERROR_BAD_PARAMETERS") from exc
            if not isinstance(document, dict):
                raise Refused("ERROR_BAD_PARAMETERS")
            given = document.get("clientKey")
            if not isinstance(given, str) or len(given) != KEY_CHARS:
                raise Refused("ERROR_KEY_DOES_NOT_EXIST")
            key = await gateway.keys.get(given)
            if key is None:
                raise Refused("ERROR_KEY_DOES_NOT_EXIST")
            if not await allow_request(gateway.client, key):
                raise Refused("ERROR_TOO_MUCH_REQUESTS")
            return _reply(await handle(gateway, key, document))
        except Refused as exc:
            return _reply(json_error(_JSON_CODES.get(exc.code, exc.code)))
        except RedisUnavailable as exc:
            log.warning("Redis unavailable: %s", exc)
            return _reply(json_error("ERROR_INTERNAL_SERVER_ERROR"))

    return endpoint


async def _create_task(gateway: Gateway, key: ClientKey, document: dict[str, Any]) -> dict[str, Any]:
    task = document.get("task")
    if not isinstance(task, dict):
        raise Refused("ERROR_TASK_ABSENT")
    if len(task) > gateway.settings.max_params:
        raise Refused("ERROR_BAD_PARAMETERS")
    parsed = parse_task(task)
    if parsed is None:
        raise Refused("ERROR_TASK_NOT_SUPPORTED")
    method = parsed.method
    hooks: dict[str, str] = {}
    for source in (document, task):
        if source.get("callbackUrl"):
            hooks.setdefault("pingback", _text(source["callbackUrl"]))
    pingback = _pingback_arg(hooks)  # delivered by the webhook outbox as Anti-Captcha sends it
    params = canonical_params(method, parsed.params)
    spec, rejection = check_submit(gateway.settings, method, params, {})
    if rejection is not None:
        raise Refused(rejection.code)
    assert spec is not None
    task_id = await submit(
        gateway,
        key,
        method,
        params,
        spec.name,
        pingback=pingback,
        pingback_format="jsonapi",
        dialect=parsed.dialect,
    )
    # ``status``: CapSolver answers it (its SDK reads it); other clients ignore it
    return {"errorId": 0, "taskId": int(task_id), "status": "idle"}


def _task_id(document: Mapping[str, Any]) -> str:
    value = document.get("taskId")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Refused("ERROR_NO_SUCH_CAPCHA_ID")
    return str(value)


async def _get_task_result(gateway: Gateway, key: ClientKey, document: dict[str, Any]) -> dict[str, Any]:
    found = await lookup(gateway, key, _task_id(document))
    if found == "CAPCHA_NOT_READY":
        return {"errorId": 0, "status": "processing"}
    if isinstance(found, str):
        raise Refused(found)
    return task_result(found)


async def _get_balance(gateway: Gateway, key: ClientKey, document: dict[str, Any]) -> dict[str, Any]:
    return {"errorId": 0, "balance": await gateway.balance(key.namespace, key.account)}


def _report(correct: bool) -> Handler:
    async def handle(gateway: Gateway, key: ClientKey, document: dict[str, Any]) -> dict[str, Any]:
        answer = await report(gateway, key, _task_id(document), correct=correct)
        if not answer.ok:
            raise Refused(answer.code)
        return {"errorId": 0, "status": "success"}

    return handle


ROUTES: dict[str, Callable[[web.Request], Awaitable[web.Response]]] = {
    "createTask": _endpoint(_create_task),
    "getTaskResult": _endpoint(_get_task_result),
    "getBalance": _endpoint(_get_balance),
    "reportIncorrectRecaptcha": _endpoint(_report(False)),
    "reportCorrectRecaptcha": _endpoint(_report(True)),
    "reportIncorrectImageCaptcha": _endpoint(_report(False)),
}
