"""The in.php / res.php answer and how it is written on the wire, shared by the simulator and the gateway.

An :class:`Answer` is what an endpoint decided; :func:`render` writes it as the service does: JSON with
``status`` and ``request`` when ``json=1`` was asked, else plain text (``OK|<value>`` for a success, the
bare code for an error). Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JSON_TYPE", "TEXT_TYPE", "Answer", "error", "plain_value", "render"]

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain"


@dataclass(frozen=True)
class Answer:
    """One in.php / res.php answer before it is rendered as JSON or plain text."""

    ok: bool
    request: Any
    extra: dict[str, Any] = field(default_factory=dict)
    plain_only: bool = False  # sent as plain text even when json=1 was asked (ERROR_UPLOAD)
    bare: bool = False  # plain text without the "OK|" prefix (balance, report answers)
    document: dict[str, Any] | None = None  # the whole JSON body (threadsinfo)
    plain_text: str | None = None  # the plain-text answer when it is not "OK|" + request (coordinates)

    @property
    def code(self) -> str:
        return "OK" if self.ok else str(self.request)


def error(code: str, *, plain_only: bool = False) -> Answer:
    """An error answer: ``{"status":0,"request":CODE}`` or the bare code."""
    return Answer(ok=False, request=code, plain_only=plain_only)


def plain_value(value: Any) -> str:
    """A value as plain text: JSON documents compact, everything else as ``str``."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def render(answer: Answer, *, plain: bool) -> tuple[str, str]:
    """(body, content type) of ``answer``: plain text when ``plain`` (or the answer is plain only)."""
    if answer.document is not None:
        return json.dumps(answer.document), JSON_TYPE
    if not plain and not answer.plain_only:
        body = {"status": 1 if answer.ok else 0, "request": answer.request, **answer.extra}
        return json.dumps(body, separators=(",", ":")), JSON_TYPE
    if not answer.ok or answer.bare:
        return str(answer.request), TEXT_TYPE
    if answer.plain_text is not None:
        return f"OK|{answer.plain_text}", TEXT_TYPE
    return f"OK|{plain_value(answer.extra.get('result', answer.request))}", TEXT_TYPE
