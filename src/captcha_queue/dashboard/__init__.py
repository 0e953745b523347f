"""``captcha-queue dashboard``: a web dashboard over the queue's admin API.

Server-rendered HTML with htmx (vendored in ``static/``, nothing from a CDN) and Server-Sent Events
for the live event feed, served by aiohttp. It reads and acts only through ``AsyncCaptchaQueue``'s
admin API; see docs/operations.md ("Dashboard") and ``_app`` for the security it enforces.
"""

from __future__ import annotations

from ._app import CSP, PAGE_CLIENT_NAME, make_app, serve
from ._config import DEFAULT_PORT, DashboardConfig, read_token_file
from ._feed import READER_NAME

__all__ = [
    "CSP",
    "DEFAULT_PORT",
    "PAGE_CLIENT_NAME",
    "READER_NAME",
    "DashboardConfig",
    "make_app",
    "read_token_file",
    "serve",
]
