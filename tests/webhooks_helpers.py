"""A real webhook receiver for the tests: an aiohttp server on loopback that records every request,
answers a chosen status, can hold requests (to kill a deliverer mid-send), and can go down and come
back on the same port."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web

from .helpers import free_port


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    raw_query: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> bytes:
        """What the signature covers: the body of a POST, the raw query string of a GET."""
        return self.body if self.method == "POST" else self.raw_query.encode("ascii")

    @property
    def fields(self) -> dict[str, str]:
        text = self.body.decode() if self.method == "POST" else self.raw_query
        return dict(parse_qsl(text, keep_blank_values=True))

    @property
    def delivery(self) -> str:
        return self.headers["X-Captcha-Queue-Delivery"]


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    status: int = 200
    #: Requests held (not answered) until ``release`` is set; the first ``hold`` requests are held.
    hold: int = 0
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            request.method,
            request.path,
            request.rel_url.raw_query_string,
            dict(request.headers),
            await request.read(),
        )
        held = self.hold > 0
        if held:
            self.hold -= 1
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
        if held:
            # Bounded, so a test's teardown never waits on a request nobody will answer.
            await asyncio.wait_for(self.release.wait(), timeout=30)
        return web.Response(status=self.status, text="OK" if self.status < 300 else "not now")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, n: int, timeout_s: float = 20.0) -> list[Received]:
        """The first ``n`` requests, once they have arrived."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.requests) >= n), timeout_s)
        return self.requests[:n]
