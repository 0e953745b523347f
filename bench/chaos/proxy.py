"""A small asyncio TCP fault proxy: the chaos suite's stand-in for ``tc netem`` and toxiproxy.

It sits between workers and Redis (or the solver) on loopback and forwards bytes both ways. The test
process changes its behaviour at run time:

* ``set_latency(s)``: every chunk is delivered ``s`` seconds after it arrived, in order, both ways.
* ``drop_all()``: close every open connection cleanly (FIN), as a restarted load balancer would.
* ``reset_all()``: close every open connection with a TCP RST (``SO_LINGER`` 0).
* ``half_open(True)``: stop forwarding without closing anything: sockets stay established and
  silent, new connections are accepted and stall (the partition that only timeouts detect).
* ``refuse(True)``: new connections are closed as soon as they are accepted.
* ``heal()``: back to a clean pipe (latency 0, forwarding on, accepting).

Run it in the event loop of the test (``async with FaultProxy(...)``), or in a thread of its own
with ``ThreadedProxy`` when the controlling code is synchronous or its loop is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

__all__ = ["FaultProxy", "ProxyStats", "ThreadedProxy"]

T = TypeVar("T")

_CHUNK_BYTES = 65536


@dataclass
class ProxyStats:
    """What the proxy did: connections, bytes each way, and the faults it applied."""

    accepted: int = 0
    open: int = 0
    refused: int = 0
    dropped: int = 0
    reset: int = 0
    bytes_up: int = 0  # client -> upstream
    bytes_down: int = 0  # upstream -> client
    upstream_failures: int = 0


class _Link:
    """One proxied connection: two pumps and the four stream ends."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.upstream_reader, self.upstream_writer = upstream
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = asyncio.Event()

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._pump(self.client_reader, self.upstream_writer, up=True)),
            asyncio.create_task(self._pump(self.upstream_reader, self.client_writer, up=False)),
        ]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        # Chunks travel through a queue to a writer that releases each at arrival + latency, so
        # latency delays data without reordering it and without slowing the reading side.
        pending: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send(pending, writer, up=up))
        try:
            while True:
                await self.proxy._flowing.wait()
                data = await reader.read(_CHUNK_BYTES)
                if not data:
                    break
                pending.put_nowait((time.monotonic() + self.proxy.latency_s, data))
            # End of stream: deliver what was read, then close the whole link.
            pending.put_nowait(None)
            with contextlib.suppress(ConnectionError, OSError):
                await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await sender
            self.close()

    async def _send(
        self, pending: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        while True:
            item = await pending.get()
            if item is None:
                return
            due, data = item
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # A half-open link holds data it already read until the partition heals.
            await self.proxy._flowing.wait()
            writer.write(data)
            await writer.drain()
            if up:
                self.proxy.stats.bytes_up += len(data)
            else:
                self.proxy.stats.bytes_down += len(data)

    def close(self, *, rst: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for writer in (self.client_writer, self.upstream_writer):
            if rst:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current and not task.done():
                task.cancel()
        self.proxy._links.discard(self)
        self.proxy.stats.open = len(self.proxy._links)


class FaultProxy:
    """Forward ``listen_host:port`` to ``upstream_host:upstream_port``, with faults on demand."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.latency_s = 0.0
        self.refusing = False
        self.stats = ProxyStats()
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.listen_port)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._flowing.set()
            for link in list(self._links):
                link.close()
            await self._server.wait_closed()
            self._server = None
        # Closed links end their handlers; cancelling a handler would upset asyncio's stream callback.
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=10.0)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def port(self) -> int:
        return self.listen_port

    def redis_url(self, db: int = 0, *, password: str | None = None) -> str:
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}{self.listen_host}:{self.listen_port}/{db}"

    def http_url(self) -> str:
        return f"http://{self.listen_host}:{self.listen_port}"

    # -- controls ---------------------------------------------------------------------------------
    def set_latency(self, latency_s: float) -> None:
        self.latency_s = max(0.0, latency_s)

    def half_open(self, enabled: bool) -> None:
        if enabled:
            self._flowing.clear()
        else:
            self._flowing.set()

    def refuse(self, enabled: bool) -> None:
        self.refusing = enabled

    def drop_all(self) -> int:
        """Close every open connection with a FIN; returns how many were closed."""
        links = list(self._links)
        for link in links:
            link.close()
        self.stats.dropped += len(links)
        return len(links)

    def reset_all(self) -> int:
        """Close every open connection with an RST; returns how many were reset."""
        links = list(self._links)
        for link in links:
            link.close(rst=True)
        self.stats.reset += len(links)
        return len(links)

    def heal(self) -> None:
        self.latency_s = 0.0
        self.refusing = False
        self._flowing.set()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # -- the work ---------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        if self.refusing:
            self.stats.refused += 1
            writer.close()
            return
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), timeout=5.0
            )
        except (OSError, TimeoutError):
            self.stats.upstream_failures += 1
            writer.close()
            return
        link = _Link(self, (reader, writer), upstream)
        self._links.add(link)
        self.stats.open = len(self._links)
        link.start()
        await link.closed.wait()
        await asyncio.gather(*link.tasks, return_exceptions=True)


class ThreadedProxy:
    """A FaultProxy on its own event loop in a daemon thread; every control is thread-safe."""

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_port: int = 0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self.proxy: FaultProxy = self._call(self._make(upstream_host, upstream_port, listen_port))

    @staticmethod
    async def _make(host: str, port: int, listen_port: int) -> FaultProxy:
        return await FaultProxy(host, port, listen_port=listen_port).start()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def _sync(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self._call(run())

    @property
    def port(self) -> int:
        return self.proxy.port

    def redis_url(self, db: int = 0, *, password: str | None = None) -> str:
        return self.proxy.redis_url(db, password=password)

    def http_url(self) -> str:
        return self.proxy.http_url()

    def set_latency(self, latency_s: float) -> None:
        self._sync(lambda: self.proxy.set_latency(latency_s))

    def half_open(self, enabled: bool) -> None:
        self._sync(lambda: self.proxy.half_open(enabled))

    def refuse(self, enabled: bool) -> None:
        self._sync(lambda: self.proxy.refuse(enabled))

    def drop_all(self) -> int:
        return self._sync(self.proxy.drop_all)

    def reset_all(self) -> int:
        return self._sync(self.proxy.reset_all)

    def heal(self) -> None:
        self._sync(self.proxy.heal)

    def stats(self) -> ProxyStats:
        return self._sync(lambda: ProxyStats(**vars(self.proxy.stats)))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self.proxy.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ThreadedProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
