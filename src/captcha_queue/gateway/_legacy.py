"""``/in.php`` and ``/res.php``: the legacy protocol, answered as the service does.

Every request is GET query, POST form, POST multipart or POST JSON object (2captcha's Node client sends
its image methods so); query and body merged, the body winning. ``json=1`` gets JSON, anything else plain
text. Every refusal is the service's own code and writes nothing: a bad key, a rate or quota exceeded, a
bad param, a body too big.

A poll (``action=get``) is one HGET of the results hash (two reads only while the task is not final:
the second tells "not ready" from "no such task").
"""

from __future__ import annotations

import base64
import logging
from collections.abc import MutableMapping
from typing import Any, Literal, cast

from aiohttp import web
from multidict import MultiDictProxy

from ..errors import InvalidTask, QueueFull, RedisUnavailable, SubmitRefused, TaskNotFound
from ..models import Result
from ..protocol.answers import JSON_TYPE, Answer, error, plain_value, render
from ..protocol.bodies import json_params
from ..protocol.methods import MISSING_PARAM_CODES, canonical_params
from ..protocol.validation import Upload, check_submit
from ..queue._producer import AsyncCaptchaQueue
from ..store.connection import redis_errors_async
from ._answers import decode_result, gateway_metadata, legacy_answer, owner_of
from ._ids import is_task_id
from ._keys import KEY_CHARS, ClientKey
from ._limits import admit_task, allow_request, release_task
from ._state import GATEWAY_KEY, Gateway

__all__ = ["in_php", "res_php"]

log = logging.getLogger("captcha_queue.gateway")

#: Params of the protocol itself, never part of a task (``key`` above all: it never reaches Redis).
_PROTOCOL_PARAMS = ("key", "json", "method", "soft_id", "header_acao")
_NOT_READY = "CAPCHA_NOT_READY"
PingbackFormat = Literal["form", "get", "json", "jsonapi"]


class Refused(Exception):
    """A request refused with a service code (nothing was written)."""

    def __init__(self, code: str, *, plain_only: bool = False) -> None:
        super().__init__(code)
        self.code = code
        self.plain_only = plain_only


def _pingback_arg(params: MutableMapping[str, str]) -> str | None:
    """The pingback URL a submission asks for (``pingback``, or its alias ``callback``), taken out of
    its params (the provider must never call it: its id is not the client's); None when not asked.

    Where the result is delivered to it is the webhook outbox's business, not the gateway's."""
    url = None
    for name in ("pingback", "callback"):
        value = params.pop(name, None)
        if value and url is None:
            url = value.strip() or None
    return url


async def _report(queue: AsyncCaptchaQueue, task_id: str, *, correct: bool) -> bool:
    """Record the client's verdict on a solved task (forwarded to the provider that solved it):
    True when newly recorded, False when already reported; TaskNotFound for an unknown or unsolved
    task."""
    return await queue.report(task_id, correct=correct)


# -- reading a request -------------------------------------------------------------------------------


async def read_params(request: web.Request) -> tuple[dict[str, str], dict[str, Upload]]:
    """Query and body params (the body winning) and the file parts; Refused for a body too big, a
    malformed body or too many params."""
    settings = request.app[GATEWAY_KEY].settings
    params: dict[str, str] = dict(request.query)
    uploads: dict[str, Upload] = {}
    if request.method == "POST" and request.body_exists and request.content_type == JSON_TYPE:
        body = await _json_body(request)
        if len(body) + len(params) > settings.max_params:
            raise Refused("ERROR_BAD_PARAMETERS")
        params.update(body)
    elif request.method == "POST" and request.body_exists:
        try:
            form: MultiDictProxy[Any] = await request.post()
        except web.HTTPRequestEntityTooLarge as exc:
            raise Refused("ERROR_TOO_BIG_CAPTCHA_FILESIZE") from exc
        except (ValueError, web.HTTPException) as exc:
            raise Refused("ERROR_UPLOAD", plain_only=True) from exc
        if len(form) + len(params) > settings.max_params:
            raise Refused("ERROR_BAD_PARAMETERS")
        for name, value in form.items():
            if isinstance(value, web.FileField):
                uploads[name] = Upload(filename=value.filename or "", content=value.file.read())
            else:
                params[name] = str(value)
    elif len(params) > settings.max_params:
        raise Refused("ERROR_BAD_PARAMETERS")
    return params, uploads


