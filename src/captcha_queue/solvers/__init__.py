"""Solvers: the async interface workers call, and its backends.

* :class:`CaptchaAISolver`: the CaptchaAI ``in.php`` / ``res.php`` protocol over aiohttp (any
  2captcha-compatible service behind a base URL, including ``captcha-queue simulator``).
* :class:`InstantSolver`: answers at once, in process; for measuring the queue itself.

``create_solver(kind, ...)`` builds one by name (``"captchaai"`` or ``"instant"``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import PollItem, PollOutcome, Solver
from .captchaai import DEFAULT_BASE_URL, CaptchaAISolver
from .codes import CODES, CodeInfo, error_for
from .instant import InstantSolver

__all__ = [
    "CODES",
    "DEFAULT_BASE_URL",
    "SOLVER_KINDS",
    "CaptchaAISolver",
    "CodeInfo",
    "InstantSolver",
    "PollItem",
    "PollOutcome",
    "Solver",
    "create_solver",
    "error_for",
]

SOLVER_KINDS: tuple[str, ...] = ("captchaai", "instant")


def create_solver(
    kind: str = "captchaai",
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    account: str = "default",
    time_scale: float = 1.0,
    **options: Any,
) -> Solver:
    """A solver by name. ``captchaai`` needs ``api_key``; ``options`` go to the backend's constructor."""
    if kind == "instant":
        return InstantSolver(account=account, time_scale=time_scale, **options)
    if kind == "captchaai":
        if not api_key:
            raise ConfigError("the captchaai solver needs an API key (CAPTCHAAI_KEY)")
        return CaptchaAISolver(
            api_key, base_url or DEFAULT_BASE_URL, account=account, time_scale=time_scale, **options
        )
    raise ConfigError(f"unknown solver {kind!r}; known: {', '.join(SOLVER_KINDS)}")
