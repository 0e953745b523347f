"""Tolerant parsing of in.php / res.php answers, and the key redaction used on every error path.

The service answers with HTTP 200 and JSON when asked (``json=1``), but also: ids as JSON integers,
plain-text codes despite ``json=1``, ``OK|<answer>`` lines, HTML error pages, bare decimals for the
balance, and answers in ``request``, in ``result`` plus ``user_agent``, or as JSON inside ``request``.
Everything here is pure (bytes in, values or SolverError out) so each shape is tested on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..models import AccountInfo, Solution
from ..protocol.methods import MethodSpec
from .codes import NOT_READY_CODES, CodeInfo, error_for, is_service_code

__all__ = [
    "Redactor",
    "Reply",
    "coordinates_of",
    "decode_answer",
    "parse_balance",
    "parse_multi",
    "parse_reply",
    "parse_threads",
    "raise_for_code",
    "task_id_of",
]

_HTML = re.compile(rb"^\s*(<!doctype|<html|<head|<body|<\?xml|<h1|<center|<title)", re.IGNORECASE)
_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class Redactor:
    """Removes the API key (and its URL-encoded form) from any text before it is shown."""

    def __init__(self, secret: str) -> None:
        from urllib.parse import quote, quote_plus

        variants = {secret, secret.strip(), quote(secret, safe=""), quote_plus(secret)}
        self._secrets = sorted((v for v in variants if len(v) >= 4), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[REDACTED]")
        return text

    def leaks(self, text: str) -> bool:
        return any(secret in text for secret in self._secrets)


@dataclass(frozen=True)
class Reply:
    """One answer of the service: ``ok`` (status 1 or ``OK|``), ``request`` and the other JSON fields."""

    ok: bool
    request: Any
    fields: dict[str, Any] = field(default_factory=dict)
    plain: bool = False  # the body was plain text (json=0, or the service ignored json=1)

    @property
    def code(self) -> str | None:
        """The service code when the reply is an error or not-ready, else None."""
        if self.ok or not isinstance(self.request, str):
            return None
        return self.request.strip()

    @property
    def not_ready(self) -> bool:
        return self.code in NOT_READY_CODES


def _snippet(text: str, redact: Redactor | None, limit: int = 120) -> str:
    text = " ".join(text.split())
    if redact is not None:
        text = redact(text)
    return text[:limit] + ("..." if len(text) > limit else "")


def parse_reply(
    status: int,
    body: bytes,
    *,
    redact: Redactor | None = None,
    time_scale: float = 1.0,
    retry_after_s: float | None = None,
) -> Reply:
    """A Reply for a well-formed answer; SolverError for HTTP trouble, HTML pages or garbage.

    Service codes are *not* raised here: the caller decides (a poll's CAPCHA_NOT_READY is not an error).
    """
    if status == 429:
        # A Retry-After header is the server's own clock: it is not scaled again.
        scale = 1.0 if retry_after_s is not None else time_scale
        raise error_for("HTTP_429", "HTTP 429", time_scale=scale, retry_after_s=retry_after_s)
    text = body.decode("utf-8", errors="replace").strip()
    if redact is not None:
        text = redact(text)  # once, here: nothing derived from the body can show the key
    if _HTML.match(body) or "<html" in text[:512].lower():
        title = _TITLE.search(text)
        detail = f"HTTP {status}: " + _snippet(title.group(1) if title else text, redact)
        raise error_for(f"HTTP_{status}" if status >= 500 else "HTML_PAGE", detail, time_scale=time_scale)
    reply = _parse_text(text)
    if reply is not None and (status == 200 or reply.code is not None):
        return reply
    if status != 200:
        raise error_for(f"HTTP_{status}", f"HTTP {status}: {_snippet(text, redact)}", time_scale=time_scale)
    raise error_for("BAD_RESPONSE", f"unexpected answer: {_snippet(text, redact)!r}", time_scale=time_scale)


def _parse_text(text: str) -> Reply | None:
    if text.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        status = data.get("status")
        ok = str(status).strip() == "1" if status is not None else "threads" in data
        fields = {k: v for k, v in data.items() if k not in ("status", "request")}
        return Reply(ok=ok, request=data.get("request"), fields=fields)
    if text.startswith("OK|"):
        return Reply(ok=True, request=text[3:], plain=True)
    if text == "OK_REPORT_RECORDED":
        return Reply(ok=True, request=text, plain=True)
    if text in NOT_READY_CODES or is_service_code(text):
        return Reply(ok=False, request=text, plain=True)
    if _NUMBER.match(text):  # getbalance in plain text
        return Reply(ok=True, request=text, plain=True)
    return None


def raise_for_code(
    reply: Reply,
    *,
    redact: Redactor | None = None,
    time_scale: float = 1.0,
    codes: Mapping[str, CodeInfo] | None = None,
) -> None:
    """Raise the SolverError of an error reply (not-ready replies are left to the caller); ``codes``
    is the provider's code table (default: CaptchaAI's)."""
    if reply.ok:
        return
    code = reply.code
    if not code:
        raise error_for("BAD_RESPONSE", "status 0 without a code", time_scale=time_scale)
    if code in NOT_READY_CODES:
        return
    extra = reply.fields.get("error_text")
    detail = _snippet(str(extra), redact) if extra else ""
    raise error_for(code, detail, time_scale=time_scale, codes=codes)


def task_id_of(
    reply: Reply,
    *,
    redact: Redactor | None = None,
    time_scale: float = 1.0,
    codes: Mapping[str, CodeInfo] | None = None,
) -> str:
    """The remote id of an accepted submit: a JSON integer or a string, kept as a string."""
    raise_for_code(reply, redact=redact, time_scale=time_scale, codes=codes)
    value = reply.request
    if reply.ok and isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    raise error_for("BAD_RESPONSE", f"submit answered no task id: {_snippet(repr(value), redact)}")


def decode_answer(spec: MethodSpec, reply: Reply) -> Solution:
    """The Solution in a solved reply, wherever this method puts it (tolerating the other place)."""
    primary, secondary = ("result", "request") if spec.answer_field == "result" else ("request", "result")
    values = {"request": reply.request, **reply.fields}
    raw = values.get(primary)
    if _empty(raw):
        raw = values.get(secondary)
    if _empty(raw):
        raise error_for("BAD_RESPONSE", "solved, but the answer is empty")
    user_agent = reply.fields.get("user_agent") or reply.fields.get("userAgent")
    ua = str(user_agent) if user_agent else None
    if spec.name.startswith("coordinates"):
        points = coordinates_of(raw)
        return Solution(text=json.dumps(points, separators=(",", ":")), user_agent=ua, data=points)
    if isinstance(raw, dict | list):
        return Solution(text=json.dumps(raw, separators=(",", ":")), user_agent=ua, data=raw)
    text = str(raw)
    data = _structured(text) if spec.answer_kind == "json" else None
    return Solution(text=text, user_agent=ua, data=data)


def coordinates_of(raw: Any) -> list[dict[str, int]]:
    """A click answer as ``[{"x": 39, "y": 59}, ...]``, from any shape the services send.

    ``coordinates:x=39,y=59;x=252,y=72`` (2captcha in plain text), a list of ``{"x": "39", "y": "59"}``
    (its JSON answer, strings), or ``[[39, 59], ...]`` (Anti-Captcha's ImageToCoordinatesTask).
    Anything else is a BAD_RESPONSE: an OCR-like text is not an answer to a click task.
    """
    points: list[dict[str, int]] = []
    items: Any = raw
    if isinstance(raw, str):
        text = raw.strip()
        try:
            items = json.loads(text)
        except ValueError:
            if text.startswith("coordinates:"):
                text = text[len("coordinates:") :]
            items = []
            for chunk in filter(None, (c.strip() for c in text.split(";"))):
                pairs = dict(p.split("=", 1) for p in chunk.split(",") if "=" in p)
                items.append(pairs)
    if isinstance(items, dict) and "coordinates" in items:
        items = items["coordinates"]
    if not isinstance(items, list) or not items:
        raise error_for("BAD_RESPONSE", "a coordinates answer holds no points")
    for item in items:
        try:
            if isinstance(item, dict):
                points.append({"x": round(float(item["x"])), "y": round(float(item["y"]))})
            elif isinstance(item, list | tuple) and len(item) >= 2:
                points.append({"x": round(float(item[0])), "y": round(float(item[1]))})
            else:
                raise TypeError(item)
        except (KeyError, TypeError, ValueError):
            raise error_for("BAD_RESPONSE", "a coordinates answer has a point without x and y") from None
    return points


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "OK"))


def _structured(text: str) -> Any:
    """JSON, a 2captcha grid answer (``click:1/4/7``) or ``k:v,k:v`` pairs (GeeTest v3 in plain text)."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    if stripped.startswith("click:"):
        cells = stripped[len("click:") :].split("/")
        if all(c.strip().isdigit() for c in cells):
            return [int(c) for c in cells]
    pairs = [p.split(":", 1) for p in stripped.split(",")]
    if len(pairs) > 1 and all(len(p) == 2 and p[0].strip() for p in pairs):
        return {k.strip(): v.strip() for k, v in pairs}
    return None


def parse_threads(reply: Reply, *, codes: Mapping[str, CodeInfo] | None = None) -> AccountInfo:
    """``threadsinfo``: top-level ``threads`` / ``working_threads``, or the same inside ``request``."""
    raise_for_code(reply, codes=codes)
    sources: list[Any] = [reply.fields, reply.request]
    if isinstance(reply.request, str):
        try:
            sources.append(json.loads(reply.request))
        except ValueError:
            pass
    for source in sources:
        if isinstance(source, dict) and "threads" in source:
            threads = _int(source.get("threads"))
            if threads is None:  # a worker would take it for "no limit at all"
                raise error_for("BAD_RESPONSE", "threadsinfo answered a thread count that is not a number")
            return AccountInfo(threads=threads, working_threads=_int(source.get("working_threads")))
    raise error_for("BAD_RESPONSE", "threadsinfo answered without a thread count")


def parse_balance(reply: Reply, *, codes: Mapping[str, CodeInfo] | None = None) -> float:
    """``getbalance``: a decimal as a JSON string or number, or as a bare line."""
    raise_for_code(reply, codes=codes)
    try:
        return float(reply.request)
    except (TypeError, ValueError):
        raise error_for("BAD_RESPONSE", "getbalance answered no number") from None


def parse_multi(reply: Reply, count: int) -> list[str]:
    """A multi-id poll (``ids=``): answers in order, ``|``-joined; raises if the count does not match."""
    raise_for_code(reply)
    if not isinstance(reply.request, str):
        raise error_for("BAD_RESPONSE", "multi-id poll answered no text")
    parts = reply.request.split("|")
    if len(parts) != count:
        raise error_for("BAD_RESPONSE", f"multi-id poll answered {len(parts)} items for {count} ids")
    return parts


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
