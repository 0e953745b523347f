"""The dashboard across namespaces (``--namespaces``), the Accounts screen and the Webhooks screen,
over HTTP with a plain aiohttp client against a real Redis (the browser test visits them too)."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from captcha_queue.dashboard import DashboardConfig, serve
from captcha_queue.errors import ConfigError
from captcha_queue.models import AccountSpec, Solution
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.webhooks import Outbox

from .helpers import RC, claim_all, drop_namespaces
from .test_dashboard import csrf_of, post


@pytest.fixture
def other_namespace(redis_url: str) -> Iterator[str]:
    ns = f"t-{uuid.uuid4().hex[:12]}"
    yield ns
    drop_namespaces(redis_url, ns)


@pytest.fixture
async def other(redis_client: aioredis.Redis, other_namespace: str) -> AsyncIterator[AsyncCaptchaQueue]:
    q = AsyncCaptchaQueue(redis_client, namespace=other_namespace)
    yield q
    await q.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def page_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as reply:
        assert reply.status == 200, url
        return await reply.text()


def cells(page: str, attr: str) -> dict[str, str]:
    """``{key: text}`` of every cell marked ``attr="key"``."""
    found = re.findall(rf'{attr}="([^"]+)"[^>]*>([^<]*)<', page)
    return {html.unescape(k): html.unescape(v) for k, v in found}


def stats_json(redis_url: str, names: str) -> dict[str, object]:
    argv = [sys.executable, "-m", "captcha_queue", "--redis-url", redis_url]
    done = subprocess.run(
        [*argv, "stats", "--namespaces", names, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


# -- across namespaces -----------------------------------------------------------------------------


async def test_the_overview_across_namespaces_matches_stats_namespaces(
    redis_url: str,
    namespace: str,
    other_namespace: str,
    queue: AsyncCaptchaQueue,
    other: AsyncCaptchaQueue,
    http: aiohttp.ClientSession,
) -> None:
    await queue.submit_many([{"method": "userrecaptcha", "params": RC}] * 3)
    await other.submit_many([{"method": "userrecaptcha", "params": RC, "max_attempts": 1}] * 3)
    claims = await claim_all(other, 2)
    await other.fail(claims[0], "ERROR_X", "gave up", retry_in_s=0.01)  # a dead letter
    await other.complete(claims[1], Solution(text="tok"))
    await other.pause("maintenance in b")
    config = DashboardConfig(port=0, refresh_s=0.5, namespaces=(namespace, other_namespace))
    async with serve(config, redis_url, "unused") as base:
        page = await page_of(http, base + "/")
        doc = stats_json(redis_url, f"{namespace},{other_namespace}")
        shown = cells(page, "data-ns")
        per_ns = doc["namespaces"]
        assert isinstance(per_ns, dict)
        for ns in (namespace, other_namespace):
            for field in ("queued_total", "delayed", "in_flight", "workers", "dead_letters"):
                assert shown[f"{ns}|{field}"] == str(per_ns[ns][field]), (ns, field)
        totals = doc["totals"]
        assert isinstance(totals, dict)
        for field in ("queued_total", "in_flight", "dead_letters"):
            assert shown[f"total|{field}"] == str(totals[field]), field
        assert (shown[f"{namespace}|queued_total"], shown[f"{other_namespace}|queued_total"]) == ("3", "1")
        assert shown["total|dead_letters"] == "1"
        assert shown[f"{other_namespace}|paused"] == "maintenance in b"
        assert shown[f"{namespace}|paused"] == "no"
        assert shown["total|paused"] == other_namespace
        assert shown[f"{other_namespace}|results_hour"] == "2"  # the dead letter's error and the solve
        assert shown["total|results_hour"] == "2"
        body = page.split('<table id="namespaces">')[1].split("</table>")[0]
        widths = {len(re.findall(r"<t[dh][ >]", row)) for row in body.split("</tr>")[:-1]}
        assert widths == {9}, widths  # the totals row is as wide as the others
        # Each row leads to that namespace's screens, whose links stay in it.
        assert f'href="/ns/{namespace}/"' in page
        ns_page = await page_of(http, f"{base}/ns/{other_namespace}/")
        assert cells(ns_page, "data-stat")["queued_total"] == "1"
        assert f'href="/ns/{other_namespace}/dead-letters"' in ns_page
        assert 'href="/">All namespaces' in ns_page
        letters = await page_of(http, f"{base}/ns/{other_namespace}/dead-letters")
        assert f'href="/ns/{other_namespace}/dead-letters/{claims[0].task_id}"' in letters
        assert f'action="/ns/{other_namespace}/dead-letters/{claims[0].task_id}/requeue"' in letters
        events = await page_of(http, f"{base}/ns/{other_namespace}/events")
        assert f'sse-connect="/ns/{other_namespace}/events/stream"' in events
        async with http.get(f"{base}/ns/not-served/") as reply:
            assert reply.status == 404
        async with http.get(f"{base}/capacity") as reply:  # a namespace's screen is under its name
            assert reply.status == 404
        async with http.get(f"{base}/readyz") as reply:
            assert reply.status == 200
        login = await page_of(http, f"{base}/login")
        assert 'href="/capacity"' not in login  # no links to screens that are under /ns/<name>/
        assert 'href="/">All namespaces' in login
        clients = await queue.client.client_list()
        assert sum(1 for c in clients if c.get("name") == "captcha-queue-dashboard-events") == 2


async def test_an_action_in_one_namespace_acts_and_is_audited_there_only(
    redis_url: str,
    namespace: str,
    other_namespace: str,
    queue: AsyncCaptchaQueue,
    other: AsyncCaptchaQueue,
    http: aiohttp.ClientSession,
) -> None:
    config = DashboardConfig(port=0, namespaces=(namespace, other_namespace))
    async with serve(config, redis_url, "unused") as base:
        pauses = f"{base}/ns/{other_namespace}/pauses"
        csrf = await csrf_of(http, pauses)
        assert f'action="/ns/{other_namespace}/pause"' in await page_of(http, pauses)
        form = {"reason": "only b", "account": ""}
        target = f"{base}/ns/{other_namespace}/pause"
        assert await post(http, target, form, origin=base) == 403  # no CSRF token
        assert await post(http, target, form, origin="https://evil.example", csrf=csrf) == 403
        assert (await other.pause_state()).fleet is None
        async with http.post(
            target, data={**form, "csrf": csrf}, headers={"Origin": base}, allow_redirects=False
        ) as reply:
            assert reply.status == 303
            assert reply.headers["Location"] == f"/ns/{other_namespace}/pauses"
        assert await post(http, f"{base}/ns/not-served/pause", form, origin=base, csrf=csrf) == 404
    b_state, a_state = await other.pause_state(), await queue.pause_state()
    assert b_state.fleet is not None
    assert b_state.fleet.reason == "only b"
    assert a_state.fleet is None
    assert [(e.action, e.outcome.split(":")[0]) for e in reversed(await other.audit_log())] == [
        ("pause", "refused"),
        ("pause", "refused"),
        ("pause", "paused"),
    ]
    assert await queue.audit_log() == []


async def test_one_namespace_is_served_as_before(
    redis_url: str, namespace: str, http: aiohttp.ClientSession
) -> None:
    async with serve(DashboardConfig(port=0), redis_url, namespace) as base:
        page = await page_of(http, base + "/")
        assert 'href="/capacity"' in page
        assert "All namespaces" not in page
        async with http.get(f"{base}/ns/{namespace}/") as reply:
            assert reply.status == 404


def test_bad_namespaces_are_refused_in_one_line(redis_url: str) -> None:
    for value, code in (("a,,b", 2), ("a,b c", 2), ("a,..", 1), ("", 2)):
        argv = [sys.executable, "-m", "captcha_queue", "--redis-url", redis_url, "dashboard", "--port", "0"]
        done = subprocess.run(
            [*argv, "--namespaces", value], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == code, (value, done.stderr)
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "namespace" in lines[0]
    with pytest.raises(ConfigError):
        DashboardConfig(namespaces=("a", "a")).check()
    with pytest.raises(ConfigError):
        DashboardConfig(namespaces=("a", "{b}")).check()


# -- accounts --------------------------------------------------------------------------------------


async def test_the_accounts_screen_shows_the_registry_and_account_stats_never_a_key(
    redis_url: str, namespace: str, queue: AsyncCaptchaQueue, http: aiohttp.ClientSession
) -> None:
    await queue.add_account(
        AccountSpec(name="main", provider="captchaai", key_env="CAPTCHAAI_KEY", limit=5, priority=10)
    )
    await queue.add_account(
        AccountSpec(
            name="backup", provider="2captcha", limit=3, cost=2.5, key_file="/run/secrets/keys", key_entry="b"
        )
    )
    await queue.pause("no balance", account="backup", code="ERROR_ZERO_BALANCE")
    await queue.submit_many([{"method": "userrecaptcha", "params": RC, "max_attempts": 1}] * 3)
    claims = await claim_all(queue, 3)
    await queue.complete(claims[0], Solution(text="a"), provider="captchaai", account="main/0123abcd")
    await queue.complete(claims[1], Solution(text="b"), provider="captchaai", account="main/0123abcd")
    await queue.fail(claims[2], "ERROR_CAPTCHA_UNSOLVABLE", "no")
    async with serve(DashboardConfig(port=0), redis_url, namespace) as base:
        page = await page_of(http, base + "/accounts")
        errors = await page_of(http, base + "/errors")
    shown = cells(page, "data-acct")
    by_name = {s.name: s for s in await queue.account_stats()}
    assert set(by_name) == {"main", "backup"}
    for name, s in by_name.items():
        limit = "?" if s.slots_limit is None else s.slots_limit  # set once a worker of it starts
        assert shown[f"{name}|slots"] == f"{s.slots_used} / {limit}"
        assert shown[f"{name}|workers"] == str(s.workers)
        assert shown[f"{name}|in_flight"] == str(s.in_flight)
        assert shown[f"{name}|balance"] == ("-" if s.balance is None else f"{s.balance:g}")
    assert shown["main|paused"] == "no"
    assert shown["backup|paused"] == "no balance (ERROR_ZERO_BALANCE)"
    assert (shown["main|finished"], shown["main|solved"]) == ("2", "2")
    assert (shown["backup|finished"], shown["backup|solved"]) == ("0", "0")
    assert shown["-|finished"] == "1"  # the final error names no account
    assert "<code>env:CAPTCHAAI_KEY</code>" in page
    assert "<code>file:/run/secrets/keys#b</code>" in page
    assert page.index(">main<") < page.index(">backup<")  # routing order: priority first
    assert cells(errors, "data-errors") == {"ERROR_CAPTCHA_UNSOLVABLE|userrecaptcha|-": "1"}


# -- webhooks --------------------------------------------------------------------------------------


async def test_the_webhooks_screen_lists_pending_and_failed_and_retries_one_audited(
    redis_url: str, namespace: str, redis_client: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    q = AsyncCaptchaQueue(redis_client, namespace=namespace, allow_private_targets=True)
    outbox = Outbox(redis_client, namespace)
    ids = []
    for path in ("/a?token=hook-secret-1", "/b?token=hook-secret-2", "/c"):
        ids.append(await q.submit("userrecaptcha", RC, pingback=f"http://127.0.0.1:9{path}"))
    for claim in await claim_all(q, 3):
        await q.complete(claim, Solution(text="tok"))
    handled, leased = await outbox.claim(
        3, lease_ms=30_000, max_age_ms=600_000, keep_ms=600_000, deliverer="t"
    )
    assert handled == 3
    by_task = {d.task: d for d in leased}
    age, keep = 600_000, 600_000
    await outbox.settle(
        by_task[ids[0]], "retry", delay_ms=60_000, error="connection refused", max_age_ms=age, keep_ms=keep
    )
    quoted = "HTTP 410: gone from http://127.0.0.1:9/b?token=hook-secret-2"  # an error may quote its URL
    await outbox.settle(by_task[ids[1]], "failed", status=410, error=quoted, max_age_ms=age, keep_ms=keep)
    await outbox.settle(by_task[ids[2]], "delivered", status=200, max_age_ms=age, keep_ms=keep)
    async with serve(DashboardConfig(port=0), redis_url, namespace) as base:
        page = await page_of(http, base + "/webhooks")
        assert cells(page, "data-webhooks") == {"pending": "1", "failed": "1"}
        assert cells(page, "data-attempts") == {ids[0]: "1", ids[1]: "1"}
        assert "connection refused" in page
        assert "HTTP 410" in page
        assert "hook-secret" not in page  # the URL's query is not shown, not even quoted in an error
        assert "http://127.0.0.1:9/a?…" in page
        assert ids[2] not in page  # delivered: not listed
        csrf = await csrf_of(http, base + "/webhooks")
        retry = f"{base}/webhooks/{ids[1]}/retry"
        assert f'action="/webhooks/{ids[1]}/retry"' in page
        assert await post(http, retry, {}, origin=base) == 403  # no CSRF token
        assert (await outbox.get(ids[1])) is not None
        assert (await outbox.get(ids[1])).state == "failed"  # type: ignore[union-attr]
        assert await post(http, retry, {}, origin=base, csrf=csrf) == 303
        after = await outbox.get(ids[1])
        assert after is not None
        assert after.state == "pending"
        assert await post(http, f"{base}/webhooks/no-such-task/retry", {}, origin=base, csrf=csrf) == 303
        page = await page_of(http, base + "/webhooks")
        assert cells(page, "data-webhooks") == {"pending": "2", "failed": "0"}
    async with (
        serve(DashboardConfig(port=0, read_only=True), redis_url, namespace) as base,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer,
    ):
        page = await page_of(viewer, base + "/webhooks")
        assert 'class="retry"' not in page  # a viewer gets no retry button
        found = re.search(r"X-CSRF-Token&quot;: &quot;([0-9a-f]+)", page)  # htmx's headers
        assert found
        retry = f"{base}/webhooks/{ids[0]}/retry"
        assert await post(viewer, retry, {}, origin=base, csrf=found.group(1)) == 403  # the role
    entries = [(e.action, e.target, e.outcome.split(":")[0]) for e in reversed(await q.audit_log())]
    assert entries == [
        (f"webhooks/{ids[1]}/retry", f"/webhooks/{ids[1]}/retry", "refused"),
        ("webhook-retry", ids[1], "retried"),
        ("webhook-retry", "no-such-task", "no such delivery"),
        (f"webhooks/{ids[0]}/retry", f"/webhooks/{ids[0]}/retry", "refused"),
    ]
    assert "viewer role" in (await q.audit_log(1))[0].outcome
