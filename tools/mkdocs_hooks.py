"""mkdocs hooks: generated reference sections replace their markers at build time, so they never drift.

- ``<!-- cli-reference -->``: every command, option and default, from the click commands.
- ``<!-- worker-options -->``: the worker's flags, variables, defaults and units, from ``WorkerSettings``.
- ``<!-- queue-options -->``: a queue object's settings, from ``QueueConfig``.
- ``<!-- webhook-options -->``: the webhook deliverer's settings, from ``WebhookSettings``.
- ``<!-- gateway-options -->``: the gateway's flags, from ``GatewaySettings``.
- ``<!-- task-types -->``: the JSON API task types the gateway takes, from ``protocol/tasktypes.py``.
- ``<!-- provider-task-types -->``: what each provider profile solves and the task type it sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captcha_queue.cli.reference import render
from captcha_queue.gateway import GatewaySettings
from captcha_queue.options import render_table
from captcha_queue.protocol.tasktypes import markdown_table
from captcha_queue.queue._producer import QueueConfig
from captcha_queue.solvers.profiles import render_task_types
from captcha_queue.webhooks import WebhookSettings
from captcha_queue.worker import WorkerSettings

__all__ = ["MARKERS", "on_page_markdown"]

MARKERS: dict[str, Callable[[], str]] = {
    "<!-- cli-reference -->": render,
    "<!-- worker-options -->": lambda: render_table(WorkerSettings),
    "<!-- queue-options -->": lambda: render_table(QueueConfig, command_line=False),
    "<!-- webhook-options -->": lambda: render_table(WebhookSettings),
    "<!-- gateway-options -->": lambda: render_table(GatewaySettings),
    "<!-- task-types -->": markdown_table,
    "<!-- provider-task-types -->": render_task_types,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for marker, produce in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, produce())
    return markdown
