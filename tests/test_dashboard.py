"""The dashboard over HTTP (a plain aiohttp client; the browser tests are in test_dashboard_browser.py):
security headers, sessions and roles, CSRF and Origin checks, the audit trail, secrets, readiness,
the event feed's single reader, and the refusal to serve a non-loopback address without a login."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from captcha_queue.dashboard import CSP, READER_NAME, DashboardConfig, serve
from captcha_queue.dashboard._analysis import error_series, latency_rows, percentile, throughput
from captcha_queue.dashboard._html import NAV
from captcha_queue.errors import ConfigError
from captcha_queue.models import Result, Status
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.server import EmbeddedRedis

from .helpers import RC, claim_all

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789ab"
SCREENS = [path for path, _label in NAV]


@pytest.fixture
async def base(redis_url: str, namespace: str) -> AsyncIterator[str]:
    async with serve(DashboardConfig(port=0, refresh_s=0.5), redis_url, namespace) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def csrf_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as reply:
        assert reply.status == 200
        page = await reply.text()
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def post(
    http: aiohttp.ClientSession,
    url: str,
    data: dict[str, str],
    *,
    origin: str | None,
    csrf: str | None = None,
) -> int:
    headers = {"Origin": origin} if origin is not None else {}
    form = dict(data)
    if csrf is not None:
        form["csrf"] = csrf
    async with http.post(url, data=form, headers=headers, allow_redirects=False) as reply:
        return reply.status


async def test_every_screen_has_a_strict_csp_and_no_inline_script_or_style(
    base: str, http: aiohttp.ClientSession
) -> None:
    for path in [*SCREENS, "/login"]:
        async with http.get(base + path) as reply:
            assert reply.status == 200, path
            assert reply.headers["Content-Security-Policy"] == CSP
            assert reply.headers["X-Content-Type-Options"] == "nosniff"
            page = await reply.text()
        assert "unsafe-inline" not in CSP
        assert "'unsafe-eval'" not in CSP
        scripts = re.findall(r"<script([^>]*)>", page)
        assert scripts, path
        assert all('src="/static/' in attrs for attrs in scripts), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page), path
        links = re.findall(r'<link [^>]*href="([^"]*)"', page)
        assert links, path
        assert all(href.startswith("/static/") for href in links), path  # nothing from a CDN
    for asset in ("htmx.min.js", "sse.min.js", "dashboard.css", "LICENSE.htmx.txt"):
        async with http.get(f"{base}/static/{asset}") as reply:
            assert reply.status == 200, asset
    async with http.get(f"{base}/static/..%2F_app.py") as reply:
        assert reply.status == 404


async def test_an_action_needs_the_csrf_token_and_this_origin_and_is_audited(
    base: str, http: aiohttp.ClientSession, queue: AsyncCaptchaQueue
) -> None:
    csrf = await csrf_of(http, base + "/pauses")
    form = {"reason": "maintenance", "account": ""}
    assert await post(http, base + "/pause", form, origin=base) == 403  # no token
    assert await post(http, base + "/pause", form, origin="https://evil.example", csrf=csrf) == 403
    assert await post(http, base + "/pause", form, origin=None, csrf=csrf) == 403
    assert await post(http, base + "/pause", form, origin=base, csrf="0" * 64) == 403
    assert (await queue.pause_state()).fleet is None  # nothing was done
    assert await post(http, base + "/pause", form, origin=base, csrf=csrf) == 303
    state = await queue.pause_state()
    assert state.fleet is not None
    assert state.fleet.reason == "maintenance"
    assert state.fleet.worker is not None
    assert state.fleet.worker.startswith("dashboard:local@")
    assert await post(http, base + "/resume", {}, origin=base, csrf=csrf) == 303
    assert (await queue.pause_state()).fleet is None
    audit = await queue.audit_log(20)
    assert [(e.action, e.outcome.split(":")[0]) for e in reversed(audit)] == [
        ("pause", "refused"),
        ("pause", "refused"),
        ("pause", "refused"),
        ("pause", "refused"),
        ("pause", "paused"),
        ("resume", "1 pauses lifted"),
    ]
    assert {e.role for e in audit} == {"operator"}
    # A request without the session cookie has no CSRF token to present: refused, nothing written.
    async with aiohttp.ClientSession() as stranger:
        assert await post(stranger, base + "/pause", form, origin=base, csrf=csrf) == 403
    assert (await queue.pause_state()).fleet is None


async def test_purge_needs_the_typed_confirmation(
    base: str, http: aiohttp.ClientSession, queue: AsyncCaptchaQueue
) -> None:
    await queue.submit_many([{"method": "userrecaptcha", "params": RC, "max_attempts": 1}] * 2)
    for claim in await claim_all(queue, 2):
        await queue.fail(claim, "ERROR_X", "gave up", retry_in_s=0.01)
    assert len(await queue.dead_letters()) == 2
    csrf = await csrf_of(http, base + "/dead-letters")
    assert await post(http, base + "/dead-letters/purge", {"confirm": "yes"}, origin=base, csrf=csrf) == 303
    assert len(await queue.dead_letters()) == 2
    assert await post(http, base + "/dead-letters/purge", {"confirm": "PURGE"}, origin=base, csrf=csrf) == 303
    assert await queue.dead_letters() == []
    outcomes = [(e.action, e.outcome) for e in await queue.audit_log(5)]
    assert outcomes == [("purge", "2 deleted"), ("purge", "refused: not confirmed")]


async def test_logins_roles_and_bearer_reads(
    redis_url: str, namespace: str, queue: AsyncCaptchaQueue
) -> None:
    config = DashboardConfig(port=0, operator_token=OPERATOR, viewer_token=VIEWER)
    async with serve(config, redis_url, namespace) as base:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/", allow_redirects=False) as reply:
                assert reply.status == 303
                assert reply.headers["Location"] == "/login"
            async with http.get(base + "/events/stream", allow_redirects=False) as reply:
                assert reply.status == 401
            assert await post(http, base + "/login", {"token": "wrong-token-0123456789"}, origin=base) == 401
            assert await post(http, base + "/login", {"token": VIEWER}, origin="https://evil.example") == 403
            assert await post(http, base + "/login", {"token": VIEWER}, origin=base) == 303
            async with http.get(base + "/pauses") as reply:
                page = await reply.text()
                assert '<b id="role">viewer</b>' in page
                assert 'action="/pause"' not in page  # no action forms for a viewer
            csrf = await csrf_of(http, base + "/audit")
            assert await post(http, base + "/pause", {"reason": "x"}, origin=base, csrf=csrf) == 403
            assert (await queue.pause_state()).fleet is None
            assert await post(http, base + "/logout", {}, origin=base, csrf=csrf) == 303
            async with http.get(base + "/", allow_redirects=False) as reply:
                assert reply.status == 303

            assert await post(http, base + "/login", {"token": OPERATOR}, origin=base) == 303
            csrf = await csrf_of(http, base + "/pauses")
            assert await post(http, base + "/pause", {"reason": "by operator"}, origin=base, csrf=csrf) == 303
            assert (await queue.pause_state()).fleet is not None
        async with aiohttp.ClientSession() as script:
            async with script.get(base + "/", headers={"Authorization": f"Bearer {VIEWER}"}) as reply:
                assert reply.status == 200
                page = await reply.text()
            for token in (OPERATOR, VIEWER):
                assert token not in page
    actions = [
        (e.actor.split("@")[0], e.action, e.outcome.split(":")[0]) for e in reversed(await queue.audit_log())
    ]
    assert actions == [
        ("viewer-token", "login", "ok"),
        ("viewer-token", "pause", "refused"),
        ("operator-token", "login", "ok"),
        ("operator-token", "pause", "paused"),
    ]


def test_a_non_loopback_bind_without_a_login_or_tls_refuses_to_start(tmp_path: Path, redis_url: str) -> None:
    def start(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "captcha_queue", "--redis-url", redis_url, "dashboard", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    done = start("--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "not loopback" in lines[0]
    assert "token" in lines[0]
    token = tmp_path / "operator"
    token.write_text(OPERATOR)
    done = start("--host", "192.0.2.10", "--operator-token-file", str(token))
    assert done.returncode == 1
    assert "clear text" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert OPERATOR not in done.stderr
    short = tmp_path / "short"
    short.write_text("abc")
    done = start("--operator-token-file", str(short))
    assert done.returncode == 1
    assert "at least 16" in done.stderr


@pytest.mark.parametrize(
    "changes",
    [
        {"host": "0.0.0.0"},
        {"host": "10.1.2.3", "viewer_token": VIEWER},
        {"operator_token": "short"},
        {"operator_token": OPERATOR, "viewer_token": OPERATOR},
        {"tls_cert": Path("c.pem")},
        {"accounts": ("a:b",)},
        {"allowed_origins": ("evil.example",)},
        {"refresh_s": float("nan")},
    ],
)
def test_config_refusals(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DashboardConfig().replace(**changes).check()
    assert OPERATOR not in repr(DashboardConfig(operator_token=OPERATOR))


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(90)
async def test_no_password_on_any_page_and_readyz_follows_redis(private_redis: EmbeddedRedis) -> None:
    assert private_redis.password
    async with (
        serve(DashboardConfig(port=0), private_redis.url, "secrets") as base,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        for path in [*SCREENS, "/tasks?q=x", "/readyz", "/healthz"]:
            async with http.get(base + path) as reply:
                body = await reply.text()
            assert reply.status == 200, path
            assert private_redis.password not in body, path
            assert str(private_redis.port) not in body or path == "/readyz", path
        private_redis.kill()
        async with http.get(base + "/readyz") as reply:
            assert reply.status == 503
            body = await reply.text()
            assert '"redis":{"ok":false' in body
            assert private_redis.password not in body
        async with http.get(base + "/healthz") as reply:
            assert reply.status == 200
        async with http.get(base + "/workers") as reply:  # a screen says so in one line
            assert reply.status == 503
            text = await reply.text()
            assert text.startswith("unavailable: ")
            assert private_redis.password not in text
            assert reply.headers["Content-Security-Policy"] == CSP
        private_redis.start()
        for _ in range(100):
            async with http.get(base + "/readyz") as reply:
                if reply.status == 200:
                    break
            await asyncio.sleep(0.1)
        assert reply.status == 200


@pytest.mark.timeout(60)
async def test_one_redis_reader_feeds_every_browser(
    base: str, queue: AsyncCaptchaQueue, redis_url: str
) -> None:
    async def first_event(session: aiohttp.ClientSession, ready: asyncio.Event, counter: list[int]) -> str:
        async with session.get(base + "/events/stream") as reply:
            assert reply.headers["Content-Type"].startswith("text/event-stream")
            counter.append(1)
            if len(counter) == 5:
                ready.set()
            async for line in reply.content:
                if line.startswith(b"data: "):
                    return line.decode()
        raise AssertionError("stream ended")

    ready, counter = asyncio.Event(), list[int]()
    sessions = [aiohttp.ClientSession() for _ in range(5)]
    try:
        readers = [asyncio.create_task(first_event(s, ready, counter)) for s in sessions]
        await asyncio.wait_for(ready.wait(), 10)
        clients = await queue.client.client_list()
        assert sum(1 for c in clients if c.get("name") == READER_NAME) == 1
        await asyncio.sleep(0.3)  # the reader's XREAD is in place (it reads from "now")
        task_id = await queue.submit("userrecaptcha", RC)
        (claim,) = await claim_all(queue, 1)
        await queue.complete(claim, "token-for-the-feed")
        rows = await asyncio.wait_for(asyncio.gather(*readers), 10)
        assert all(task_id in row and "<tr" in row for row in rows)
    finally:
        for s in sessions:
            await s.close()


def _result(i: int, status: Status = "success", **kw: Any) -> Result:
    return Result(
        id=f"t{i}",
        status=status,
        method="turnstile",
        priority="normal",
        attempts=1,
        submitted_at=100.0,
        finished_at=100.0 + i,
        queue_wait_s=0.1 * i,
        solve_s=1.0 * i,
        **kw,
    )


def test_percentiles_throughput_errors_and_latency_from_results() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(map(float, range(1, 101))), 95) == 95.0
    assert percentile([5.0], 99) == 5.0
    now_ms = 10_000_000
    events = [
        (f"{now_ms - 30_000}-0", _result(1)),
        (f"{now_ms - 30_000}-1", _result(2, "error", error_code="E1")),
    ]
    events.append((f"{now_ms - 1_800_000}-0", _result(3, "error", error_code="E1")))
    minute, hour = throughput(events, now_ms, 60), throughput(events, now_ms, 3600)
    assert (minute.total, minute.succeeded, minute.per_min) == (2, 1, 2.0)
    assert hour.total == 3
    assert hour.success_rate == pytest.approx(1 / 3)
    starts, series = error_series(events, now_ms)
    assert len(starts) == 12
    assert list(series) == [("E1", "turnstile", "-")]
    assert sum(series[("E1", "turnstile", "-")]) == 2
    assert series[("E1", "turnstile", "-")][-1] == 1
    (row,) = latency_rows(events)
    assert (row.method, row.priority, row.count) == ("turnstile", "normal", 1)
    assert row.solve == (1.0, 1.0, 1.0)
    assert row.end_to_end == (1.0, 1.0, 1.0)


def test_the_vendored_scripts_are_the_published_files() -> None:
    import hashlib

    static = Path(__file__).resolve().parent.parent / "src" / "captcha_queue" / "dashboard" / "static"
    listed = (static / "VENDORED.txt").read_text()
    for name in ("htmx.min.js", "sse.min.js"):
        digest = hashlib.sha256((static / name).read_bytes()).hexdigest()
        assert f"sha256 {digest}" in listed, name
    assert "Zero-Clause BSD" in (static / "LICENSE.htmx.txt").read_text()
    assert "BSD Zero Clause" in (static / "LICENSE.htmx-ext-sse.txt").read_text()


async def test_dead_letters_filter_and_requeue_all_matching(
    base: str, http: aiohttp.ClientSession, queue: AsyncCaptchaQueue
) -> None:
    ids = await queue.submit_many([{"method": "userrecaptcha", "params": RC, "max_attempts": 1}] * 3)
    codes = {}
    for claim, code in zip(await claim_all(queue, 3), ["ERROR_A", "ERROR_A", "ERROR_B"], strict=True):
        await queue.fail(claim, code, "gave up", retry_in_s=0.01)
        codes[claim.task.id] = code
    async with http.get(base + "/dead-letters", params={"code": "ERROR_A"}) as reply:
        page = await reply.text()
    assert '<b id="dlq-matching">2</b>' in page
    assert '<b data-stat="dead_letters">3</b>' in page
    csrf = await csrf_of(http, base + "/dead-letters")
    form = {"code": "ERROR_A", "q": "", "method": ""}
    assert await post(http, base + "/dead-letters/requeue", form, origin=base, csrf=csrf) == 303
    left = await queue.dead_letters()
    assert [d.id for d in left] == [t for t in ids if codes[t] == "ERROR_B"]
    (entry, *_) = await queue.audit_log(1)
    assert (entry.action, entry.target, entry.outcome) == (
        "requeue-matching",
        "code=ERROR_A",
        "2 of 2 requeued",
    )
    async with http.get(base + "/dead-letters") as reply:
        assert "requeued 2 of 2 matching dead letters" in await reply.text()  # the notice, once


async def test_a_bad_pause_is_refused_with_a_notice_and_nothing_written(
    base: str, http: aiohttp.ClientSession, queue: AsyncCaptchaQueue
) -> None:
    csrf = await csrf_of(http, base + "/pauses")
    for form in ({"reason": "x", "for_s": "nan"}, {"reason": "x", "for_s": "soon"}, {"reason": " "}):
        assert await post(http, base + "/pause", form, origin=base, csrf=csrf) == 303
        async with http.get(base + "/pauses") as reply:
            assert "not paused:" in await reply.text()
    assert not (await queue.pause_state()).paused
    assert [e.outcome.split(":")[0] for e in await queue.audit_log()] == ["refused"] * 3
