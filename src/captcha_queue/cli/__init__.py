"""The ``captcha-queue`` command line. Each group of commands lives in its own module."""

from __future__ import annotations

from . import (  # noqa: F401  (registers their commands)
    accounts_cmds,
    admin_cmds,
    dashboard_cmd,
    demo_cmd,
    doctor_cmd,
    gateway_cmd,
    reports_cmds,
    server_cmds,
    simulator_cmd,
    task_cmds,
    webhooks_cmds,
    worker_cmd,
)
from .app import cli, main

__all__ = ["cli", "main"]
