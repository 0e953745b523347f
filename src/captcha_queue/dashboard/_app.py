"""The dashboard's aiohttp application: routes, the security middleware, health, and serving.

Every answer carries a strict Content-Security-Policy (scripts and styles from this origin only, no
inline script or style, no frames), ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: same-origin``. Reads need a session (or a bearer token) when login tokens are
configured; every POST goes through ``check_action`` (role, Origin, CSRF token) before its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import CaptchaQueueError
from ..queue._producer import AsyncCaptchaQueue
from ..store.connection import make_client
from ..worker.health import READY_TIMEOUT_S, Check, ping_check, readiness_body, scripts_check
from ._auth import Session, SessionStore, check_action, check_origin, visit
from ._config import DashboardConfig
from ._feed import READER_NAME, EventFeed
from ._html import Html, esc, form, layout
from ._ops import Dashboard, NamespacesOverview, ns_prefix

__all__ = ["CSP", "PAGE_CLIENT_NAME", "make_app", "serve"]

log = logging.getLogger("captcha_queue.dashboard")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: The CLIENT LIST name of the connections that read for pages and act.
PAGE_CLIENT_NAME = "captcha-queue-dashboard"
STATIC = resources.files("captcha_queue.dashboard") / "static"
_PUBLIC = ("/healthz", "/readyz", "/login", "/static/", "/favicon.ico")
_DASHBOARDS: web.AppKey[dict[str, Dashboard]] = web.AppKey("dashboards", dict)
#: The screens of paths that name no namespace (login, the overview across namespaces): the one
#: namespace served, or the first of ``--namespaces``.
_HOME: web.AppKey[Dashboard] = web.AppKey("home", Dashboard)
_OVERVIEW: web.AppKey[NamespacesOverview] = web.AppKey("overview", NamespacesOverview)
#: The screens of one namespace (and the actions on it), in the order of NAV.
_SCREENS: tuple[tuple[str, str, str], ...] = (
    ("GET", "/capacity", "capacity"),
    ("GET", "/workers", "workers"),
    ("POST", "/workers/drain", "drain"),
    ("GET", "/errors", "errors"),
    ("GET", "/latency", "latency"),
    ("GET", "/accounts", "accounts_screen"),
    ("GET", "/dead-letters", "dead_letters"),
    ("GET", "/dead-letters/{task_id}", "dead_letter"),
    ("POST", "/dead-letters/requeue", "requeue_matching"),
    ("POST", "/dead-letters/purge", "purge"),
    ("POST", "/dead-letters/{task_id}/requeue", "requeue_one"),
    ("GET", "/tasks", "tasks"),
    ("GET", "/events", "events"),
    ("GET", "/events/stream", "stream"),
    ("GET", "/pauses", "pauses"),
    ("POST", "/pause", "pause"),
    ("POST", "/resume", "resume"),
    ("GET", "/webhooks", "webhooks_screen"),
    ("POST", "/webhooks/{task_id}/retry", "webhook_retry"),
    ("GET", "/audit", "audit_screen"),
)


def _home(request: web.Request) -> Dashboard:
    return request.app[_HOME]


def _dashboard(request: web.Request) -> Dashboard:
    """The screens the request addresses: its namespace's (``/ns/<name>/...``), else the home ones."""
    namespace = request.match_info.get("ns")
    if namespace is None:
        return _home(request)
    found = request.app[_DASHBOARDS].get(namespace)
    if found is None:
        raise web.HTTPNotFound(text=f"this dashboard does not serve the namespace {namespace}")
    return found


