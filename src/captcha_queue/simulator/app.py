"""The simulator's HTTP side: ``/in.php`` and ``/res.php`` as the spec describes, plus test endpoints.

Routes:

* ``/in.php``, ``/res.php``: GET query, POST form, POST multipart or POST JSON object (query and body
  merged, the body winning); JSON with ``json=1``, plain text otherwise (profiles captchaai, 2captcha,
  generic-inphp);
* ``POST /createTask``, ``/getTaskResult``, ``/getBalance``, the report methods and ``/feedbackTask``:
  the JSON API (profiles 2captcha, capsolver, anticaptcha; ``simulator/jsonapi.py``);
* ``GET /stats`` (JSON), ``POST /stats/reset``;
* ``GET /control`` (current settings), ``POST /control`` (JSON: change them at run time);
* ``GET /health``.

``/stats/reset`` and ``/control`` need ``Authorization: Bearer <token>`` (``config.control_token``, or a
random one per app: ``RunningSimulator.control_token``); without it they answer 401 and change nothing.

``make_app(config)`` builds the application; ``run_simulator(config)`` serves it on a free loopback
port for the length of an ``async with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from ..protocol.answers import JSON_TYPE, Answer, render
from ..protocol.bodies import json_params
from .accounts import account_label
from .config import SimulatorConfig
from .control import apply_control, current_settings
from .engine import SimTask, Simulator
from .jsonapi import JSON_ENDPOINTS, handle_json
from .validation import Upload

__all__ = ["SIMULATOR_KEY", "RunningSimulator", "make_app", "run_simulator"]

log = logging.getLogger("captcha_queue.simulator")


class _AppState:
    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.http: aiohttp.ClientSession | None = None
        self.deliveries: set[asyncio.Task[None]] = set()


SIMULATOR_KEY = web.AppKey("simulator", Simulator)
_STATE_KEY = web.AppKey("simulator_state", _AppState)
_TOKEN_KEY = web.AppKey("control_token", str)

_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_GARBAGE = b"\x1f\x8b\x08\x00garbled<<\xff\xfe>>Warning: upstream sent an invalid chunked response"


def make_app(config: SimulatorConfig | None = None) -> web.Application:
    """The simulator as an aiohttp application (no module globals: one per call)."""
    config = config or SimulatorConfig()
    simulator = Simulator(config)
    app = web.Application(client_max_size=max(4 << 20, 2 * config.max_image_bytes))
    app[SIMULATOR_KEY] = simulator
    app[_STATE_KEY] = _AppState()
    app[_TOKEN_KEY] = config.control_token or secrets.token_hex(16)
    if simulator.profile.inphp:
        app.router.add_route("*", "/in.php", _in_php)
        app.router.add_route("*", "/res.php", _res_php)
    if simulator.profile.json_dialect is not None:
        for name in JSON_ENDPOINTS:
            app.router.add_post(f"/{name}", _json_endpoint)
    app.router.add_get("/stats", _stats)
    app.router.add_post("/stats/reset", _stats_reset)
    app.router.add_get("/control", _control_get)
    app.router.add_post("/control", _control_post)
    app.router.add_get("/health", _health)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


# -- lifecycle ----------------------------------------------------------------------------------------


async def _on_startup(app: web.Application) -> None:
    simulator = app[SIMULATOR_KEY]
    state = app[_STATE_KEY]
    simulator.start(asyncio.get_running_loop())
    simulator.on_done = lambda task: _schedule_pingback(app, task)
    state.http = aiohttp.ClientSession()


async def _on_shutdown(app: web.Application) -> None:
    app[_STATE_KEY].closing.set()  # ends hanging and slow answers at once


async def _on_cleanup(app: web.Application) -> None:
    simulator = app[SIMULATOR_KEY]
    state = app[_STATE_KEY]
    simulator.on_done = None
    simulator.stop()
    for delivery in list(state.deliveries):
        delivery.cancel()
    if state.deliveries:
        await asyncio.gather(*state.deliveries, return_exceptions=True)
    if state.http is not None:
        await state.http.close()


# -- the protocol endpoints ---------------------------------------------------------------------------


async def _in_php(request: web.Request) -> web.StreamResponse:
    return await _endpoint(request, "in")


async def _res_php(request: web.Request) -> web.StreamResponse:
    return await _endpoint(request, "res")


async def _endpoint(request: web.Request, endpoint: str) -> web.StreamResponse:
    simulator = request.app[SIMULATOR_KEY]
    state = request.app[_STATE_KEY]
    config = simulator.config
    simulator.stats.requests[endpoint] += 1
    fault = config.faults.draw(simulator.rng)
    if fault is not None:
        simulator.stats.faults[fault] += 1
        early = await _early_fault(request, state, simulator, fault)
        if early is not None:
            return early
    try:
        params, uploads = await _read_params(request)
    except web.HTTPRequestEntityTooLarge:
        return _render(Answer(ok=False, request="ERROR_TOO_BIG_CAPTCHA_FILESIZE"), plain=False)
    except (ValueError, web.HTTPException, aiohttp.ClientError):
        return _render(Answer(ok=False, request="ERROR_UPLOAD"), plain=True)
    json_param = params.get("json")
    json_mode = json_param.strip() == "1" if json_param is not None else config.json_default
    ip = request.remote or "unknown"
    answer = simulator.submit(params, uploads, ip) if endpoint == "in" else simulator.res(params, ip)
    simulator.stats.codes[answer.code] += 1
    if fault == "lost_reply":
        return _reset(request)
    return _render(answer, plain=not json_mode or answer.plain_only or fault == "plaintext")


async def _json_endpoint(request: web.Request) -> web.StreamResponse:
    simulator = request.app[SIMULATOR_KEY]
    state = request.app[_STATE_KEY]
    method = request.path.strip("/")
    simulator.stats.requests[method] += 1
    fault = simulator.config.faults.draw(simulator.rng)
    if fault is not None:
        simulator.stats.faults[fault] += 1
        early = await _early_fault(request, state, simulator, fault)
        if early is not None:
            return early
    try:
        body: Any = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        body = None
    status, answer = handle_json(simulator, method, body, request.remote or "unknown")
    if fault == "lost_reply":
        return _reset(request)
    return web.json_response(answer, status=status)


async def _early_fault(
    request: web.Request, state: _AppState, simulator: Simulator, fault: str
) -> web.StreamResponse | None:
    config = simulator.config
    if fault == "http_500":
        return web.Response(status=simulator.rng.choice((500, 503)), text="Internal Server Error")
    if fault == "html_502":
        return web.Response(status=502, text=_HTML_502, content_type="text/html")
    if fault == "garbage":
        return web.Response(status=200, body=_GARBAGE, content_type="text/html")
    if fault == "plaintext_error":
        return web.Response(status=200, text="ERROR_SERVER_ERROR", content_type="text/plain")
    if fault == "http_429":
        retry_after = f"{config.scaled(5.0):.3f}"
        return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": retry_after})
    if fault == "reset":
        return _reset(request)
    if fault == "hang":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.closing.wait(), config.hang_real_s)
        return _reset(request)
    if fault == "slow":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.closing.wait(), config.slow_real_s)
    return None


def _reset(request: web.Request) -> web.StreamResponse:
    """Drop the connection with a TCP reset, without an answer."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise asyncio.CancelledError  # aiohttp treats this as "connection lost": nothing is written


