"""The Workers screen's Drain button: an operator's POST (CSRF token and Origin checked, audited)
calls ``drain_worker``; a real worker subprocess drains and exits 0. Real Redis, real aiohttp server."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from captcha_queue.dashboard import DashboardConfig, serve
from captcha_queue.queue._producer import AsyncCaptchaQueue

from .helpers import ProcessManager
from .test_dashboard import OPERATOR, VIEWER, csrf_of, post
from .test_worker_processes import eventually, wait_exit

INFO = {"host": "h", "pid": 1, "started_at": 1.0, "version": "t"}


@pytest.fixture
async def base(redis_url: str, namespace: str) -> AsyncIterator[str]:
    async with serve(DashboardConfig(port=0, refresh_s=0.5), redis_url, namespace) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def test_the_drain_button_drains_a_real_worker_which_exits_0_and_the_action_is_audited(
    base: str,
    http: aiohttp.ClientSession,
    queue: AsyncCaptchaQueue,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
) -> None:
    argv = ["-m", "captcha_queue", "worker", "--processes", "1", "--solver", "instant", "--lease-s", "1"]
    proc = processes.spawn_python(argv, subprocess_env, capture=False)

    async def registered() -> bool:
        return len(await queue.workers()) == 1

    await eventually(registered, what="worker registered")
    worker_id = (await queue.workers())[0].id
    async with http.get(base + "/workers") as reply:
        page = await reply.text()
    buttons = re.findall(r'action="/workers/drain">.*?name="worker_id" value="([^"]+)"', page)
    assert [html.unescape(b) for b in buttons] == [worker_id]
    csrf = await csrf_of(http, base + "/workers")
    form = {"worker_id": worker_id}
    assert await post(http, base + "/workers/drain", form, origin=base) == 403  # no token
    assert await post(http, base + "/workers/drain", form, origin="https://evil.example", csrf=csrf) == 403
    assert await post(http, base + "/workers/drain", form, origin=None, csrf=csrf) == 403
    assert await queue.drain_requests() == {}  # nothing was done
    assert [w.id for w in await queue.workers()] == [worker_id]

    assert await post(http, base + "/workers/drain", form, origin=base, csrf=csrf) == 303
    assert await wait_exit(proc, timeout_s=20) == 0
    assert await queue.workers(include_dead=True) == []
    assert await queue.drain_requests() == {}
    # Drained already: no live worker by that id any more.
    assert await post(http, base + "/workers/drain", form, origin=base, csrf=csrf) == 303
    assert await post(http, base + "/workers/drain", {"worker_id": ""}, origin=base, csrf=csrf) == 303
    audit = list(reversed(await queue.audit_log(20)))
    assert [(e.action, e.target, e.outcome.split(":")[0]) for e in audit] == [
        ("workers/drain", "/workers/drain", "refused"),
        ("workers/drain", "/workers/drain", "refused"),
        ("workers/drain", "/workers/drain", "refused"),
        ("drain", worker_id, "requested"),
        ("drain", worker_id, "refused"),
        ("drain", "", "refused"),
    ]
    assert audit[3].detail.startswith("from the dashboard by local@")
    assert {e.role for e in audit} == {"operator"}


async def test_a_viewer_gets_no_drain_button_and_its_post_is_refused(
    redis_url: str, namespace: str, queue: AsyncCaptchaQueue
) -> None:
    await queue.register_worker("w:1:abc", INFO, ttl_s=30)
    config = DashboardConfig(port=0, operator_token=OPERATOR, viewer_token=VIEWER)
    jar = aiohttp.CookieJar(unsafe=True)
    async with serve(config, redis_url, namespace) as base, aiohttp.ClientSession(cookie_jar=jar) as http:
        assert await post(http, base + "/login", {"token": VIEWER}, origin=base) == 303
        async with http.get(base + "/workers") as reply:
            page = await reply.text()
        assert "w:1:abc" in page
        assert 'action="/workers/drain"' not in page
        csrf = await csrf_of(http, base + "/audit")
        form = {"worker_id": "w:1:abc"}
        assert await post(http, base + "/workers/drain", form, origin=base, csrf=csrf) == 403
        assert await queue.drain_requests() == {}
        assert await post(http, base + "/logout", {}, origin=base, csrf=csrf) == 303
        assert await post(http, base + "/login", {"token": OPERATOR}, origin=base) == 303
        csrf = await csrf_of(http, base + "/workers")
        form["reason"] = "kernel update"
        assert await post(http, base + "/workers/drain", form, origin=base, csrf=csrf) == 303
        assert (await queue.drain_requests())["w:1:abc"].reason == "kernel update"
        async with http.get(base + "/workers") as reply:
            page = await reply.text()
        assert "draining: kernel update" in page
        assert 'action="/workers/drain"' not in page  # pending already: no second button
    actions = [(e.actor.split("@")[0], e.action, e.outcome) for e in reversed(await queue.audit_log())]
    assert actions[1][:2] == ("viewer-token", "workers/drain")
    assert actions[1][2].startswith("refused")
    assert actions[-1] == ("operator-token", "drain", "requested")


async def test_with_namespaces_the_drain_goes_to_the_namespace_of_the_screen(
    redis_url: str, namespace: str, http: aiohttp.ClientSession, queue: AsyncCaptchaQueue
) -> None:
    other = namespace + "-b"
    config = DashboardConfig(port=0, refresh_s=0.5, namespaces=(other, namespace))
    async with serve(config, redis_url, "unused") as base:
        await queue.register_worker("w:1:abc", INFO, ttl_s=30)
        async with http.get(f"{base}/ns/{namespace}/workers") as reply:
            page = await reply.text()
        assert f'action="/ns/{namespace}/workers/drain"' in page
        csrf = await csrf_of(http, f"{base}/ns/{namespace}/workers")
        form = {"worker_id": "w:1:abc"}
        assert await post(http, f"{base}/ns/{namespace}/workers/drain", form, origin=base, csrf=csrf) == 303
    assert set(await queue.drain_requests()) == {"w:1:abc"}
    assert [(e.action, e.target, e.outcome) for e in await queue.audit_log(5)] == [
        ("drain", "w:1:abc", "requested")
    ]
