"""What one delivery sends: the request (form, query or JSON), its signature, and the resolver that
refuses private addresses at connect time.

Headers of every delivery::

    X-Captcha-Queue-Delivery   the delivery id (the task id + "." + when it finished): deduplicate on it
    X-Captcha-Queue-Task       the task id
    X-Captcha-Queue-Attempt    1 for the first send, 2 for the second, ...
    X-Captcha-Queue-Timestamp  Unix seconds when this send was signed
    X-Captcha-Queue-Signature  "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + payload)

The payload is the body of a POST (form or JSON), and the query string of a GET, exactly as sent.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from .. import __version__
from ..models import Result
from ..protocol.jsonapi import task_result
from ..protocol.pingback import refused_address
from ._outbox import Delivery

__all__ = [
    "HEADER_ATTEMPT",
    "HEADER_DELIVERY",
    "HEADER_SIGNATURE",
    "HEADER_TASK",
    "HEADER_TIMESTAMP",
    "GuardedResolver",
    "Request",
    "TargetRefused",
    "build_request",
    "sign",
]

HEADER_DELIVERY = "X-Captcha-Queue-Delivery"
HEADER_TASK = "X-Captcha-Queue-Task"
HEADER_ATTEMPT = "X-Captcha-Queue-Attempt"
HEADER_TIMESTAMP = "X-Captcha-Queue-Timestamp"
HEADER_SIGNATURE = "X-Captcha-Queue-Signature"

_result_decoder = msgspec.json.Decoder(Result)


class TargetRefused(OSError):
    """A pingback host resolved to an address deliveries may not go to."""


def sign(secret: str, timestamp: str, payload: bytes) -> str:
    """The signature header's value: ``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." + payload``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + payload, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class Request:
    """One send, ready for aiohttp: ``url`` is already encoded (a GET carries its query in it)."""

    method: str
    url: str
    body: bytes | None
    content_type: str | None
    payload: bytes  # what the signature covers

    def headers(self, delivery: Delivery, timestamp: str, secret: str | None) -> dict[str, str]:
        headers = {
            "User-Agent": f"captcha-queue/{__version__} (webhooks)",
            HEADER_DELIVERY: delivery.delivery,
            HEADER_TASK: delivery.task,
            HEADER_ATTEMPT: str(delivery.attempts),
            HEADER_TIMESTAMP: timestamp,
        }
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        if secret is not None:
            headers[HEADER_SIGNATURE] = sign(secret, timestamp, self.payload)
        return headers


def _code(result: Result) -> str:
    """The ``code`` field: the answer of a solved task, else its error code (2captcha sends an error
    code there too), or ``ERROR_<STATUS>``."""
    if result.ok and result.solution is not None:
        return result.solution.text
    return result.error_code or f"ERROR_{result.status.upper()}"


def build_request(delivery: Delivery) -> Request:
    """The request of one delivery; ValueError for a format or a stored result it cannot send."""
    result = _result_decoder.decode(delivery.result)
    fields = [("id", delivery.task), ("code", _code(result)), ("status", result.status)]
    if delivery.format == "form":
        body = urlencode(fields).encode("ascii")
        return Request(
            "POST", _without_fragment(delivery.url), body, "application/x-www-form-urlencoded", body
        )
    if delivery.format == "get":
        parts = urlsplit(delivery.url)
        query = "&".join(q for q in (parts.query, urlencode(fields)) if q)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))
        return Request("GET", url, None, None, query.encode("ascii"))
    if delivery.format == "json":
        document: dict[str, Any] = dict(fields)
        document["delivery"] = delivery.delivery
        document["result"] = msgspec.Raw(delivery.result.encode("utf-8"))
        body = msgspec.json.encode(document)
        return Request("POST", _without_fragment(delivery.url), body, "application/json", body)
    if delivery.format == "jsonapi":  # Anti-Captcha's callbackUrl: getTaskResult's document, and whose
        task_id: int | str = int(delivery.task) if delivery.task.isdigit() else delivery.task
        body = msgspec.json.encode({"taskId": task_id, **task_result(result)})
        return Request("POST", _without_fragment(delivery.url), body, "application/json", body)
    raise ValueError(f"unknown pingback format {delivery.format!r}")


def _without_fragment(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


class GuardedResolver(AbstractResolver):
    """aiohttp's threaded resolver, refusing a host any of whose addresses is private (unless allowed):
    the check runs on the very addresses the connection is made to."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for entry in found:
                why = refused_address(ipaddress.ip_address(entry["host"]))
                if why is not None:
                    raise TargetRefused(f"{host} resolves to {why}")
        return found

    async def close(self) -> None:
        await self._inner.close()