async def _json_body(request: web.Request) -> dict[str, str]:
    """A JSON object body as params (``protocol.bodies``); Refused for one that is not a JSON object or is
    too big."""
    try:
        return json_params(await request.read())
    except web.HTTPRequestEntityTooLarge as exc:
        raise Refused("ERROR_TOO_BIG_CAPTCHA_FILESIZE") from exc
    except ValueError as exc:
        raise Refused("ERROR_BAD_PARAMETERS") from exc


async def authenticate(gateway: Gateway, given: str | None) -> ClientKey:
    """The record of the client key sent, counted against its rate; Refused otherwise."""
    if not given or len(given) != KEY_CHARS:
        raise Refused("ERROR_WRONG_USER_KEY")
    key = await gateway.keys.get(given)
    if key is None:
        raise Refused("ERROR_KEY_DOES_NOT_EXIST")
    if not await allow_request(gateway.client, key):
        raise Refused("ERROR_TOO_MUCH_REQUESTS")
    return key


def _respond(answer: Answer, params: dict[str, str]) -> web.Response:
    body, content_type = render(answer, plain=params.get("json", "").strip() != "1")
    return web.Response(text=body, content_type=content_type)


async def _endpoint(request: web.Request, handle: Any) -> web.Response:
    params: dict[str, str] = {}
    try:
        params, uploads = await read_params(request)
        gateway = request.app[GATEWAY_KEY]
        key = await authenticate(gateway, params.get("key"))
        answer: Answer = await handle(gateway, key, params, uploads)
    except Refused as exc:
        answer = error(exc.code, plain_only=exc.plain_only)
    except RedisUnavailable as exc:
        log.warning("Redis unavailable: %s", exc)
        answer = error("ERROR_INTERNAL_SERVER_ERROR")  # clients retry this one after a pause
    return _respond(answer, params)


async def in_php(request: web.Request) -> web.Response:
    return await _endpoint(request, _submit)


async def res_php(request: web.Request) -> web.Response:
    return await _endpoint(request, _res)


# -- in.php ------------------------------------------------------------------------------------------


def _task_params(params: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in params.items() if name not in _PROTOCOL_PARAMS}


async def _submit(
    gateway: Gateway, key: ClientKey, params: dict[str, str], uploads: dict[str, Upload]
) -> Answer:
    method = params.get("method", "").strip()
    task = _task_params(params)
    pingback = _pingback_arg(task)  # delivered by the webhook outbox in the format of --pingback-format
    task = canonical_params(method, task)
    spec, rejection = check_submit(gateway.settings, method, task, uploads)
    if rejection is not None:
        raise Refused(rejection.code, plain_only=rejection.plain)
    assert spec is not None
    if spec.file_params:  # a multipart upload is queued as the base64 method: params are text
        method = "base64"
        task["body"] = base64.b64encode(uploads["file"].content).decode("ascii")
    task_id = await submit(
        gateway,
        key,
        method,
        task,
        spec.name,
        pingback=pingback,
        pingback_format=gateway.settings.pingback_format,
    )
    return Answer(ok=True, request=task_id)


async def submit(
    gateway: Gateway,
    key: ClientKey,
    method: str,
    params: dict[str, Any],
    variant: str,
    *,
    pingback: str | None = None,
    pingback_format: str = "form",
    dialect: str | None = None,
) -> str:
    """Queue one validated task for ``key`` under a freshly minted id; Refused with the service's code.
    With a ``pingback``, the result goes there when final (this process delivers the namespace's
    webhooks unless the ``webhooks`` setting is off). ``dialect``: whose task type a createTask named
    (it shapes the ``solution`` getTaskResult answers)."""
    queue = gateway.queue(key.namespace)
    if pingback is not None:
        await gateway.deliver_webhooks(key.namespace)
    task_id = await gateway.minter(key.namespace).next_id()
    if not await admit_task(gateway.client, queue.keys, key, task_id):
        raise Refused("ERROR_NO_SLOT_AVAILABLE")
    try:
        return await queue.submit(
            method,
            params,
            priority=key.priority,
            metadata=gateway_metadata(key.id, variant, dialect),
            task_id=task_id,
            pingback=pingback,
            pingback_format=cast(PingbackFormat, pingback_format),
        )
    except InvalidTask as exc:
        await release_task(gateway.client, queue.keys, key, task_id)
        code = MISSING_PARAM_CODES.get(exc.field or "", "ERROR_BAD_PARAMETERS")
        if exc.field == "params" and "bytes encoded" in str(exc):
            code = "ERROR_TOO_BIG_CAPTCHA_FILESIZE"
        raise Refused(code) from exc
    except (QueueFull, SubmitRefused) as exc:  # backpressure or Redis full: busy, try again later
        await release_task(gateway.client, queue.keys, key, task_id)
        raise Refused("ERROR_NO_SLOT_AVAILABLE") from exc
    except BaseException:
        await release_task(gateway.client, queue.keys, key, task_id)
        raise


