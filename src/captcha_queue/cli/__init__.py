"""The ``captcha-queue`` command line. Each group of commands lives in its own module."""

from __future__ import annotations

from . import demo_cmd, server_cmds  # noqa: F401  (registers their commands)
from .app import cli, main

__all__ = ["cli", "main"]
