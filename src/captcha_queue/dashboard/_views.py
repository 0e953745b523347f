"""The screens and actions. Each reads and acts only through the queue's admin API (``AdminAPI`` and
the producer's ``status``/``get_result``/``listen_events``): never raw Redis.

Every screen is a full page; its live part is also served alone (``?part=live``) and reloads itself
through htmx. Actions are plain HTML forms (POST, the CSRF token in a hidden field), answered with a
redirect back to the screen and a one-line notice; each is written to the audit stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from ..errors import CaptchaQueueError, InvalidArgument
from ..models import PRIORITIES, DeadLetter, Result, Stats, TaskRecord, WorkerEntry
from ..queue._admin import RECENT_MAX
from ..queue._producer import AsyncCaptchaQueue
from . import _analysis as an
from ._auth import SessionStore, visit
from ._config import DashboardConfig
from ._feed import EventFeed, iterate
from ._html import Html, ago, clock, esc, form, join, layout, live, ms_clock, num, secs, table

__all__ = ["Screens"]

#: How long one shared read (the recent results, every worker...) is reused by every browser.
CACHE_S = 1.0
#: The most dead letters the screen lists and an action "requeue all matching" goes through.
DLQ_SCAN = 5000
#: Task parameters whose values are never shown (a proxy's credentials, a key someone passed).
_SECRET_PARAMS = ("key", "clientkey", "proxy", "password", "token", "secret", "apikey")
_PREVIEW = 160

EMPTY = Html("")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _mask_params(params: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for name, value in params.items():
        if any(word in name.lower() for word in _SECRET_PARAMS):
            shown[name] = "*** (hidden)"
        elif isinstance(value, str) and len(value) > _PREVIEW:
            shown[name] = f"{value[:_PREVIEW]}… ({len(value)} characters)"
        else:
            shown[name] = value
    return shown


def _pretty(value: Any) -> Html:
    text = json.dumps(msgspec.to_builtins(value), indent=2, ensure_ascii=False, default=str)
    return Html(f"<pre>{esc(text)}</pre>")


def _task_doc(task: Any) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(task)
    if isinstance(doc.get("params"), dict):
        doc["params"] = _mask_params(doc["params"])
    return doc


def _raw_doc(raw: str) -> Html:
    """A dead letter's raw entry: parsed and masked when it is JSON, else a cut preview."""
    try:
        decoded = json.loads(raw)
    except ValueError:
        return Html(f"<pre>{esc(raw[:2000])}</pre>")
    if isinstance(decoded, dict) and isinstance(decoded.get("params"), dict):
        decoded["params"] = _mask_params(decoded["params"])
    return _pretty(decoded)


