"""The gateway's aiohttp application: its shared state (one Redis client, a queue per namespace, the key
cache, the id minters), the routes of both protocols, health endpoints, and serving with or without TLS.

Routes: ``/in.php`` and ``/res.php`` (legacy, ``_legacy``); ``/createTask``, ``/getTaskResult``,
``/getBalance``, ``/reportIncorrectRecaptcha``, ``/reportCorrectRecaptcha``, ``/reportIncorrectImageCaptcha``
(JSON API, ``_jsonapi``); ``/healthz`` (the process answers) and ``/readyz`` (Redis answers a PING).
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
from collections.abc import AsyncIterator

import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from ..errors import CaptchaQueueError, ConfigError
from ..store.connection import make_client, redis_errors_async
from . import _jsonapi, _legacy
from ._config import GatewaySettings
from ._state import GATEWAY_KEY, Gateway

__all__ = ["RunningGateway", "insecure_binding", "make_app", "redact_keys", "run_gateway", "tls_context"]

log = logging.getLogger("captcha_queue.gateway")

#: A client key as it appears in a request line or a JSON body (aiohttp logs the line of a request it
#: cannot parse, with its query).
_KEY_IN_TEXT = re.compile(r"((?:key|clientKey)(?:=|\\?[\"']\s*:\s*\\?[\"']))[^&\s\"'\\]+")
#: aiohttp's loggers that can quote a request.
_AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access")


def redact_keys(text: str) -> str:
    """``text`` with every client key after ``key=`` / ``"clientKey": "`` replaced by ``***``."""
    return _KEY_IN_TEXT.sub(r"\1***", text)


class _RedactKeys(logging.Filter):
    """Rewrites a record of aiohttp's loggers so no client key reaches a log: the message and the
    exception text (the traceback of a bad request quotes its first line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_keys(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact_keys(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def make_app(settings: GatewaySettings, client: aioredis.Redis | None = None) -> web.Application:
    """The gateway as an aiohttp application (a Redis client of its own unless ``client`` is given)."""
    owns = client is None
    redis_client = client or make_client(settings.redis_url, max_connections=settings.redis_max_connections)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[GATEWAY_KEY] = Gateway(settings, redis_client, owns_client=owns)
    app.router.add_route("*", "/in.php", _legacy.in_php)
    app.router.add_route("*", "/res.php", _legacy.res_php)
    for name, handler in _jsonapi.ROUTES.items():
        app.router.add_post(f"/{name}", handler)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)
    return app


async def _startup(app: web.Application) -> None:
    await app[GATEWAY_KEY].start_webhooks()


async def _cleanup(app: web.Application) -> None:
    await app[GATEWAY_KEY].aclose()


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    try:
        async with redis_errors_async(gateway.client):
            await gateway.client.ping()
        ok, detail = True, "answers"
    except CaptchaQueueError:
        ok, detail = False, "does not answer"  # a fixed phrase: no URL or password on this endpoint
    body = {"status": "ready" if ok else "unready", "checks": {"redis": {"ok": ok, "detail": detail}}}
    return web.Response(
        body=msgspec.json.encode(body), status=200 if ok else 503, content_type="application/json"
    )


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context from PEM files; ConfigError naming the file when one cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use --tls-cert {cert} / --tls-key {key}: {exc}") from exc
    return context


class RunningGateway:
    """A gateway serving: its base URL and its application."""

    def __init__(self, app: web.Application, settings: GatewaySettings, port: int) -> None:
        self.app = app
        self.port = port
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        self.base_url = f"{settings.scheme}://{host}:{port}"


def insecure_binding(settings: GatewaySettings) -> str | None:
    """The warning for a non-loopback address served without TLS, or None."""
    if settings.loopback or settings.tls_cert:
        return None
    return (
        f"the gateway listens on {settings.host} without TLS: client keys cross the network in clear "
        "(give --tls-cert and --tls-key, or put a TLS proxy in front)"
    )


@contextlib.asynccontextmanager
async def run_gateway(
    settings: GatewaySettings, client: aioredis.Redis | None = None
) -> AsyncIterator[RunningGateway]:
    """Serve a gateway for the length of the block (``settings.port`` 0: a free one)."""
    context = (
        tls_context(settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
    )
    warning = insecure_binding(settings)
    if warning:
        log.warning(warning)
    redactor = _RedactKeys()
    for name in _AIOHTTP_LOGGERS:
        logging.getLogger(name).addFilter(redactor)
    app = make_app(settings, client)
    # A GET in.php may carry a base64 image in its query: request lines up to the body limit.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=1.0,
        max_line_size=settings.max_body_bytes,
        max_field_size=64 * 1024,
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.host, settings.port, ssl_context=context, backlog=4096, reuse_address=True
        )
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
            ) from exc
        yield RunningGateway(app, settings, int(runner.addresses[0][1]))
    finally:
        await runner.cleanup()
        for name in _AIOHTTP_LOGGERS:
            logging.getLogger(name).removeFilter(redactor)