@web.middleware
async def security(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await _guarded(request, handler)
    except web.HTTPException as exc:
        _secure_headers(exc)
        raise
    except CaptchaQueueError as exc:  # Redis down, a refusal: one line, never a traceback page
        log.warning("dashboard: %s %s: %s", request.method, request.path, exc)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        response = web.Response(status=503, text=f"unavailable: {first}\n")
    _secure_headers(response)
    return response


def _secure_headers(response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"


async def _guarded(request: web.Request, handler: Any) -> web.StreamResponse:
    home = _home(request)
    config = home.config
    sessions = home.sessions
    if request.path.startswith(_PUBLIC):
        return await handler(request)  # type: ignore[no-any-return]
    session = sessions.get(request)
    new_session: Session | None = None
    if session is None and not config.auth_required:
        session = new_session = sessions.new("viewer" if config.read_only else "operator", "local")
    peer = request.remote or "?"
    who = visit(request)
    who.session = session
    who.role = session.role if session is not None else None
    who.actor = f"{session.actor}@{peer}" if session is not None else f"?@{peer}"
    if request.method == "POST":
        why = await check_action(
            request, session, config, "viewer" if request.path == "/logout" else "operator"
        )
        if why is not None:
            if session is not None:  # in the audit stream of the namespace it addressed
                dash = _dashboard(request)
                path = request.path.removeprefix(dash.prefix)
                await dash.audit(request, path.strip("/") or "post", path, f"refused: {why}")
            log.warning("dashboard: refused %s %s from %s: %s", request.method, request.path, peer, why)
            raise web.HTTPForbidden(text=f"refused: {why}")
    elif session is None:
        role = sessions.bearer(request)
        if role is None:
            if request.headers.get("HX-Request") or request.path == "/events/stream":
                raise web.HTTPUnauthorized(text="log in first")
            raise web.HTTPSeeOther("/login")
        who.role = role
        who.actor = f"{role}-bearer@{peer}"
    response: web.StreamResponse = await handler(request)
    if new_session is not None:
        sessions.set_cookie(response, new_session)
    return response


# -- public endpoints ------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    dash = _home(request)
    checks: dict[str, Check] = {"redis": await ping_check(dash.q, READY_TIMEOUT_S)}
    if checks["redis"].ok:
        checks["scripts"] = await scripts_check(dash.q, READY_TIMEOUT_S)
    else:
        checks["scripts"] = Check(False, "not checked: Redis does not answer")
    task = request.app.get(_FEED_TASK_STATE)
    clients = sum(d.feed.clients for d in request.app[_DASHBOARDS].values())
    checks["feed"] = Check(True, f"{clients} browsers") if task is not None else Check(False, "not started")
    ready, body = readiness_body(checks)
    return web.Response(body=body, status=200 if ready else 503, content_type="application/json")


_FEED_TASK_STATE: web.AppKey[bool] = web.AppKey("feed_started", bool)


def _login_page(request: web.Request, message: str = "") -> web.Response:
    body = Html(
        (f'<p class="flash" role="alert">{esc(message)}</p>' if message else "")
        + form(
            "/login",
            Html(
                '<label>login token <input type="password" name="token" autocomplete="current-password" '
                'required id="token"></label><button type="submit" id="login">log in</button>'
            ),
            None,
            cls="stacked",
        )
    )
    overview = bool(_home(request).config.namespaces)  # several: no one namespace's links
    html = layout(
        title="Log in", path="/login", body=body, namespace="", role=None, csrf=None, overview=overview
    )
    return web.Response(text=html, content_type="text/html", status=401 if message else 200)


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


async def login(request: web.Request) -> web.Response:
    dash = _home(request)
    why = check_origin(request, dash.config)
    if why is not None:
        raise web.HTTPForbidden(text=f"refused: {why}")
    if not dash.config.auth_required:
        raise web.HTTPSeeOther("/")
    data = await request.post()
    token = data.get("token")
    session = dash.sessions.login(token) if isinstance(token, str) else None
    if session is None:
        log.warning("dashboard: failed login from %s", request.remote)
        await asyncio.sleep(0.5)  # slows guessing down
        return _login_page(request, "wrong token")
    who = visit(request)
    who.session, who.role = session, session.role
    who.actor = f"{session.actor}@{request.remote or '?'}"
    await dash.audit(request, "login", "-", "ok")
    response = web.HTTPSeeOther("/")
    dash.sessions.set_cookie(response, session)
    raise response


async def logout(request: web.Request) -> web.Response:
    dash = _home(request)
    session = visit(request).session
    if session is not None:
        dash.sessions.drop(session)
    raise web.HTTPSeeOther("/login" if dash.config.auth_required else "/")


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "public, max-age=86400"})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    types = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
    suffix = Path(name).suffix
    if "/" in name or name.startswith(".") or suffix not in types:
        raise web.HTTPNotFound()
    item = STATIC / name
    if not item.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=item.read_bytes(),
        content_type=types[suffix],
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


# -- the application -------------------------------------------------------------------------------


def make_app(config: DashboardConfig, redis_url: str, namespace: str) -> web.Application:
    """The dashboard of ``namespace``, or of each of ``config.namespaces`` (then each namespace's
    screens are under ``/ns/<name>/`` and ``/`` is the overview across them). Its Redis clients are
    opened at startup and closed at cleanup: one for pages and actions, one for the event feeds (one
    reader per namespace, fanned out to every browser)."""
    config.check()
    names = list(config.namespaces) or [namespace]
    multi = bool(config.namespaces)
    app = web.Application(middlewares=[security], client_max_size=64 * 1024)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        pages = make_client(redis_url, max_connections=16, client_name=PAGE_CLIENT_NAME)
        events = make_client(redis_url, max_connections=len(names) + 1, client_name=READER_NAME)
        sessions = SessionStore(config)
        dashboards: dict[str, Dashboard] = {}
        try:
            for ns in names:
                feed = EventFeed(AsyncCaptchaQueue(events, namespace=ns))
                dashboards[ns] = Dashboard(
                    AsyncCaptchaQueue(pages, namespace=ns),
                    feed,
                    sessions,
                    config,
                    prefix=ns_prefix(ns) if multi else "",
                )
            app[_DASHBOARDS] = dashboards
            app[_HOME] = dashboards[names[0]]
            app[_OVERVIEW] = NamespacesOverview(dashboards, config)
            for dash in dashboards.values():
                dash.feed.start()
            app[_FEED_TASK_STATE] = True
            yield
        finally:
            for dash in dashboards.values():
                await dash.feed.aclose()
                await dash.feed.queue.aclose()
                await dash.q.aclose()
            await events.aclose()
            await pages.aclose()

    app.cleanup_ctx.append(lifecycle)

    def view(name: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            method = getattr(_dashboard(request), name)
            return await method(request)  # type: ignore[no-any-return]

        return handler

    async def overview(request: web.Request) -> web.StreamResponse:
        return await request.app[_OVERVIEW].overview(request)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/favicon.ico", favicon)
    if multi:
        app.router.add_get("/", overview)
        prefix = "/ns/{ns}"
        app.router.add_get(prefix + "/", view("overview"))
    else:
        prefix = ""
        app.router.add_get("/", view("overview"))
    for method, path, name in _SCREENS:
        app.router.add_route(method, prefix + path, view(name))
    return app


def _ssl_context(config: DashboardConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


@contextlib.asynccontextmanager
async def serve(config: DashboardConfig, redis_url: str, namespace: str) -> AsyncIterator[str]:
    """Serve the dashboard until the block ends; yields its base URL (the port it got, for port 0)."""
    app = make_app(config, redis_url, namespace)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, ssl_context=_ssl_context(config))
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else config.port
        scheme = "https" if config.tls else "http"
        host = f"[{config.host}]" if ":" in config.host else config.host
        yield f"{scheme}://{host}:{port}"
    finally:
        await runner.cleanup()