class Screens:
    """The handlers of one namespace's screens, on one queue object (``queue``) and its event feed.

    ``prefix`` is where they are served: "" alone, ``/ns/<namespace>`` when the dashboard serves
    several namespaces (``DashboardConfig.namespaces``); every link and action goes through ``url``."""

    def __init__(
        self,
        queue: AsyncCaptchaQueue,
        feed: EventFeed,
        sessions: SessionStore,
        config: DashboardConfig,
        *,
        prefix: str = "",
    ) -> None:
        self.q = queue
        self.feed = feed
        self.sessions = sessions
        self.config = config
        self.prefix = prefix
        self._cache: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- shared reads --------------------------------------------------------------------------
    async def _cached(self, key: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """One read shared by every browser for CACHE_S (one Redis call however many watch)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            now = time.monotonic()
            if hit is not None and hit[0] > now:
                return hit[1]
            value = await read()
            self._cache[key] = (now + CACHE_S, value)
            return value

    async def _recent(self) -> list[tuple[str, Result]]:
        events: list[tuple[str, Result]] = await self._cached(
            "recent", lambda: self.q.recent_results(3600.0, RECENT_MAX)
        )
        return events

    def forget_cache(self) -> None:
        self._cache.clear()

    async def accounts(self) -> list[str]:
        workers = await self.q.workers(include_dead=True)
        names = set(self.config.accounts)
        for entry in workers:
            account = entry.info.get("account")
            if isinstance(account, str) and account:
                names.add(account.partition("/")[0])
        return sorted(names)

    def url(self, path: str) -> str:
        """``path`` of this namespace's screens, as the browser asks for it."""
        return self.prefix + path

    # -- rendering -----------------------------------------------------------------------------
    def page(self, request: web.Request, title: str, body: Html) -> web.Response:
        session = visit(request).session
        flash = ""
        if session is not None and session.flash:
            flash, session.flash = session.flash, ""
        html = layout(
            title=title,
            path=request.path,
            body=body,
            namespace=self.q.namespace,
            role=visit(request).role,
            csrf=session.csrf if session is not None else None,
            flash=flash,
            auth=self.config.auth_required,
            prefix=self.prefix,
            overview=bool(self.config.namespaces),
        )
        return web.Response(text=html, content_type="text/html")

    def _live(self, request: web.Request, inner: Html) -> Html:
        url = request.rel_url.update_query(part="live")
        return live(str(url), self.config.refresh_s, inner)

    async def screen(
        self,
        request: web.Request,
        title: str,
        render_live: Callable[[], Awaitable[Html]],
        extra: Html = EMPTY,
    ) -> web.Response:
        inner = await render_live()
        if request.query.get("part") == "live":
            return web.Response(text=self._live(request, inner), content_type="text/html")
        return self.page(request, title, Html(self._live(request, inner) + extra))

    def _csrf(self, request: web.Request) -> str | None:
        session = visit(request).session
        return session.csrf if session is not None else None

    def _can_act(self, request: web.Request) -> bool:
        session = visit(request).session
        return session is not None and session.can("operator")

    # -- overview ------------------------------------------------------------------------------
    async def overview(self, request: web.Request) -> web.Response:
        async def render() -> Html:
            stats, pauses, events = await asyncio.gather(self.q.stats(), self.q.pause_state(), self._recent())
            now_ms = pauses.now_ms
            return join([self._banners(stats, pauses), self._counts(stats), self._rates(events, now_ms)])

        return await self.screen(request, "Overview", render)

    def _banners(self, stats: Stats, pauses: Any) -> Html:
        parts: list[Html] = []
        if stats.queued_total + stats.delayed > 0 and stats.workers == 0:
            parts.append(
                Html(
                    f'<p class="banner alert" id="no-workers">{stats.queued_total + stats.delayed} tasks '
                    "wait and no worker is alive.</p>"
                )
            )
        fleet = pauses.fleet
        if fleet is not None:
            who = ", ".join(
                f"{name} {value}"
                for name, value in (
                    ("code", fleet.code),
                    ("account", fleet.account),
                    ("worker", fleet.worker),
                )
                if value
            )
            until = f", until {ms_clock(fleet.until_ms)}" if fleet.until_ms else ", until resumed"
            parts.append(
                Html(
                    f'<p class="banner alert" id="fleet-paused">The fleet is paused: {esc(fleet.reason)}'
                    f"{esc(f' ({who})' if who else '')}{esc(until)}.</p>"
                )
            )
        for pause in pauses.accounts:
            parts.append(
                Html(
                    f'<p class="banner warn account-paused">Account {esc(pause.ref)} is paused: '
                    f"{esc(pause.reason)} ({esc(pause.code or 'no code')}"
                    f"{esc(', by worker ' + pause.worker if pause.worker else '')}).</p>"
                )
            )
        return join(parts)

    def _counts(self, stats: Stats) -> Html:
        limit = "?" if stats.solver_slots_limit is None else str(stats.solver_slots_limit)
        rows: list[list[object]] = [
            [f"queued {p}", num(stats.queued.get(p, 0), f"queued.{p}")] for p in PRIORITIES
        ]
        rows += [
            ["queued (all)", num(stats.queued_total, "queued_total")],
            ["oldest queued", num(ago(stats.oldest_queued_age_s), "oldest_queued_age_s")],
            ["delayed (retry)", num(stats.delayed, "delayed")],
            ["in flight", num(stats.in_flight, "in_flight")],
            ["workers alive", num(stats.workers, "workers")],
            ["solver slots (default account)", num(f"{stats.solver_slots_used} / {limit}", "solver_slots")],
            ["dead letters held", num(stats.dead_letters, "dead_letters")],
        ]
        totals: list[list[object]] = [
            [name, num(getattr(stats, name), name)]
            for name in ("submitted", "completed", "failed", "dead", "cancelled", "expired")
        ]
        return Html(
            '<div class="grid"><div><h2>Now</h2>'
            + table(["", "value"], rows, ident="now")
            + "</div><div><h2>Since the data set began</h2>"
            + table(["", "count"], totals, ident="totals")
            + "</div></div>"
        )

    def _rates(self, events: list[tuple[str, Result]], now_ms: int) -> Html:
        rows = []
        for label, window in (("last minute", 60.0), ("last hour", 3600.0)):
            t = an.throughput(events, now_ms, window)
            rate = "-" if t.success_rate is None else f"{t.success_rate:.1%}"
            rows.append(
                [
                    label,
                    Html(f'<td class="num" data-rate="{esc(label)}">{t.per_min:.1f}</td>'),
                    t.total,
                    Html(f'<td class="num" data-success="{esc(label)}">{esc(rate)}</td>'),
                ]
            )
        note = (
            f"From the {len(events)} final results the events stream holds for the last hour"
            + (" (capped: older ones are gone)" if len(events) >= RECENT_MAX else "")
            + "."
        )
        return Html(
            "<h2>Throughput</h2>" + table(["window", "per min", "results", "success"], rows, ident="rates")
        ) + Html(f'<p class="note">{esc(note)}</p>')

    # -- capacity ------------------------------------------------------------------------------
    async def capacity(self, request: web.Request) -> web.Response:
        async def render() -> Html:
            accounts = await self._cached("accounts", self.accounts)
            usages = await asyncio.gather(*(self.q.slot_usage(a) for a in accounts))
            pauses = await self.q.pause_state()
            rows = []
            for usage in usages:
                limit = usage.effective if usage.effective is not None else usage.configured
                meter = (
                    Html(f'<meter min="0" max="{limit}" value="{min(usage.used, limit)}"></meter>')
                    if limit
                    else ""
                )
                if (
                    usage.effective is not None
                    and usage.configured is not None
                    and usage.effective < usage.configured
                ):
                    lowered = f"lowered to {usage.effective} of {usage.configured} (changed {ms_clock(usage.changed_ms)})"
                else:
                    lowered = "no"
                rows.append(
                    [
                        usage.account,
                        Html(
                            f'<td class="num" data-slots="{esc(usage.account)}">{usage.used} / {limit if limit is not None else "?"}</td>'
                        ),
                        Html(f"<td>{meter}</td>"),
                        usage.live,
                        usage.ghosts,
                        "-" if usage.configured is None else usage.configured,
                        "-" if usage.effective is None else usage.effective,
                        lowered,
                        Html(f'<td class="num" data-busy="{esc(usage.account)}">{usage.busy_answers}</td>'),
                    ]
                )
            head = [
                "account",
                "in use / limit",
                "",
                "live",
                "ghosts",
                "configured",
                "adaptive limit",
                "lowered",
                "busy answers",
            ]
            paused = [
                [p.ref, p.reason, p.code or "-", p.worker or "-", ms_clock(p.since_ms)]
                for p in pauses.accounts
            ]
            return Html(
                table(head, rows, ident="capacity")
                + '<p class="note">Ghosts: solves left running at the service by a worker that gave them up; '
                "they count until they must be over. The adaptive limit drops when the service answers busy "
                'and climbs back step by step. Busy answers: every "no free thread" answer the fleet got '
                "for the account (the workers' metric captcha_queue_solver_busy_total, per process).</p>"
                + "<h2>Paused accounts</h2>"
                + table(["account", "reason", "code", "worker", "since"], paused, ident="account-pauses")
            )

        return await self.screen(request, "Capacity", render)

    # -- workers -------------------------------------------------------------------------------
    async def workers(self, request: web.Request) -> web.Response:
        csrf, act = self._csrf(request), self._can_act(request)

        async def render() -> Html:
            entries = await self.q.workers(include_dead=True)
            rows = []
            for e in entries:
                info = e.info
                in_flight = info.get("in_flight", 0 if info else None)
                concurrency = info.get("concurrency")
                beat = f"in {e.heartbeat_in_s:.0f} s" if e.alive else f"lapsed {-e.heartbeat_in_s:.0f} s ago"
                started = info.get("started_at")
                started_s = started / 1000 if isinstance(started, int | float) and started > 1e11 else started
                rows.append(
                    [
                        Html(f'<td class="{"alive" if e.alive else "dead"}">{esc(e.id)}</td>'),
                        info.get("host", "-"),
                        info.get("pid", "-"),
                        info.get("version", "-"),
                        info.get("account", "-"),
                        "-"
                        if in_flight is None
                        else (f"{in_flight} / {concurrency}" if concurrency else in_flight),
                        beat,
                        clock(started_s) if isinstance(started_s, int | float) else "-",
                        self._drain_cell(e, csrf, act),
                    ]
                )
            alive = sum(1 for e in entries if e.alive)
            return Html(
                f'<p>Alive: <b data-stat="workers">{alive}</b> of {len(entries)} registered.</p>'
                + table(
                    ["id", "host", "pid", "version", "account", "in flight", "heartbeat", "started", "drain"],
                    rows,
                    ident="workers",
                )
            )

        why = Html(
            '<p class="note" id="drain-note">Drain (operators): at its next heartbeat the worker stops '
            "claiming, finishes what it holds (hands back what is still running after "
            "<code>--grace-s</code>), unregisters and exits 0; a child of <code>worker --processes P</code> "
            "is not restarted. The same as <code>captcha-queue workers drain ID</code>, or SIGTERM to its "
            "pid on its host. To stop every worker from claiming at once, pause the fleet.</p>"
        )
        return await self.screen(request, "Workers", render, why)

    def _drain_cell(self, e: WorkerEntry, csrf: str | None, act: bool) -> Html:
        if e.drain is not None:
            return Html(f'<td class="draining">draining: {esc(e.drain.reason[:80])}</td>')
        if not e.alive or not act:
            return Html("<td>-</td>")
        inner = Html(
            f'<input type="hidden" name="worker_id" value="{esc(e.id)}">'
            '<button type="submit" class="drain">drain</button>'
        )
        return Html(f"<td>{form(self.url('/workers/drain'), inner, csrf)}</td>")

    async def drain(self, request: web.Request) -> web.Response:
        data = await request.post()
        worker_id = str(data.get("worker_id", ""))
        reason = str(data.get("reason", "")).strip() or f"from the dashboard by {visit(request).actor}"
        try:
            ok = await self.q.drain_worker(worker_id, reason=reason)
        except InvalidArgument as exc:
            await self.audit(request, "drain", worker_id[:200], f"refused: {exc}", reason[:500])
            return self.back(request, f"not drained: {exc}", "/workers")
        await self.audit(
            request, "drain", worker_id, "requested" if ok else "refused: no live worker", reason
        )
        message = (
            f"drain requested for {worker_id}: it stops claiming at its next heartbeat"
            if ok
            else f"not drained: no live worker {worker_id}"
        )
        return self.back(request, message, "/workers")

    # -- solver errors -------------------------------------------------------------------------
    async def errors(self, request: web.Request) -> web.Response:
        async def render() -> Html:
            events = await self._recent()
            now_ms = await self.q.server_time_ms()
            starts, series = an.error_series(events, now_ms)
            head: list[object] = [
                "code",
                "method",
                "account",
                "last hour",
                *(time.strftime("%H:%M", time.gmtime(s / 1000)) for s in starts),
            ]
            rows = [
                [
                    Html(f'<td class="code">{esc(code)}</td>'),
                    method,
                    account,
                    Html(
                        f'<td class="num" data-errors="{esc(code)}|{esc(method)}|{esc(account)}">'
                        f"{sum(counts)}</td>"
                    ),
                    *counts,
                ]
                for (code, method, account), counts in series.items()
            ]
            return Html(
                table(head, rows, ident="errors", empty="no final errors in the last hour")
                + '<p class="note">Final errors per 5 minutes (UTC), from the events stream; retried '
                "errors are in each task's history (task lookup) and in the workers' metrics. The account "
                "is the one a result names: solved results name theirs; a final error names none (-), "
                "the Accounts screen counts each account's results.</p>"
            )

        return await self.screen(request, "Solver errors", render)

    # -- latency -------------------------------------------------------------------------------
    async def latency(self, request: web.Request) -> web.Response:
        async def render() -> Html:
            events = await self._recent()
            rows = []
            for r in an.latency_rows(events):
                cells: list[object] = [r.method, r.priority, r.count]
                for triple in (r.queue_wait, r.solve, r.end_to_end):
                    cells += [secs(v) for v in triple]
                rows.append(cells)
            head = ["method", "priority", "n"]
            for part in ("queue wait", "solve", "end to end"):
                head += [f"{part} p50", "p95", "p99"]
            return Html(
                table(head, rows, ident="latency", empty="no successful results in the last hour")
                + f'<p class="note">Successful results of the last hour ({len(events)} results read from '
                "the events stream). Queue wait: submitted to first claim; solve: first claim to the "
                "result; end to end: submitted to the result.</p>"
            )

        return await self.screen(request, "Latency", render)

    # -- dead letters --------------------------------------------------------------------------
    def _dlq_filter(self, request: web.Request | dict[str, str]) -> dict[str, str]:
        source = request.query if isinstance(request, web.Request) else request
        return {k: str(source.get(k, "")).strip()[:200] for k in ("q", "method", "code")}

    @staticmethod
    def _matches(letter: DeadLetter, flt: dict[str, str]) -> bool:
        method = letter.task.method if letter.task is not None else ""
        codes = {a.error_code or "" for a in letter.history}
        if flt["method"] and flt["method"] != method:
            return False
        if flt["code"] and flt["code"] not in codes:
            return False
        text = flt["q"].lower()
        return not text or text in f"{letter.id} {letter.reason} {' '.join(codes)}".lower()

    async def dead_letters(self, request: web.Request) -> web.Response:
        flt = self._dlq_filter(request)
        csrf = self._csrf(request)
        act = self._can_act(request)

        async def render() -> Html:
            letters = await self.q.dead_letters(DLQ_SCAN)
            shown = [d for d in letters if self._matches(d, flt)]
            rows = []
            for d in shown[:500]:
                last = d.history[-1] if d.history else None
                button = (
                    form(
                        self.url(f"/dead-letters/{d.id}/requeue"),
                        Html('<button type="submit">requeue</button>'),
                        csrf,
                    )
                    if act
                    else ""
                )
                rows.append(
                    [
                        Html(
                            f'<td><a href="{esc(self.prefix)}/dead-letters/{esc(d.id)}">{esc(d.id)}</a></td>'
                        ),
                        clock(d.dead_at),
                        d.task.method if d.task else "?",
                        d.task.priority if d.task else "?",
                        (last.error_code or "-") if last else "-",
                        len(d.history),
                        d.reason[:_PREVIEW],
                        Html(f"<td>{button}</td>"),
                    ]
                )
            return Html(
                f'<p>Held: <b data-stat="dead_letters">{len(letters)}</b>; matching: <b id="dlq-matching">{len(shown)}</b>'
                f"{' (first 500 shown)' if len(shown) > 500 else ''}.</p>"
                + table(
                    ["id", "dead at", "method", "priority", "last code", "attempts", "reason", ""],
                    rows,
                    ident="dead-letters",
                )
            )

        filter_form = form(
            self.url("/dead-letters"),
            Html(
                f'<label>text <input name="q" value="{esc(flt["q"])}"></label>'
                f'<label>method <input name="method" value="{esc(flt["method"])}"></label>'
                f'<label>error code <input name="code" value="{esc(flt["code"])}"></label>'
                '<button type="submit">filter</button>'
            ),
            None,
            cls="filters",
            method="get",
        )
        actions = Html("")
        if act:
            hidden = join(Html(f'<input type="hidden" name="{k}" value="{esc(v)}">') for k, v in flt.items())
            actions = Html(
                '<div class="actions">'
                + form(
                    self.url("/dead-letters/requeue"),
                    Html(
                        hidden + '<button type="submit" id="requeue-matching">requeue all matching</button>'
                    ),
                    csrf,
                )
                + form(
                    self.url("/dead-letters/purge"),
                    Html(
                        '<label>type PURGE to delete every dead letter <input name="confirm" autocomplete="off"></label>'
                        '<button type="submit" class="danger" id="purge">purge</button>'
                    ),
                    csrf,
                )
                + "</div>"
            )
        inner = await render()
        if request.query.get("part") == "live":
            return web.Response(text=self._live(request, inner), content_type="text/html")
        return self.page(request, "Dead letters", Html(filter_form + actions + self._live(request, inner)))

    async def dead_letter(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        letter = await self.q.dead_letter(task_id)
        if letter is None:
            raise web.HTTPNotFound(text=f"no dead letter {task_id}")
        csrf = self._csrf(request)
        parts = [
            table(
                ["", ""],
                [["id", letter.id], ["dead at", clock(letter.dead_at)], ["reason", letter.reason]],
                ident="letter",
            ),
        ]
        if self._can_act(request):
            parts.append(
                form(
                    self.url(f"/dead-letters/{letter.id}/requeue"),
                    Html('<button type="submit" id="requeue-one">requeue</button>'),
                    csrf,
                )
            )
        parts.append(Html("<h2>History</h2>") + self._history(letter.history))
        parts.append(Html("<h2>Task</h2>"))
        parts.append(
            _pretty(_task_doc(letter.task)) if letter.task is not None else Html("<p>unreadable: see raw</p>")
        )
        if letter.raw is not None:
            parts.append(Html("<h2>Raw entry</h2>") + _raw_doc(letter.raw))
        return self.page(request, f"Dead letter {task_id}", join(parts))

    @staticmethod
    def _history(history: list[Any]) -> Html:
        rows = [
            [
                a.attempt,
                a.worker_id or "-",
                clock(a.started_at),
                clock(a.ended_at),
                a.outcome,
                a.error_code or "-",
                (a.error_message or "")[:_PREVIEW],
            ]
            for a in history
        ]
        return table(
            ["attempt", "worker", "started", "ended", "outcome", "code", "message"], rows, ident="history"
        )

    async def requeue_one(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        ok = await self.q.requeue(task_id)
        message = (
            f"requeued {task_id}" if ok else f"{task_id}: no such dead letter, or its task is unreadable"
        )
        await self.audit(request, "requeue", task_id, "ok" if ok else "not requeued")
        # From the dead letter's own page: back to the list (the page is gone once it is requeued).
        own_page = request.headers.get("Referer", "").endswith(f"/dead-letters/{task_id}")
        return self.back(request, message, "/dead-letters", stay=not own_page)

    async def requeue_matching(self, request: web.Request) -> web.Response:
        form_data = await request.post()
        flt = self._dlq_filter({k: str(form_data.get(k, "")) for k in ("q", "method", "code")})
        letters = await self.q.dead_letters(DLQ_SCAN)
        matching = [d.id for d in letters if self._matches(d, flt)]
        requeued = 0
        for task_id in matching:
            requeued += bool(await self.q.requeue(task_id))
        described = ", ".join(f"{k}={v}" for k, v in flt.items() if v) or "all"
        await self.audit(request, "requeue-matching", described, f"{requeued} of {len(matching)} requeued")
        return self.back(
            request, f"requeued {requeued} of {len(matching)} matching dead letters", "/dead-letters"
        )

    async def purge(self, request: web.Request) -> web.Response:
        form_data = await request.post()
        if form_data.get("confirm") != "PURGE":
            await self.audit(request, "purge", "dead letters", "refused: not confirmed")
            return self.back(request, "not purged: type PURGE to confirm", "/dead-letters")
        count = await self.q.purge_dead()
        await self.audit(request, "purge", "dead letters", f"{count} deleted")
        return self.back(request, f"purged {count} dead letters", "/dead-letters")

    # -- task lookup ---------------------------------------------------------------------------
    async def tasks(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()[:300]
        body = [
            form(
                self.url("/tasks"),
                Html(
                    f'<label>task id or idempotency key <input name="q" value="{esc(query)}" size="40"></label><button type="submit">look up</button>'
                ),
                None,
                cls="filters",
                method="get",
            )
        ]
        if query:
            record, via = await self._lookup(query)
            if record is None:
                body.append(
                    Html(
                        f'<p id="not-found">No task with the id or idempotency key {esc(query)} (unknown, or its result expired).</p>'
                    )
                )
            else:
                body.append(self._record(record, via))
        return self.page(request, "Task lookup", join(body))

    async def _lookup(self, query: str) -> tuple[TaskRecord | None, str]:
        try:
            record = await self.q.task_record(query)
            if record is not None:
                return record, "id"
            task_id = await self.q.task_id_for(query)
        except InvalidArgument:
            return None, ""
        if task_id is None:
            return None, ""
        return await self.q.task_record(task_id), "idempotency key"

    def _record(self, record: TaskRecord, via: str) -> Html:
        rows: list[list[object]] = [
            ["id", record.id],
            ["found by", via],
            ["status", Html(f'<td id="task-status">{esc(record.status or "-")}</td>')],
        ]
        if record.task is not None:
            rows += [
                ["method", record.task.method],
                ["priority", record.task.priority],
                ["idempotency key", record.task.idempotency_key or "-"],
                ["submitted", clock(record.task.submitted_at)],
            ]
        state = record.state or {}
        rows += [["attempts", f"{state.get('attempts', '-')} of {state.get('max_attempts', '-')}"]]
        parts = [table(["", ""], rows, ident="task")]
        if record.result is not None:
            r = record.result
            solution = r.solution.text if r.solution is not None else ""
            parts.append(Html("<h2>Result</h2>"))
            parts.append(
                table(
                    ["", ""],
                    [
                        ["status", r.status],
                        ["finished", clock(r.finished_at)],
                        ["queue wait", secs(r.queue_wait_s)],
                        ["solve", secs(r.solve_s)],
                        ["error", f"{r.error_code or '-'} {r.error_message or ''}".strip()],
                        ["solution", solution[:_PREVIEW] + ("…" if len(solution) > _PREVIEW else "")],
                    ],
                    ident="result",
                )
            )
        parts.append(Html("<h2>History</h2>") + self._history(record.history))
        if record.dead_letter is not None:
            parts.append(
                Html(
                    f'<p>Dead-lettered: {esc(record.dead_letter.reason)} (<a href="{esc(self.prefix)}/dead-letters/{esc(record.id)}">dead letter</a>).</p>'
                )
            )
        if record.task is not None:
            parts.append(Html("<h2>Task</h2>") + _pretty(_task_doc(record.task)))
        return join(parts)

    # -- live events ---------------------------------------------------------------------------
    @staticmethod
    def event_row(event_id: str, r: Result) -> Html:
        detail = r.error_code or (
            r.solution.text[:40] + ("…" if len(r.solution.text) > 40 else "") if r.solution else ""
        )
        return Html(
            f'<tr class="event {esc(r.status)}" data-event="{esc(event_id)}"><td>{esc(ms_clock(an.event_ms(event_id)))}</td>'
            f"<td>{esc(r.id)}</td><td>{esc(r.method)}</td><td>{esc(r.priority)}</td><td>{esc(r.status)}</td>"
            f"<td>{esc(r.attempts)}</td><td>{esc(secs(r.finished_at - r.submitted_at))}</td><td>{esc(detail)}</td></tr>"
        )

    async def events(self, request: web.Request) -> web.Response:
        recent = list(self.feed.recent) or (await self.q.recent_results(3600.0, 50))
        rows = join(self.event_row(eid, r) for eid, r in recent[:50])
        head = join(
            Html(f"<th>{h}</th>")
            for h in (
                "written",
                "task",
                "method",
                "priority",
                "status",
                "attempts",
                "end to end",
                "solution / code",
            )
        )
        body = Html(
            '<p class="note">Every final result as it is written, pushed to this page (Server-Sent Events; '
            "one reader of the events stream serves every open browser).</p>"
            f'<table id="events"><thead><tr>{head}</tr></thead>'
            f'<tbody id="event-rows" hx-ext="sse" sse-connect="{esc(self.prefix)}/events/stream" sse-swap="result" hx-swap="afterbegin">'
            f"{rows}</tbody></table>"
        )
        return self.page(request, "Live events", body)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(b": connected\n\nretry: 2000\n\n")
        with self.feed.subscribe() as sub, contextlib.suppress(ConnectionResetError):
            async for event in iterate(sub, 15.0):  # until the browser goes away
                if event is None:
                    await response.write(b": keep-alive\n\n")
                    continue
                row = self.event_row(*event).replace("\n", " ")
                await response.write(f"event: result\nid: {event[0]}\ndata: {row}\n\n".encode())
        return response

    # -- pause / resume ------------------------------------------------------------------------
    async def pauses(self, request: web.Request) -> web.Response:
        csrf = self._csrf(request)
        act = self._can_act(request)

        async def render() -> Html:
            state = await self.q.pause_state()
            rows = []
            if state.fleet is not None:
                rows.append(self._pause_row("(the whole namespace)", state.fleet, "", csrf, act))
            for p in state.accounts:
                rows.append(self._pause_row(p.ref or "?", p, p.ref or "", csrf, act))
            return table(
                ["scope", "reason", "code", "by worker", "since", "until", ""],
                rows,
                ident="pauses",
                empty="nothing is paused",
            )

        extra = Html("")
        if act:
            accounts = join(Html(f'<option value="{esc(a)}">') for a in await self.accounts())
            extra = Html(
                "<h2>Pause</h2>"
                + form(
                    self.url("/pause"),
                    Html(
                        '<label>account (empty: the whole namespace) <input name="account" list="accounts" id="pause-account"></label>'
                        f'<datalist id="accounts">{accounts}</datalist>'
                        '<label>reason <input name="reason" required maxlength="500" id="pause-reason"></label>'
                        '<label>for seconds (empty: until resumed) <input name="for_s" inputmode="decimal"></label>'
                        '<button type="submit" id="pause">pause</button>'
                    ),
                    csrf,
                    cls="stacked",
                )
                + '<p class="note">An account is named as workers report it (name/key fingerprint) or by its name '
                "alone to resume. Workers of a paused account stop claiming; their solves in flight go on.</p>"
            )
        return await self.screen(request, "Pause / resume", render, extra)

    def _pause_row(self, scope: str, p: Any, account: str, csrf: str | None, act: bool) -> list[object]:
        hidden = Html(f'<input type="hidden" name="account" value="{esc(account)}">') if account else Html("")
        button = (
            form(self.url("/resume"), Html(hidden + '<button type="submit">resume</button>'), csrf)
            if act
            else ""
        )
        return [
            scope,
            p.reason,
            p.code or "-",
            p.worker or "-",
            ms_clock(p.since_ms),
            ms_clock(p.until_ms) if p.until_ms else "until resumed",
            Html(f"<td>{button}</td>"),
        ]

    async def pause(self, request: web.Request) -> web.Response:
        data = await request.post()
        account = str(data.get("account", "")).strip() or None
        reason = str(data.get("reason", "")).strip()
        raw_for = str(data.get("for_s", "")).strip()
        target = account or "namespace"
        try:
            for_s = float(raw_for) if raw_for else None
            pause, started = await self.q.pause(
                reason, for_s, account=account, worker=f"dashboard:{visit(request).actor}"
            )
        except (ValueError, InvalidArgument) as exc:
            message = (
                str(exc) if isinstance(exc, InvalidArgument) else f"for seconds: {raw_for!r} is not a number"
            )
            await self.audit(request, "pause", target, f"refused: {message}", reason)
            return self.back(request, f"not paused: {message}", "/pauses")
        await self.audit(request, "pause", target, "paused" if started else "already paused", reason)
        return self.back(request, f"paused {target}: {pause.reason}", "/pauses")

    async def resume(self, request: web.Request) -> web.Response:
        data = await request.post()
        account = str(data.get("account", "")).strip() or None
        target = account or "namespace and every account"
        try:
            lifted = await self.q.resume(account)
        except InvalidArgument as exc:
            await self.audit(request, "resume", target, f"refused: {exc}")
            return self.back(request, f"not resumed: {exc}", "/pauses")
        await self.audit(request, "resume", target, f"{len(lifted)} pauses lifted")
        return self.back(request, f"resumed {target}: {len(lifted)} pauses lifted", "/pauses")

    # -- audit ---------------------------------------------------------------------------------
    async def audit_screen(self, request: web.Request) -> web.Response:
        async def render() -> Html:
            entries = await self.q.audit_log(200)
            rows = [
                [ms_clock(e.at_ms), e.actor, e.role, e.action, e.target, e.outcome, e.detail] for e in entries
            ]
            return table(
                ["when", "who", "role", "action", "target", "outcome", "detail"],
                rows,
                ident="audit",
                empty="no action yet",
            )

        return await self.screen(request, "Audit", render)

    async def audit(
        self, request: web.Request, action: str, target: str, outcome: str, detail: str = ""
    ) -> None:
        try:
            await self.q.record_audit(
                actor=visit(request).actor,
                role=visit(request).role or "-",
                action=action,
                target=target,
                outcome=outcome,
                detail=detail,
            )
        except CaptchaQueueError as exc:  # the action is done: say that its record is missing
            session = visit(request).session
            if session is not None:
                session.flash = f"(not audited: {exc})"
            raise
        self.forget_cache()

    def back(self, request: web.Request, message: str, default: str, *, stay: bool = True) -> web.Response:
        session = visit(request).session
        if session is not None:
            session.flash = message
        referer = request.headers.get("Referer", "")
        target = self.url(default)
        own = f"{request.scheme}://{request.host}/"
        if stay and referer.startswith(own):
            target = "/" + referer[len(own) :]
        raise web.HTTPSeeOther(target)
