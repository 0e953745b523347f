"""The ``captcha-queue`` command line. Each group of commands lives in its own module."""

from __future__ import annotations

from . import server_cmds  # noqa: F401  (registers its commands)
from .app import cli, main

__all__ = ["cli", "main"]
