"""The live event feed: ONE reader of the events stream per dashboard process, fanned out to every
open browser.

The reader is ``AsyncCaptchaQueue.listen_events`` on a queue of its own (one connection, named
``captcha-queue-dashboard-events`` in CLIENT LIST); each browser holds a bounded queue of its own. A
browser that does not keep up loses events (counted in ``dropped``), never slows the others down
and never makes Redis hold more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterator

from ..models import Result
from ..queue._producer import AsyncCaptchaQueue

__all__ = ["READER_NAME", "EventFeed", "Subscription", "iterate"]

log = logging.getLogger("captcha_queue.dashboard")

#: The CLIENT LIST name of the feed's connection (the bench counts them).
READER_NAME = "captcha-queue-dashboard-events"


class Subscription:
    """One browser's view of the feed."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[tuple[str, Result]] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, event: tuple[str, Result]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class EventFeed:
    """Reads the events stream once and hands every final result to each subscriber."""

    def __init__(self, queue: AsyncCaptchaQueue, *, keep: int = 50, per_client: int = 256) -> None:
        self.queue = queue
        self.recent: deque[tuple[str, Result]] = deque(maxlen=keep)
        self.per_client = per_client
        self.delivered = 0
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dashboard-event-feed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Cancelled again while it runs on: a library may have turned the first cancel into an error
        # its retry loop took (see listen_events); a dashboard's shutdown must not hang on it.
        for _ in range(20):
            task.cancel()
            done, _pending = await asyncio.wait([task], timeout=0.5)
            if done:
                break
        else:
            log.warning("event feed did not stop within 10 s of being cancelled")
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("event feed ended with %r", task.exception())

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        sub = Subscription(self.per_client)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    async def _run(self) -> None:
        while True:
            try:
                events = self.queue.listen_events()
                try:
                    async for event in events:
                        self.recent.appendleft(event)
                        self.delivered += 1
                        for sub in list(self._subscribers):
                            sub.offer(event)
                finally:
                    await events.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone for long: keep the dashboard up, try again
                log.warning("event feed: %s; reading again in 5 s", exc)
                await asyncio.sleep(5.0)


async def iterate(sub: Subscription, keepalive_s: float) -> AsyncIterator[tuple[str, Result] | None]:
    """A subscription's events; None every ``keepalive_s`` without one (send a keep-alive then)."""
    while True:
        try:
            yield await asyncio.wait_for(sub.queue.get(), keepalive_s)
        except TimeoutError:
            yield None
