"""The screens over the registry and the outbox (Accounts, Webhooks), and the overview across
namespaces (``dashboard --namespaces``).

Each reads through the queue's admin API (``accounts``, ``account_stats``, ``recent_results``), the
webhooks' ``Outbox`` and ``read_namespaces`` (the reading ``stats --namespaces`` prints): never raw
Redis. API keys are never read here: an account shows where its key is (``env:NAME`` or
``file:PATH#ENTRY``), the registry holds nothing more.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import InvalidArgument
from ..models import AccountSpec, AccountStats, Stats
from ..queue._namespaces import namespace_totals, read_namespaces
from ..queue._producer import AsyncCaptchaQueue
from ..webhooks import Delivery, Outbox
from . import _analysis as an
from ._auth import SessionStore, visit
from ._config import DashboardConfig
from ._feed import EventFeed
from ._html import ALL_NAMESPACES, Html, esc, form, join, layout, live, ms_clock, table
from ._views import Screens

__all__ = ["Dashboard", "NamespacesOverview", "ns_prefix"]

#: The most deliveries of each state the Webhooks screen lists.
WEBHOOKS_SHOWN = 200


def ns_prefix(namespace: str) -> str:
    """Where one namespace's screens are served when the dashboard serves several."""
    return f"/ns/{namespace}"


