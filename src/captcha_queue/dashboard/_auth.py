"""Who is asking, and may they: sessions, the two roles, CSRF tokens and the Origin check.

* A session is a random id in an HttpOnly, SameSite=Strict cookie; the server keeps the role it
  holds (sessions end with the process). With login tokens configured, a session starts by POSTing a
  token to ``/login``; without them (loopback only) every visitor gets a session with the default
  role (operator, or viewer with ``read_only``).
* Roles: ``viewer`` reads every screen; ``operator`` also acts (requeue, purge, pause, resume).
* Every action (any POST) must carry the session's CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``) and an ``Origin`` header naming this dashboard: a page of another site can
  neither read the token nor forge the Origin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from ._config import DashboardConfig

__all__ = ["ROLES", "Role", "Session", "SessionStore", "Visit", "check_action", "check_origin", "visit"]

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
COOKIE = "cq_dashboard"
#: Sessions kept at once; the oldest are forgotten first.
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    role: Role
    actor: str  # who, for the audit stream: "operator-token", "viewer-token", "local"
    csrf: str
    expires_at: float  # monotonic
    flash: str = ""

    def can(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class SessionStore:
    """The sessions of one dashboard process."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._secret = secrets.token_bytes(32)

    def new(self, role: Role, actor: str) -> Session:
        sid = secrets.token_urlsafe(32)
        csrf = hmac.new(self._secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()
        session = Session(sid, role, actor, csrf, time.monotonic() + self.config.session_ttl_s)
        self._sessions[sid] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def get(self, request: web.Request) -> Session | None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if session.expires_at <= time.monotonic():
            del self._sessions[sid]
            return None
        return session

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def login(self, token: str) -> Session | None:
        """A new session for a valid token (compared in constant time), else None."""
        given = token.strip().encode()
        for role, expected in (
            ("operator", self.config.operator_token),
            ("viewer", self.config.viewer_token),
        ):
            if expected is not None and hmac.compare_digest(given, expected.encode()):
                return self.new(role, f"{role}-token")  # type: ignore[arg-type]
        return None

    def bearer(self, request: web.Request) -> Role | None:
        """The role an ``Authorization: Bearer <token>`` header proves (reads only: no cookie, no
        CSRF token, so it never authorises an action)."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        given = token.strip().encode()
        for role, expected in (
            ("operator", self.config.operator_token),
            ("viewer", self.config.viewer_token),
        ):
            if expected is not None and hmac.compare_digest(given, expected.encode()):
                return role  # type: ignore[return-value]
        return None

    def set_cookie(self, response: web.StreamResponse, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            session.id,
            httponly=True,
            samesite="Strict",
            secure=self.config.tls,
            path="/",
            max_age=int(self.config.session_ttl_s),
        )


@dataclass
class Visit:
    """Who one request comes from: its session (None for a bearer read), role and audit name."""

    session: Session | None = None
    role: Role | None = None
    actor: str = "?"


#: Where a request keeps its Visit (aiohttp >= 3.14 wants typed keys; older ones take a string).
_VISIT: Any = web.RequestKey("captcha_queue.visit", Visit) if hasattr(web, "RequestKey") else "cq.visit"


def visit(request: web.Request) -> Visit:
    """The request's Visit (an empty one before the middleware has run)."""
    found = request.get(_VISIT)
    if found is None:
        found = request[_VISIT] = Visit()
    assert isinstance(found, Visit)
    return found


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def check_origin(request: web.Request, config: DashboardConfig) -> str | None:
    """Why the request's Origin is refused, or None when it names this dashboard."""
    origin = request.headers.get("Origin")
    if origin is None:
        return "no Origin header"
    if origin == own_origin(request) or origin in config.allowed_origins:
        return None
    return "Origin is another site"


async def check_action(
    request: web.Request, session: Session | None, config: DashboardConfig, role: Role = "operator"
) -> str | None:
    """Why an action (a POST) is refused, or None: a session with ``role``, this dashboard's Origin,
    the session's CSRF token."""
    if session is None:
        return "not logged in"
    why = check_origin(request, config)
    if why is not None:
        return why
    token = request.headers.get("X-CSRF-Token")
    if token is None:
        form = await request.post()
        value = form.get("csrf")
        token = value if isinstance(value, str) else None
    if token is None or not hmac.compare_digest(token.encode(), session.csrf.encode()):
        return "missing or wrong CSRF token"
    if not session.can(role):
        return f"the {session.role} role cannot do this"
    return None
