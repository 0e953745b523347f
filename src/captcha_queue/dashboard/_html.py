"""Server-side HTML: the page layout and small builders. Every value goes through ``esc``; pages carry
no inline script or style (the Content-Security-Policy forbids both), only the vendored htmx files.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from html import escape

__all__ = [
    "ALL_NAMESPACES",
    "NAV",
    "Html",
    "ago",
    "clock",
    "esc",
    "form",
    "layout",
    "live",
    "ms_clock",
    "num",
    "secs",
    "table",
]


class Html(str):
    """Markup that is already escaped (``esc`` leaves it as it is). Joined with ``+`` to markup or to
    literal markup text it stays markup: never add a value that came from outside (``esc`` it)."""

    __slots__ = ()

    def __add__(self, other: str) -> Html:
        return Html(str.__add__(self, other))

    def __radd__(self, other: str) -> Html:
        return Html(str.__add__(other, self))


def esc(value: object) -> Html:
    if isinstance(value, Html):
        return value
    return Html(escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object]) -> Html:
    return Html("".join(esc(p) for p in parts))


#: (path, label) of every screen, in the order of the navigation bar.
NAV: tuple[tuple[str, str], ...] = (
    ("/", "Overview"),
    ("/capacity", "Capacity"),
    ("/workers", "Workers"),
    ("/errors", "Solver errors"),
    ("/latency", "Latency"),
    ("/accounts", "Accounts"),
    ("/dead-letters", "Dead letters"),
    ("/tasks", "Task lookup"),
    ("/events", "Live events"),
    ("/pauses", "Pause / resume"),
    ("/webhooks", "Webhooks"),
    ("/audit", "Audit"),
)
#: The overview across namespaces (``dashboard --namespaces``), above every namespace's screens.
ALL_NAMESPACES = "/"

_HTMX_CONFIG = json.dumps(
    {
        "includeIndicatorStyles": False,
        "allowEval": False,
        "allowScriptTags": False,
        "selfRequestsOnly": True,
        "historyCacheSize": 0,
    }
)


def layout(
    *,
    title: str,
    path: str,
    body: Html,
    namespace: str,
    role: str | None,
    csrf: str | None,
    flash: str = "",
    auth: bool = False,
    prefix: str = "",
    overview: bool = False,
) -> Html:
    """A whole page. ``prefix``: where the namespace's screens are (``/ns/<name>`` when the dashboard
    serves several, with ``overview`` adding the link to the overview across them)."""
    headers = esc(json.dumps({"X-CSRF-Token": csrf})) if csrf else ""
    links = [(prefix + p, label) for p, label in NAV] if prefix or not overview else []
    if overview:
        links.insert(0, (ALL_NAMESPACES, "All namespaces"))
    nav = join(
        Html(f'<a href="{esc(p)}"{" aria-current=page" if p == path else ""}>{esc(label)}</a>')
        for p, label in links
    )
    who = ""
    if role is not None:
        logout = form("/logout", Html('<button type="submit">log out</button>'), csrf) if auth else ""
        who = Html(
            f'<span class="who">namespace <b>{esc(namespace)}</b> · role <b id="role">{esc(role)}</b>{logout}</span>'
        )
    notice = Html(f'<p class="flash" role="status">{esc(flash)}</p>') if flash else ""
    return Html(
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)} · captcha-queue</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="htmx-config" content="{esc(_HTMX_CONFIG)}">'
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/htmx.min.js"></script>'
        '<script src="/static/sse.min.js"></script>'
        f"</head><body{f' hx-headers={chr(34)}{headers}{chr(34)}' if headers else ''}>"
        f'<header><span class="brand">captcha-queue</span><nav>{nav}</nav>{who}</header>'
        f"<main><h1>{esc(title)}</h1>{notice}{body}</main></body></html>"
    )


def live(url: str, refresh_s: float, inner: Html, ident: str = "live") -> Html:
    """A section that reloads itself from ``url`` every ``refresh_s`` seconds (htmx, no script)."""
    return Html(
        f'<section id="{esc(ident)}" class="live" hx-get="{esc(url)}" '
        f'hx-trigger="every {refresh_s:g}s" hx-swap="outerHTML">{inner}</section>'
    )


def form(action: str, inner: Html, csrf: str | None, *, cls: str = "inline", method: str = "post") -> Html:
    token = (
        Html(f'<input type="hidden" name="csrf" value="{esc(csrf)}">') if csrf and method == "post" else ""
    )
    return Html(f'<form class="{esc(cls)}" method="{method}" action="{esc(action)}">{token}{inner}</form>')


def table(
    head: Sequence[object], rows: Iterable[Sequence[object]], *, ident: str = "", empty: str = "none"
) -> Html:
    th = join(Html(f"<th>{esc(h)}</th>") for h in head)
    body = [Html("<tr>" + "".join(_td(c) for c in row) + "</tr>") for row in rows]
    if not body:
        body = [Html(f'<tr><td colspan="{len(head)}" class="empty">{esc(empty)}</td></tr>')]
    attr = f' id="{esc(ident)}"' if ident else ""
    return Html(f"<table{attr}><thead><tr>{th}</tr></thead><tbody>{join(body)}</tbody></table>")


def _td(cell: object) -> str:
    if isinstance(cell, Html) and cell.startswith("<td"):
        return cell
    return f"<td>{esc(cell)}</td>"


def num(value: object, stat: str) -> Html:
    """A table cell holding a number the tests compare with ``stats --json`` (``data-stat``)."""
    return Html(f'<td class="num" data-stat="{esc(stat)}">{esc(value)}</td>')


def secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def clock(epoch_s: float | None) -> str:
    if not epoch_s:
        return "-"
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ms_clock(epoch_ms: int | None) -> str:
    return clock(epoch_ms / 1000) if epoch_ms else "-"