def shown_url(url: str) -> str:
    """A pingback URL without what may be a secret (credentials, query, fragment)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unreadable URL)"
    host = f"[{host}]" if ":" in host else host
    cut = "?…" if parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{cut}"


def scrubbed(text: str, url: str) -> str:
    """``text`` (a delivery's last error, which may quote its target) without the URL's query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    for secret in (parts.query, parts.fragment):
        if secret:
            text = text.replace(secret, "…")
    return text


class Dashboard(Screens):
    """Every screen of one namespace: ``Screens`` plus Accounts and Webhooks."""

    def __init__(
        self,
        queue: AsyncCaptchaQueue,
        feed: EventFeed,
        sessions: SessionStore,
        config: DashboardConfig,
        *,
        prefix: str = "",
    ) -> None:
        super().__init__(queue, feed, sessions, config, prefix=prefix)
        self.outbox = Outbox(queue.client, queue.namespace)

    # -- accounts ------------------------------------------------------------------------------
    async def accounts_screen(self, request: web.Request) -> web.Response:
        async def render() -> Html:
            specs = await self.q.accounts()
            stats = {s.name: s for s in await self.q.account_stats()}
            per_account = an.finished_per_account(await self._recent())
            rows = [self._account_row(spec, stats.get(spec.name), per_account) for spec in specs]
            registered = {spec.name for spec in specs}
            others = [
                [
                    name,
                    Html(f'<td class="num" data-acct="{esc(name)}|finished">{sum(c.values())}</td>'),
                    c["success"],
                    sum(c.values()) - c["success"],
                ]
                for name, c in per_account.items()
                if name not in registered
            ]
            return Html(
                table(
                    [
                        "account",
                        "provider",
                        "limit",
                        "priority",
                        "cost",
                        "key",
                        "methods",
                        "slots used / limit",
                        "workers",
                        "in flight",
                        "paused",
                        "balance",
                        "finished (last hour)",
                        "solved",
                    ],
                    rows,
                    ident="accounts",
                    empty="no account registered (captcha-queue accounts add)",
                )
                + '<p class="note">The key column says where workers read each key (an environment '
                "variable, or a secrets file and entry): the registry holds no key. Finished: the final "
                "results of the last hour naming the account (solved ones name theirs; a final error "
                "names none). Balance: as the account's live workers last read it (the service's units). "
                "Pause and resume accounts on the Pause / resume screen.</p>"
                + "<h2>Results of accounts not registered (last hour)</h2>"
                + table(
                    ["account", "finished", "solved", "other"],
                    others,
                    ident="other-accounts",
                    empty="none",
                )
            )

        return await self.screen(request, "Accounts", render)

    @staticmethod
    def _account_row(
        spec: AccountSpec, stats: AccountStats | None, per_account: dict[str, Counter[str]]
    ) -> list[object]:
        name = spec.name
        counts = per_account.get(name, Counter())

        def cell(field: str, value: object) -> Html:
            return Html(f'<td class="num" data-acct="{esc(name)}|{field}">{esc(value)}</td>')

        balance = "-"
        if stats is None:  # registered between the two reads
            slots, workers, in_flight, paused = "?", "?", "?", "?"
        else:
            limit = "?" if stats.slots_limit is None else str(stats.slots_limit)
            slots = f"{stats.slots_used} / {limit}"
            workers, in_flight = str(stats.workers), str(stats.in_flight)
            if stats.balance is not None:
                balance = f"{stats.balance:g}"
            paused = (
                "no"
                if stats.paused is None
                else f"{stats.paused}" + (f" ({stats.pause_code})" if stats.pause_code else "")
            )
        return [
            name,
            spec.provider,
            "reported by the service" if spec.limit is None else spec.limit,
            spec.priority,
            f"{spec.cost:g}",
            Html(f'<td class="key"><code>{esc(spec.key_source)}</code></td>'),
            ", ".join(spec.methods) or "all",
            cell("slots", slots),
            cell("workers", workers),
            cell("in_flight", in_flight),
            Html(f'<td data-acct="{esc(name)}|paused">{esc(paused)}</td>'),
            cell("balance", balance),
            cell("finished", sum(counts.values())),
            cell("solved", counts["success"]),
        ]

    # -- webhooks ------------------------------------------------------------------------------
    async def webhooks_screen(self, request: web.Request) -> web.Response:
        csrf = self._csrf(request)
        act = self._can_act(request)

        async def render() -> Html:
            pending, failed = await asyncio.gather(
                self.outbox.deliveries("pending", WEBHOOKS_SHOWN),
                self.outbox.deliveries("failed", WEBHOOKS_SHOWN),
            )
            parts = [
                Html(
                    f'<p>Pending: <b data-webhooks="pending">{len(pending)}</b>; failed: '
                    f'<b data-webhooks="failed">{len(failed)}</b>'
                    f"{f' (the newest {WEBHOOKS_SHOWN} of each shown)' if WEBHOOKS_SHOWN in (len(pending), len(failed)) else ''}"
                    ".</p>"
                )
            ]
            for state, found in (("pending", pending), ("failed", failed)):
                parts.append(Html(f"<h2>{state.capitalize()}</h2>"))
                parts.append(
                    table(
                        [
                            "task",
                            "to",
                            "format",
                            "result",
                            "attempts",
                            "created",
                            "last try",
                            "last answer",
                            "last error",
                            "next try" if state == "pending" else "why failed",
                            "",
                        ],
                        [self._delivery_row(d, csrf, act) for d in found],
                        ident=f"webhooks-{state}",
                        empty=f"no {state} delivery",
                    )
                )
            parts.append(
                Html(
                    '<p class="note">Deliveries of results to the pingback URLs tasks were submitted '
                    "with (captcha_queue.webhooks). The URL is shown without its query. Retry sends a "
                    "delivery again now, its age counted from now (as <code>captcha-queue webhooks "
                    "retry</code>); a deliverer must be running (the gateway's, or <code>webhooks "
                    "run</code>).</p>"
                )
            )
            return join(parts)

        return await self.screen(request, "Webhooks", render)

    def _delivery_row(self, d: Delivery, csrf: str | None, act: bool) -> list[object]:
        button = (
            form(
                self.url(f"/webhooks/{d.task}/retry"),
                Html('<button type="submit" class="retry">retry</button>'),
                csrf,
            )
            if act
            else ""
        )
        return [
            Html(f'<td><a href="{esc(self.prefix)}/tasks?q={esc(d.task)}">{esc(d.task)}</a></td>'),
            shown_url(d.url),
            d.format,
            d.status,
            Html(f'<td class="num" data-attempts="{esc(d.task)}">{d.attempts}</td>'),
            ms_clock(d.created_ms),
            ms_clock(d.last_try_ms),
            "-" if d.last_status is None else d.last_status,
            scrubbed(d.last_error or "-", d.url)[:200],
            ms_clock(d.next_ms) if d.state == "pending" else scrubbed(d.reason or "-", d.url),
            Html(f"<td>{button}</td>"),
        ]

    async def webhook_retry(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        try:
            ok = await self.outbox.retry(task_id)
        except InvalidArgument as exc:
            await self.audit(request, "webhook-retry", task_id[:200], f"refused: {exc}")
            return self.back(request, f"not retried: {exc}", "/webhooks")
        await self.audit(request, "webhook-retry", task_id, "retried" if ok else "no such delivery")
        message = f"delivery of {task_id} retried" if ok else f"{task_id}: no such delivery"
        return self.back(request, message, "/webhooks")


class NamespacesOverview:
    """The overview across the namespaces a dashboard serves: one row each and their totals, from
    ``read_namespaces`` (what ``stats --namespaces`` prints), each row linking to its screens."""

    def __init__(self, dashboards: dict[str, Dashboard], config: DashboardConfig) -> None:
        self.dashboards = dashboards
        self.config = config

    async def overview(self, request: web.Request) -> web.Response:
        inner = await self._render()
        url = str(request.rel_url.update_query(part="live"))
        section = live(url, self.config.refresh_s, inner)
        if request.query.get("part") == "live":
            return web.Response(text=section, content_type="text/html")
        session = visit(request).session
        flash = ""
        if session is not None and session.flash:
            flash, session.flash = session.flash, ""
        html = layout(
            title="All namespaces",
            path=ALL_NAMESPACES,
            body=section,
            namespace=", ".join(self.dashboards),
            role=visit(request).role,
            csrf=session.csrf if session is not None else None,
            flash=flash,
            auth=self.config.auth_required,
            overview=True,
        )
        return web.Response(text=html, content_type="text/html")

    async def _render(self) -> Html:
        first = next(iter(self.dashboards.values()))
        stats = await read_namespaces(first.q.client, list(self.dashboards))
        recents = await asyncio.gather(*(d._recent() for d in self.dashboards.values()))
        now_ms = await first.q.server_time_ms()
        rates = {
            ns: (an.throughput(events, now_ms, 60.0), an.throughput(events, now_ms, 3600.0))
            for ns, events in zip(self.dashboards, recents, strict=True)
        }
        rows = [self._row(ns, s, rates[ns]) for ns, s in stats.items()]
        t = namespace_totals(stats)
        minute = sum(r[0].per_min for r in rates.values())
        hour = sum(r[1].total for r in rates.values())
        rows.append(
            [
                Html('<td class="total"><b>total</b></td>'),
                *(
                    self._cell("total", k, t[k])
                    for k in ("queued_total", "delayed", "in_flight", "workers", "dead_letters")
                ),
                self._cell("total", "paused", ", ".join(t["paused"]) or "none"),
                self._cell("total", "per_min", f"{minute:.1f}"),
                self._cell("total", "results_hour", hour),
            ]
        )
        return table(
            [
                "namespace",
                "queued",
                "delayed",
                "in flight",
                "workers",
                "dead letters",
                "paused",
                "per min (last minute)",
                "results (last hour)",
            ],
            rows,
            ident="namespaces",
        ) + Html(
            '<p class="note">One row per namespace this dashboard serves (<code>--namespaces</code>), '
            "read as <code>captcha-queue stats --namespaces</code> reads them; throughput from each "
            "namespace's events stream. Each name leads to that namespace's screens; its actions are "
            "audited in its own audit stream.</p>"
        )

    @staticmethod
    def _cell(ns: str, field: str, value: object) -> Html:
        cls = "" if field == "paused" else ' class="num"'
        return Html(f'<td{cls} data-ns="{esc(ns)}|{esc(field)}">{esc(value)}</td>')

    def _row(self, ns: str, s: Stats, rates: Sequence[Any]) -> list[object]:
        link = Html(f'<td><a href="{esc(ns_prefix(ns))}/" class="ns">{esc(ns)}</a></td>')
        values = (
            ("queued_total", s.queued_total),
            ("delayed", s.delayed),
            ("in_flight", s.in_flight),
            ("workers", s.workers),
            ("dead_letters", s.dead_letters),
            ("paused", s.paused or "no"),
            ("per_min", f"{rates[0].per_min:.1f}"),
            ("results_hour", rates[1].total),
        )
        return [link, *(self._cell(ns, k, v) for k, v in values)]