# -- res.php -----------------------------------------------------------------------------------------


async def _res(
    gateway: Gateway, key: ClientKey, params: dict[str, str], uploads: dict[str, Upload]
) -> Answer:
    action = params.get("action", "").strip()
    if not action:
        return error("ERROR_EMPTY_ACTION")
    if action == "get":
        if params.get("ids"):
            return await _poll_many(gateway, key, params["ids"])
        return await _poll_one(gateway, key, params.get("id", ""))
    if action == "getbalance":
        balance = await gateway.balance(key.namespace, key.account)
        return Answer(ok=True, request=f"{balance:.3f}", bare=True)
    if action == "threadsinfo":
        threads, working = await gateway.threads(key.namespace, key.account)
        return Answer(
            ok=True, request="OK", document={"status": 1, "threads": threads, "working_threads": working}
        )
    if action in ("reportbad", "reportgood"):
        return await report(gateway, key, params.get("id", ""), correct=action == "reportgood")
    return error("ERROR_BAD_PARAMETERS")


async def lookup(gateway: Gateway, key: ClientKey, raw_id: str) -> Result | str:
    """The final result of one of ``key``'s tasks, or the code to answer: not ready, bad id format,
    no such task (another key's tasks do not exist for this one)."""
    task_id = raw_id.strip()
    if not is_task_id(task_id):
        return "ERROR_WRONG_ID_FORMAT"
    keys = gateway.queue(key.namespace).keys
    client = gateway.client
    async with redis_errors_async(client):
        raw = await client.hget(keys.results, task_id)
        if raw is None:
            return _NOT_READY if await client.hexists(keys.state, task_id) else "ERROR_WRONG_CAPTCHA_ID"
    result = decode_result(raw)
    if result is None or owner_of(result) != key.id:
        return "ERROR_WRONG_CAPTCHA_ID"
    return result


async def _poll_one(gateway: Gateway, key: ClientKey, raw_id: str) -> Answer:
    found = await lookup(gateway, key, raw_id)
    if isinstance(found, str):
        return error(found)
    return legacy_answer(found)


async def _poll_many(gateway: Gateway, key: ClientKey, ids: str) -> Answer:
    """``ids=1,2,3``: the answers joined by ``|`` in the order asked (errors and not-ready by code)."""
    raw_ids = ids.split(",")
    if len(raw_ids) > gateway.settings.max_params:
        return error("ERROR_BAD_PARAMETERS")
    keys = gateway.queue(key.namespace).keys
    client = gateway.client
    wanted = [raw.strip() for raw in raw_ids]
    valid = [task_id for task_id in wanted if is_task_id(task_id)]
    async with redis_errors_async(client):
        raws = await client.hmget(keys.results, valid) if valid else []
        found = dict(zip(valid, raws, strict=True))
        missing = [task_id for task_id in valid if found[task_id] is None]
        states = await client.hmget(keys.state, missing) if missing else []
    pending = {task_id for task_id, state in zip(missing, states, strict=True) if state is not None}
    items: list[str] = []
    for task_id in wanted:
        if not is_task_id(task_id):
            items.append("ERROR_WRONG_ID_FORMAT")
        elif found[task_id] is None:
            items.append(_NOT_READY if task_id in pending else "ERROR_WRONG_CAPTCHA_ID")
        else:
            result = decode_result(found[task_id])
            if result is None or owner_of(result) != key.id:
                items.append("ERROR_WRONG_CAPTCHA_ID")
            else:
                answer = legacy_answer(result)
                items.append(plain_value(answer.request) if answer.ok else answer.code)
    return Answer(ok=True, request="|".join(items), bare=True)


async def report(gateway: Gateway, key: ClientKey, raw_id: str, *, correct: bool) -> Answer:
    """reportbad / reportgood on one of ``key``'s solved tasks."""
    found = await lookup(gateway, key, raw_id)
    if isinstance(found, str):
        return error("ERROR_WRONG_CAPTCHA_ID" if found == _NOT_READY else found)
    try:
        recorded = await _report(gateway.queue(key.namespace), found.id, correct=correct)
    except TaskNotFound:
        return error("ERROR_WRONG_CAPTCHA_ID")
    if not recorded:
        return error("ERROR_DUPLICATE_REPORT")
    return Answer(ok=True, request="OK_REPORT_RECORDED", bare=True)