async def _read_params(request: web.Request) -> tuple[dict[str, str], dict[str, Upload]]:
    params: dict[str, str] = dict(request.query)
    uploads: dict[str, Upload] = {}
    if request.method == "POST" and request.body_exists and request.content_type == JSON_TYPE:
        try:  # 2captcha's Node client (protocol/bodies.py); a body that is not a JSON object: no params
            params.update(json_params(await request.read()))
        except ValueError:
            pass
    elif request.method == "POST" and request.body_exists:
        form: MultiDictProxy[Any] = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                uploads[name] = Upload(filename=value.filename or "", content=value.file.read())
            else:
                params[name] = str(value)
    return params, uploads


def _render(answer: Answer, *, plain: bool) -> web.Response:
    body, content_type = render(answer, plain=plain)
    return web.Response(text=body, content_type=content_type)


# -- test endpoints -----------------------------------------------------------------------------------


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIMULATOR_KEY].snapshot())


def _unauthorized(request: web.Request) -> web.Response | None:
    """401 unless the request carries the control token (compared in constant time)."""
    given = request.headers.get("Authorization", "").encode()
    if hmac.compare_digest(given, f"Bearer {request.app[_TOKEN_KEY]}".encode()):
        return None
    return web.json_response(
        {"error": "this endpoint needs the control token: Authorization: Bearer <token>"},
        status=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _stats_reset(request: web.Request) -> web.Response:
    if (refused := _unauthorized(request)) is not None:
        return refused
    simulator = request.app[SIMULATOR_KEY]
    simulator.reset_stats()
    return web.json_response(simulator.snapshot())


async def _control_get(request: web.Request) -> web.Response:
    if (refused := _unauthorized(request)) is not None:
        return refused
    return web.json_response(current_settings(request.app[SIMULATOR_KEY]))


async def _control_post(request: web.Request) -> web.Response:
    if (refused := _unauthorized(request)) is not None:
        return refused
    simulator = request.app[SIMULATOR_KEY]
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("the body must be a JSON object")
        apply_control(simulator, changes)
    except (ValueError, TypeError, KeyError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(current_settings(simulator))


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


# -- pingback -----------------------------------------------------------------------------------------


def _schedule_pingback(app: web.Application, task: SimTask) -> None:
    simulator = app[SIMULATOR_KEY]
    state = app[_STATE_KEY]
    if simulator.config.pingback_mode == "off" or state.closing.is_set():
        return
    url = task.params.get("pingback", "")
    code = task.code or _answer_text(task.answer)
    delivery = asyncio.get_running_loop().create_task(_deliver(app, url, str(task.id), code))
    state.deliveries.add(delivery)
    delivery.add_done_callback(state.deliveries.discard)


def _answer_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else str(value)


def _loopback(url: URL) -> bool:
    host = url.host or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _deliver(app: web.Application, raw_url: str, task_id: str, code: str) -> None:
    simulator = app[SIMULATOR_KEY]
    config = simulator.config
    stats = simulator.stats.pingbacks
    url = URL(raw_url)
    if url.scheme not in ("http", "https") or not _loopback(url):
        stats["refused"] += 1  # the simulator only calls loopback addresses
        return
    http = app[_STATE_KEY].http
    assert http is not None
    timeout = aiohttp.ClientTimeout(total=config.pingback_timeout_real_s)
    for attempt in range(max(1, config.pingback_attempts)):
        try:
            if config.pingback_mode == "post_form":
                call = http.post(url, data={"id": task_id, "code": code}, timeout=timeout)
            else:
                call = http.get(url.update_query(id=task_id, code=code), timeout=timeout)
            async with call as resp:
                if resp.status < 400:
                    stats["sent"] += 1
                    return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("pingback for task %s failed: %s", task_id, exc)
        if attempt + 1 < config.pingback_attempts:
            await asyncio.sleep(config.scaled(1.0))
    stats["failed"] += 1


# -- running in process -------------------------------------------------------------------------------


class RunningSimulator:
    """A simulator serving on loopback: its base URL and direct access to its state."""

    def __init__(self, app: web.Application, host: str, port: int, *, tls: bool = False) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.base_url = f"{'https' if tls else 'http'}://{host}:{port}"
        self.simulator = app[SIMULATOR_KEY]
        #: For ``Authorization: Bearer <token>`` on ``/control`` and ``/stats/reset``.
        self.control_token = app[_TOKEN_KEY]

    @property
    def config(self) -> SimulatorConfig:
        return self.simulator.config

    def stats(self) -> dict[str, Any]:
        """The same document as ``GET /stats``."""
        return self.simulator.snapshot()

    def reset_stats(self) -> None:
        self.simulator.reset_stats()

    def control(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The same as ``POST /control``."""
        apply_control(self.simulator, dict(changes))
        return current_settings(self.simulator)

    @staticmethod
    def account_label(key: str) -> str:
        return account_label(key)

    def account(self, key: str) -> dict[str, Any]:
        """The ``/stats`` entry of the account behind ``key``."""
        found = self.simulator.accounts.by_label_or_key(key)
        return found.snapshot() if found is not None else {}


@contextlib.asynccontextmanager
async def run_simulator(
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    backlog: int = 4096,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[RunningSimulator]:
    """Serve a simulator for the length of the block (port 0: a free one); over TLS with
    ``ssl_context`` (for clients that hard-code ``https://``, such as 2captcha-python)."""
    app = make_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=backlog, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        yield RunningSimulator(app, host, bound_port, tls=ssl_context is not None)
    finally:
        await runner.cleanup()
