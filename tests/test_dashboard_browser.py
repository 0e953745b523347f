"""The dashboard in a real browser: Playwright driving Debian's Chromium (``apt-get install chromium``;
no browser download) against a real Redis, the simulator and a worker, each a subprocess.

One scenario walks every screen: its numbers match ``captcha-queue stats --json``, the live parts
update without a reload, the event feed receives results pushed over SSE, a dead letter is
requeued from the browser and the action shows in the audit screen. Each screen's screenshot is
saved for docs/operations.md (into docs/img/dashboard/ with CAPTCHA_QUEUE_SCREENSHOTS=1).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from captcha_queue import CaptchaQueue
from captcha_queue.models import AccountSpec, Claim, Result
from captcha_queue.store.connection import make_client
from captcha_queue.webhooks import Outbox

from .helpers import ProcessManager

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The docs' screenshots: written only when CAPTCHA_QUEUE_SCREENSHOTS=1 (a test run must not change the
# source tree: every run would rewrite them, the namespace name being random); else into a temp dir.
DOCS_SHOTS = Path(__file__).resolve().parent.parent / "docs" / "img" / "dashboard"
SHOTS = (
    DOCS_SHOTS
    if os.environ.get("CAPTCHA_QUEUE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / f"captcha-queue-shots-{os.getpid()}"
)
KEY = "0123456789abcdef0123456789abcdef"
SCALE = "0.05"
TURNSTILE = {"sitekey": "0x4AAAAAAAC3DHQFLr1GavRN", "pageurl": "https://example.test/checkout"}
PRIORITY_CYCLE = ("high", "normal", "low")
T = TypeVar("T")


def first_line(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> str:
    """The first line a subprocess wrote to its log file (its URL), waiting for it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if "\n" in text:
            return text.splitlines()[0].strip()
        assert proc.poll() is None, f"{path.name} exited: {text}"
        time.sleep(0.05)
    raise AssertionError(f"no first line in {path}")


