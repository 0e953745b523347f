"""Solvers: the async interface workers call, and its backends.

* :class:`CaptchaAISolver`: the ``in.php`` / ``res.php`` protocol over aiohttp (CaptchaAI, 2captcha, any
  2captcha-compatible service behind a base URL, including ``captcha-queue simulator``).
* :class:`JsonApiSolver`: the ``createTask`` / ``getTaskResult`` protocol (CapSolver, Anti-Captcha,
  2captcha's API v2).
* :class:`InstantSolver`: answers at once, in process; for measuring the queue itself.

A provider *profile* (``PROFILES``: ``captchaai``, ``2captcha``, ``2captcha-v2``, ``capsolver``,
``anticaptcha``, ``generic-inphp``) says what differs between services: codes, task types, the thread
limit, the polling cadence. ``create_solver(kind, ...)`` builds a solver for a provider name or
``"instant"``.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import PollItem, PollOutcome, Solver
from .captchaai import DEFAULT_BASE_URL, CaptchaAISolver
from .codes import CODES, CodeInfo, error_for
from .instant import InstantSolver
from .jsonapi import JsonApiSolver
from .profiles import PROFILES, PROVIDER_NAMES, ProviderProfile, profile_for

__all__ = [
    "CODES",
    "DEFAULT_BASE_URL",
    "PROFILES",
    "PROVIDER_NAMES",
    "SOLVER_KINDS",
    "CaptchaAISolver",
    "CodeInfo",
    "InstantSolver",
    "JsonApiSolver",
    "PollItem",
    "PollOutcome",
    "ProviderProfile",
    "Solver",
    "create_solver",
    "error_for",
    "profile_for",
]

#: Every name ``create_solver`` (and ``captcha-queue worker --solver``) takes.
SOLVER_KINDS: tuple[str, ...] = (*PROVIDER_NAMES, "instant")


def create_solver(
    kind: str = "captchaai",
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    account: str = "default",
    time_scale: float = 1.0,
    thread_limit: int | None = None,
    **options: Any,
) -> Solver:
    """A solver by provider name (``PROVIDER_NAMES``) or ``instant``.

    A provider needs ``api_key``; ``base_url`` defaults to the provider's (``generic-inphp`` has none).
    ``thread_limit`` is the account's threads, required by providers without ``threadsinfo`` (every one
    but ``captchaai``): a worker passes its ``--solver-limit``. ``options`` go to the backend's
    constructor. Raises ConfigError for an unknown name, a missing key, URL or limit.
    """
    if kind == "instant":
        if thread_limit is not None:
            options.setdefault("threads", thread_limit)
        return InstantSolver(account=account, time_scale=time_scale, **options)
    if kind not in PROFILES:
        raise ConfigError(f"unknown solver {kind!r}; known: {', '.join(SOLVER_KINDS)}")
    profile = PROFILES[kind]
    if not api_key:
        env = "CAPTCHAAI_KEY"
        raise ConfigError(f"the {kind} solver needs an API key ({env})")
    if profile.protocol == "json":
        return JsonApiSolver(
            api_key,
            base_url,
            profile=profile,
            thread_limit=thread_limit,
            account=account,
            time_scale=time_scale,
            **options,
        )
    return CaptchaAISolver(
        api_key,
        base_url,
        profile=profile,
        thread_limit=thread_limit,
        account=account,
        time_scale=time_scale,
        **options,
    )