def spawn(
    processes: ProcessManager, argv: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return processes.spawn_python(["-m", "captcha_queue", *argv], env, capture=False, stdout=sink)


def cli_json(env: dict[str, str], *args: str) -> Any:
    """``captcha-queue ARGS`` run as a subprocess (the browser's loop runs in this thread): its JSON."""
    argv = [sys.executable, "-m", "captcha_queue", *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium (.ci/run does)"
    with playwright_sync.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def wait_until(check: Any, timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not reached in time: {what}"
        time.sleep(0.05)


def in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end on a loop of its own (Playwright's sync API holds this thread's)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout=30)


def accounts_screen(page: Any, q: CaptchaQueue, base: str, results: list[Result], shot: Any) -> None:
    """The Accounts screen: the registry's accounts with account_stats' numbers, key references only."""
    expect = playwright_sync.expect
    q.add_account(AccountSpec(name="default", provider="captchaai", key_env="CAPTCHAAI_KEY", limit=5))
    q.add_account(
        AccountSpec(
            name="backup",
            provider="2captcha",
            limit=2,
            priority=-1,
            cost=1.5,
            key_file="/run/secrets/solver-keys",
            key_entry="backup",
        )
    )
    q.pause("balance top-up", account="backup", code="ERROR_ZERO_BALANCE")
    page.goto(base + "/accounts")
    for entry in q.account_stats():
        cell = page.locator(f'[data-acct="{entry.name}|slots"]')
        limit = "?" if entry.slots_limit is None else entry.slots_limit
        expect(cell).to_have_text(f"{entry.slots_used} / {limit}")
        expect(page.locator(f'[data-acct="{entry.name}|workers"]')).to_have_text(str(entry.workers))
        balance = "-" if entry.balance is None else f"{entry.balance:g}"
        expect(page.locator(f'[data-acct="{entry.name}|balance"]')).to_have_text(balance)
    # Everything finished (the requeued dead letter and the late task too): the counts stand still.
    wait_until(lambda: (s := q.stats()).queued_total + s.in_flight + s.delayed == 0, what="all finished")
    recent = [r for _eid, r in q.recent_results(3600.0, 1000)]
    assert {r.id for r in results} <= {r.id for r in recent}
    solved = sum(1 for r in recent if r.ok and (r.account or "").startswith("default/"))
    assert solved == sum(1 for r in recent if r.ok) > 0  # the worker solves on the default account
    expect(page.locator('[data-acct="default|solved"]')).to_have_text(str(solved))
    expect(page.locator('[data-acct="backup|paused"]')).to_have_text("balance top-up (ERROR_ZERO_BALANCE)")
    expect(page.locator("#accounts")).to_contain_text("env:CAPTCHAAI_KEY")
    expect(page.locator("#accounts")).not_to_contain_text(KEY)
    shot("accounts")
    q.resume("backup")


def webhooks_screen(page: Any, q: CaptchaQueue, base: str, env: dict[str, str], shot: Any) -> None:
    """Two results on their way to pingback URLs (nothing listens: one retried later, one given up by
    the deliverer's rules), shown with attempts and errors; the failed one retried from the browser."""
    expect = playwright_sync.expect
    with CaptchaQueue(env["REDIS_URL"], namespace=q.namespace, allow_private_targets=True) as hq:
        hooks = [
            hq.submit("turnstile", {**TURNSTILE, "pageurl": f"https://example.test/h{i}"}, pingback=url)
            for i, url in enumerate(["http://127.0.0.1:9/hook?token=s3cr3t", "http://127.0.0.1:9/gone"])
        ]
        for task_id in hooks:
            assert hq.wait_result(task_id, timeout_s=60) is not None

    async def send_once() -> None:  # what a deliverer records after trying each once
        client = make_client(env["REDIS_URL"])
        try:
            outbox = Outbox(client, q.namespace)
            _n, leased = await outbox.claim(
                2, lease_ms=30_000, max_age_ms=3_600_000, keep_ms=3_600_000, deliverer="browser-test"
            )
            by_task = {d.task: d for d in leased}
            age = keep = 3_600_000
            await outbox.settle(
                by_task[hooks[0]],
                "retry",
                delay_ms=600_000,
                error="connection refused",
                max_age_ms=age,
                keep_ms=keep,
            )
            await outbox.settle(
                by_task[hooks[1]], "failed", status=410, error="HTTP 410 Gone", max_age_ms=age, keep_ms=keep
            )
        finally:
            await client.aclose()

    in_thread(send_once)
    page.goto(base + "/webhooks")
    expect(page.locator('[data-webhooks="pending"]')).to_have_text("1")
    expect(page.locator('[data-webhooks="failed"]')).to_have_text("1")
    expect(page.locator("#webhooks-pending")).to_contain_text("connection refused")
    expect(page.locator("#webhooks-failed")).to_contain_text("HTTP 410 Gone")
    expect(page.locator(f'[data-attempts="{hooks[1]}"]')).to_have_text("1")
    expect(page.locator("main")).not_to_contain_text("s3cr3t")
    shot("webhooks")
    page.locator("#webhooks-failed tr", has_text=hooks[1]).locator("button.retry").click()
    expect(page.locator(".flash")).to_contain_text(f"delivery of {hooks[1]} retried")
    expect(page.locator('[data-webhooks="pending"]')).to_have_text("2")

    async def state() -> str:
        client = make_client(env["REDIS_URL"])
        try:
            delivery = await Outbox(client, q.namespace).get(hooks[1])
            return delivery.state if delivery is not None else "gone"
        finally:
            await client.aclose()

    assert in_thread(state) == "pending"


@pytest.mark.timeout(240)
def test_every_screen_live_in_a_browser(
    browser: Any,
    sync_queue: CaptchaQueue,
    processes: ProcessManager,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    q = sync_queue
    expect = playwright_sync.expect
    # Three dead letters, failed by hand before any worker runs.
    dead_ids = q.submit_many(
        [
            {
                "method": "userrecaptcha",
                "params": {"googlekey": "k", "pageurl": "https://example.test/login"},
                "max_attempts": 1,
            }
        ]
        * 3
    )
    claims: list[Claim] = []
    while len(claims) < 3:
        claims += q.claim("test-worker", 3 - len(claims), lease_s=30.0, block_s=0.5)
    for claim in claims:
        q.fail(claim, "ERROR_PROXY_CONNECTION_FAILED", "the proxy refused the connection", retry_in_s=0.01)

    sim = spawn(
        processes,
        ["simulator", "--port", "0", "--time-scale", SCALE, "--unsolvable-rate", "0.25", "--seed", "11"],
        subprocess_env,
        tmp_path / "sim.log",
    )
    sim_url = first_line(tmp_path / "sim.log", sim)
    worker_env = {**subprocess_env, "CAPTCHAAI_KEY": KEY, "CAPTCHAAI_URL": sim_url}
    spawn(
        processes,
        [
            "worker",
            "--processes",
            "1",
            "--concurrency",
            "10",
            "--time-scale",
            SCALE,
            "--solver-limit",
            "5",
            "--log-format",
            "json",
        ],
        worker_env,
        tmp_path / "worker.log",
    )
    dash = spawn(
        processes,
        ["dashboard", "--port", "0", "--refresh", "0.5"],
        subprocess_env,
        tmp_path / "dashboard.log",
    )
    base = first_line(tmp_path / "dashboard.log", dash)
    assert base.startswith("http://127.0.0.1:")

    ids = q.submit_many(
        [
            {
                "method": "turnstile",
                "params": {**TURNSTILE, "pageurl": f"https://example.test/{i}"},
                "priority": PRIORITY_CYCLE[i % 3],
                "idempotency_key": f"order-{i}",
                "max_attempts": 2,
            }
            for i in range(24)
        ]
    )
    results: list[Result] = []
    for task_id in ids:
        result = q.wait_result(task_id, timeout_s=60)
        assert result is not None, task_id
        results.append(result)
    results += [r for r in (q.get_result(t) for t in dead_ids) if r is not None]

    # The fleet paused with work waiting: the numbers stand still while they are compared.
    q.pause("maintenance window")
    waiting = q.submit_many(
        [
            {
                "method": "turnstile",
                "params": {**TURNSTILE, "pageurl": f"https://example.test/w{i}"},
                "priority": p,
            }
            for i, p in enumerate(["high", "high", "normal", "low"])
        ]
    )
    wait_until(lambda: q.stats().in_flight == 0, what="nothing in flight")

    page = browser.new_page(viewport={"width": 1280, "height": 860})
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    navigations: list[str] = []
    page.on(
        "framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None
    )

    def shot(name: str, *, full_page: bool = True) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)

    def stat(name: str) -> Any:
        return page.locator(f'[data-stat="{name}"]').first

    # -- overview: every number as stats --json says -------------------------------------------
    page.goto(base + "/")
    expect(stat("queued_total")).to_have_text("4")
    doc = cli_json(subprocess_env, "stats", "--json")
    for priority in PRIORITY_CYCLE:
        expect(stat(f"queued.{priority}")).to_have_text(str(doc["queued"][priority]))
    for name in (
        "queued_total",
        "delayed",
        "in_flight",
        "workers",
        "dead_letters",
        "submitted",
        "completed",
        "failed",
        "dead",
        "cancelled",
        "expired",
    ):
        expect(stat(name)).to_have_text(str(doc[name]))
    expect(stat("solver_slots")).to_have_text(f"{doc['solver_slots_used']} / {doc['solver_slots_limit']}")
    assert doc["workers"] == 1
    assert doc["dead_letters"] == 3
    assert doc["paused"] == "maintenance window"
    expect(page.locator("#fleet-paused")).to_contain_text("maintenance window")
    finished = doc["completed"] + doc["failed"] + doc["dead"]  # a dead letter's result is an error too
    assert finished == len(results)
    expect(page.locator('[data-rate="last hour"]')).to_be_visible()
    successes = sum(1 for r in results if r.ok)
    expect(page.locator('[data-success="last hour"]')).to_have_text(f"{successes / finished:.1%}")
    shot("overview")

    # Live: a submission shows up without a reload.
    navigations.clear()
    q.submit("turnstile", {**TURNSTILE, "pageurl": "https://example.test/late"}, priority="low")
    expect(stat("queued_total")).to_have_text("5")
    expect(stat("queued.low")).to_have_text(str(cli_json(subprocess_env, "stats", "--json")["queued"]["low"]))
    assert navigations == []

    # -- capacity ------------------------------------------------------------------------------
    page.goto(base + "/capacity")
    doc = cli_json(subprocess_env, "stats", "--json")
    expect(page.locator('[data-slots="default"]')).to_have_text(
        f"{doc['solver_slots_used']} / {doc['solver_slots_limit']}"
    )
    shot("capacity")

    # -- workers -------------------------------------------------------------------------------
    page.goto(base + "/workers")
    (entry,) = cli_json(subprocess_env, "workers", "--json")
    expect(stat("workers")).to_have_text("1")
    expect(page.locator("#workers")).to_contain_text(entry["id"])
    expect(page.locator("#workers")).to_contain_text(str(entry["info"]["pid"]))
    expect(page.locator("#drain-note")).to_contain_text("SIGTERM")
    shot("workers")

    # -- solver errors -------------------------------------------------------------------------
    page.goto(base + "/errors")
    errors = collections.Counter(
        (r.error_code, r.method, (r.account or "-").partition("/")[0]) for r in results if r.status == "error"
    )
    assert errors[("ERROR_PROXY_CONNECTION_FAILED", "userrecaptcha", "-")] == 3
    for (code, method, account), count in errors.items():
        expect(page.locator(f'[data-errors="{code}|{method}|{account}"]')).to_have_text(str(count))
    shot("errors")

    # -- latency -------------------------------------------------------------------------------
    page.goto(base + "/latency")
    by_priority = collections.Counter(r.priority for r in results if r.ok)
    for priority, count in by_priority.items():
        row = page.locator("#latency tbody tr", has_text=priority).filter(has_text="turnstile")
        expect(row.locator("td").nth(2)).to_have_text(str(count))
    shot("latency")

    # -- dead letters: browse, show one, requeue it (audited) ----------------------------------
    page.goto(base + "/dead-letters")
    expect(stat("dead_letters")).to_have_text("3")
    shot("dead-letters")
    page.goto(f"{base}/dead-letters/{dead_ids[0]}")
    expect(page.locator("#history")).to_contain_text("ERROR_PROXY_CONNECTION_FAILED")
    shot("dead-letter")
    page.click("#requeue-one")
    expect(page.locator(".flash")).to_contain_text(f"requeued {dead_ids[0]}")
    assert q.dead_letter(dead_ids[0]) is None
    assert q.status(dead_ids[0]) == "queued"
    assert cli_json(subprocess_env, "stats", "--json")["dead_letters"] == 2

    # -- task lookup by idempotency key ----------------------------------------------------------
    page.goto(base + "/tasks")
    page.fill('input[name="q"]', "order-4")
    page.click('button[type="submit"]:has-text("look up")')
    expect(page.locator("#task-status")).to_have_text("done")
    expect(page.locator("#task")).to_contain_text(ids[4])
    shot("task")

    # -- pause an account from the browser ------------------------------------------------------
    page.goto(base + "/pauses")
    page.fill("#pause-account", "acct-b")
    page.fill("#pause-reason", "balance top-up")
    page.click("#pause")
    expect(page.locator("#pauses")).to_contain_text("balance top-up")
    assert [p.ref for p in q.pause_state().accounts] == ["acct-b"]
    shot("pauses")

    # -- the event feed: results pushed while the page stays -------------------------------------
    page.goto(base + "/events")
    expect(page.locator("#event-rows tr").first).to_be_visible()
    page.wait_for_timeout(500)  # the EventSource is connected
    navigations.clear()
    q.resume()
    for task_id in waiting:
        expect(page.locator(f'#event-rows tr:has-text("{task_id}")')).to_be_visible(timeout=30_000)
    assert navigations == []
    shot("events", full_page=False)
    for task_id in waiting:
        finished_result = q.wait_result(task_id, timeout_s=60)
        assert finished_result is not None
        results.append(finished_result)

    accounts_screen(page, q, base, results, shot)
    webhooks_screen(page, q, base, subprocess_env, shot)

    # -- the audit screen shows what was done -----------------------------------------------------
    page.goto(base + "/audit")
    audit = page.locator("#audit")
    expect(audit).to_contain_text(dead_ids[0])
    expect(audit.locator("tr", has_text="requeue").filter(has_text=dead_ids[0])).to_contain_text("ok")
    expect(audit.locator("tr", has_text="pause").filter(has_text="acct-b")).to_contain_text("paused")
    shot("audit")
    assert [e.action for e in q.audit_log()] == ["webhook-retry", "pause", "requeue"]  # newest first

    violations = [m for m in console if "Content Security Policy" in m or "Refused" in m]
    assert violations == []
    page.close()


@pytest.mark.timeout(120)
def test_logins_and_roles_in_a_browser(
    browser: Any, processes: ProcessManager, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    expect = playwright_sync.expect
    operator, viewer = "operator-" + "o" * 24, "viewer-" + "v" * 24
    env = {
        **subprocess_env,
        "CAPTCHA_QUEUE_DASHBOARD_OPERATOR_TOKEN": operator,
        "CAPTCHA_QUEUE_DASHBOARD_VIEWER_TOKEN": viewer,
    }
    dash = spawn(processes, ["dashboard", "--port", "0"], env, tmp_path / "dashboard.log")
    base = first_line(tmp_path / "dashboard.log", dash)
    page = browser.new_page(viewport={"width": 1280, "height": 500})
    page.goto(base + "/dead-letters")
    expect(page).to_have_url(base + "/login")
    page.fill("#token", "not-the-token-at-all")
    page.click("#login")
    expect(page.locator(".flash")).to_have_text("wrong token")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "login.png"))

    page.fill("#token", viewer)
    page.click("#login")
    expect(page.locator("#role")).to_have_text("viewer")
    page.goto(base + "/pauses")
    expect(page.locator("#pauses")).to_be_visible()
    expect(page.locator("#pause")).to_have_count(0)  # a viewer gets no action forms
    page.click('button:has-text("log out")')
    expect(page).to_have_url(base + "/login")

    page.fill("#token", operator)
    page.click("#login")
    expect(page.locator("#role")).to_have_text("operator")
    page.goto(base + "/pauses")
    expect(page.locator("#pause")).to_have_count(1)
    for token in (operator, viewer):
        assert token not in page.content()
    assert operator not in (tmp_path / "dashboard.log").read_text()
    page.close()


@pytest.mark.timeout(120)
def test_the_overview_across_namespaces_in_a_browser(
    browser: Any,
    sync_queue: CaptchaQueue,
    processes: ProcessManager,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """``dashboard --namespaces a,b``: one row per namespace and the totals, as ``stats --namespaces
    --json`` has them; a row leads to that namespace's screens."""
    expect = playwright_sync.expect
    q = sync_queue
    other_ns = f"{q.namespace}-b"
    with CaptchaQueue(subprocess_env["REDIS_URL"], namespace=other_ns) as other:
        try:
            q.submit_many([{"method": "turnstile", "params": TURNSTILE, "priority": "high"}] * 3)
            other.submit_many([{"method": "turnstile", "params": TURNSTILE, "max_attempts": 1}] * 3)
            claims: list[Claim] = []
            while len(claims) < 2:
                claims += other.claim("test-worker", 2 - len(claims), lease_s=30.0, block_s=0.5)
            other.fail(claims[0], "ERROR_PROXY_CONNECTION_FAILED", "refused", retry_in_s=0.01)
            other.complete(claims[1], "token")
            other.pause("shard maintenance")
            names = f"{q.namespace},{other_ns}"
            dash = spawn(
                processes,
                ["dashboard", "--port", "0", "--refresh", "0.5", "--namespaces", names],
                subprocess_env,
                tmp_path / "dashboard.log",
            )
            base = first_line(tmp_path / "dashboard.log", dash)
            page = browser.new_page(viewport={"width": 1280, "height": 560})
            page.goto(base + "/")
            doc = cli_json(subprocess_env, "stats", "--namespaces", names, "--json")
            for ns in (q.namespace, other_ns):
                for field in ("queued_total", "delayed", "in_flight", "workers", "dead_letters"):
                    expect(page.locator(f'[data-ns="{ns}|{field}"]')).to_have_text(
                        str(doc["namespaces"][ns][field])
                    )
            for field in ("queued_total", "in_flight", "workers", "dead_letters"):
                expect(page.locator(f'[data-ns="total|{field}"]')).to_have_text(str(doc["totals"][field]))
            expect(page.locator(f'[data-ns="{other_ns}|paused"]')).to_have_text("shard maintenance")
            expect(page.locator('[data-ns="total|queued_total"]')).to_have_text("4")
            # Live: a submission to one namespace shows in its row and the totals without a reload.
            q.submit("turnstile", TURNSTILE)
            expect(page.locator('[data-ns="total|queued_total"]')).to_have_text("5")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "namespaces.png"), full_page=True)
            page.click(f'a.ns:has-text("{other_ns}")')
            expect(page).to_have_url(f"{base}/ns/{other_ns}/")
            expect(page.locator('[data-stat="queued_total"]').first).to_have_text("1")
            expect(page.locator("#fleet-paused")).to_contain_text("shard maintenance")
            page.click('nav a:has-text("Dead letters")')
            expect(page).to_have_url(f"{base}/ns/{other_ns}/dead-letters")
            expect(page.locator('[data-stat="dead_letters"]')).to_have_text("1")
            page.close()
        finally:
            cleanup = redis.Redis.from_url(subprocess_env["REDIS_URL"])
            try:
                keys = list(cleanup.scan_iter(match="{" + other_ns + "}*", count=1000))
                if keys:
                    cleanup.delete(*keys)
            finally:
                cleanup.close()
