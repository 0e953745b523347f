"""Provider profiles: what differs between CaptchaAI, 2captcha, CapSolver, Anti-Captcha and other services.

A :class:`ProviderProfile` is data, no I/O: the base URL, the protocol (``inphp``: ``in.php`` /
``res.php``; ``json``: ``createTask`` / ``getTaskResult``), the task variants the service solves, what
each of its codes means (the same policies as ``codes.py``: retry, busy, pause the account, fail the
task), how the fleet's thread limit is found (``threadsinfo``, or a limit the operator must configure)
and the polling cadence. The sources of each claim are listed in docs/providers.md.

The codes that matter most, because the services disagree on them:

* ``ERROR_ZERO_BALANCE``: CaptchaAI bills by threads and sends it for "no free thread" (busy); every
  other service sends it for "no money" (the account is paused until its balance is positive again,
  which the breaker's probe sees through ``getbalance`` / ``getBalance``).
* ``ERROR_NO_SLOT_AVAILABLE``: busy everywhere (the bid is too low, or the service's queue is full).
* a wrong key: ``ERROR_WRONG_USER_KEY`` / ``ERROR_KEY_DOES_NOT_EXIST`` (in.php, Anti-Captcha, 2captcha's
  JSON API) or ``ERROR_KEY_DENIED_ACCESS`` (CapSolver): an AccountError that stops the account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError
from ..protocol.methods import VARIANTS
from ..protocol.tasktypes import task_type_for
from .codes import CODES, CodeInfo

__all__ = [
    "PROFILES",
    "PROVIDER_NAMES",
    "Protocol",
    "ProviderProfile",
    "TaskDialect",
    "ThreadLimit",
    "profile_for",
    "render_task_types",
]

Protocol = Literal["inphp", "json"]
#: How createTask names and shapes tasks: Anti-Captcha's, 2captcha's API v2 (Anti-Captcha's task types
#: plus its own for human-solved kinds) or CapSolver's.
TaskDialect = Literal["anticaptcha", "2captcha", "capsolver"]
#: ``threadsinfo``: the account tells its threads; ``configured``: the operator must give the limit.
ThreadLimit = Literal["threadsinfo", "configured"]


@dataclass(frozen=True)
class ProviderProfile:
    name: str
    title: str
    protocol: Protocol
    #: None: no public default (generic-inphp): the base URL must be configured.
    base_url: str | None
    #: Every code the service sends, with its policy (the base table plus this service's meanings).
    codes: Mapping[str, CodeInfo]
    #: The ``MethodSpec`` names (variants) the service solves.
    variants: frozenset[str]
    thread_limit: ThreadLimit
    #: Seconds between polls of one task (None: the method's own interval).
    poll_interval_s: float | None = None
    #: The key's length when the service documents one (checked before any request), else None.
    key_length: int | None = None
    #: Whether the account pays per solve (so a zero balance means "no money").
    bills_per_solve: bool = True
    task_dialect: TaskDialect | None = None
    #: Sources for docs/providers.md (documentation pages and SDK files).
    sources: tuple[str, ...] = field(default=(), repr=False)

    @property
    def requires_limit(self) -> bool:
        """True when the service has no ``threadsinfo``: a worker needs ``--solver-limit``."""
        return self.thread_limit == "configured"

    def supports(self, variant: str) -> bool:
        return variant in self.variants


def _table(base: Mapping[str, CodeInfo], *rows: CodeInfo) -> Mapping[str, CodeInfo]:
    merged = dict(base)
    merged.update({row.code: row for row in rows})
    return merged


# -- code tables ----------------------------------------------------------------------------------

#: 2captcha's in.php / res.php: the same codes as CaptchaAI's, but ERROR_ZERO_BALANCE is no money.
TWOCAPTCHA_CODES = _table(
    CODES,
    CodeInfo("ERROR_ZERO_BALANCE", "stop_fleet", "the account has no funds (top it up)"),
    CodeInfo("ERROR_NO_SLOT_AVAILABLE", "busy", "the bid is too low or the account's queue is too long", 5.0),
    CodeInfo("ERROR_IP_BLOCKED", "pause_fleet", "this IP is banned for improper use of the API", 300.0),
    CodeInfo("ERROR_NO_SUCH_METHOD", "fail_task", "the service has no such method"),
    CodeInfo("ERROR_NO_SUCH_CAPCHA_ID", "fail_task", "unknown or expired task id"),
)

#: createTask / getTaskResult errors of Anti-Captcha and of 2captcha's API v2 (the same list).
JSON_API_CODES = _table(
    TWOCAPTCHA_CODES,
    CodeInfo("ERROR_KEY_DOES_NOT_EXIST", "stop_fleet", "the API key is unknown"),
    CodeInfo("ERROR_IP_NOT_ALLOWED", "stop_fleet", "this IP is not on the account's trusted list"),
    CodeInfo("ERROR_ACCOUNT_SUSPENDED", "stop_fleet", "the account is suspended"),
    CodeInfo("ERROR_CAPTCHA_UNSOLVABLE", "fresh_solve", "the workers could not solve it"),
    CodeInfo("ERROR_BAD_DUPLICATES", "fail_task", "not enough matching answers (100% accuracy mode)"),
    CodeInfo("ERROR_IMAGE_TYPE_NOT_SUPPORTED", "fail_task", "the image type is not supported"),
    CodeInfo("ERROR_TASK_ABSENT", "fail_task", "createTask was called without a task"),
    CodeInfo("ERROR_TASK_NOT_SUPPORTED", "fail_task", "the service does not support this task type"),
    CodeInfo("ERROR_INCORRECT_SESSION_DATA", "fail_task", "values the task needs are missing"),
    CodeInfo("ERROR_RECAPTCHA_INVALID_SITEKEY", "fail_task", "the site key is invalid"),
    CodeInfo("ERROR_RECAPTCHA_INVALID_DOMAIN", "fail_task", "the site key does not belong to the domain"),
    CodeInfo("ERROR_RECAPTCHA_TIMEOUT", "fresh_solve", "the solve timed out at the service"),
    CodeInfo("ERROR_PROXY_CONNECT_REFUSED", "retry", "the task's proxy refused the connection", 5.0),
    CodeInfo("ERROR_PROXY_CONNECT_TIMEOUT", "retry", "the task's proxy timed out", 5.0),
    CodeInfo("ERROR_PROXY_READ_TIMEOUT", "retry", "the task's proxy timed out", 5.0),
    CodeInfo("ERROR_PROXY_BANNED", "fail_task", "the task's proxy is banned by the target"),
    CodeInfo("ERROR_PROXY_TRANSPARENT", "fail_task", "the task's proxy is transparent"),
)

#: CapSolver's errorCode list (its spelling of UNAVALIABLE is the service's).
CAPSOLVER_CODES = _table(
    JSON_API_CODES,
    CodeInfo("ERROR_KEY_DENIED_ACCESS", "stop_fleet", "the API key is wrong or has no access"),
    CodeInfo("ERROR_KEY_TEMP_BLOCKED", "pause_fleet", "the API key is blocked for a while", 300.0),
    CodeInfo("ERROR_ZERO_BALANCE", "stop_fleet", "the account has no funds (top it up)"),
    CodeInfo("ERROR_SETTLEMENT_FAILED", "stop_fleet", "the task could not be paid for (check the balance)"),
    CodeInfo("ERROR_SERVICE_UNAVALIABLE", "retry", "the service is temporarily unavailable", 5.0),
    CodeInfo("ERROR_RATE_LIMIT", "busy", "request rate limit", 5.0),
    CodeInfo("ERROR_INVALID_TASK_DATA", "fail_task", "the task's data is invalid"),
    CodeInfo("ERROR_BAD_REQUEST", "retry", "the service refused the request", 5.0),
    CodeInfo("ERROR_TASKID_INVALID", "fail_task", "unknown or expired task id"),
    CodeInfo("ERROR_TASK_TIMEOUT", "fresh_solve", "the service did not solve it in time"),
    CodeInfo("ERROR_CAPTCHA_SOLVE_FAILED", "fresh_solve", "the service could not solve it"),
    CodeInfo("ERROR_UNKNOWN_QUESTION", "fail_task", "the question of the image task is not supported"),
)

# -- variant tables -------------------------------------------------------------------------------

_RECAPTCHA = frozenset(
    {
        "recaptcha_v2",
        "recaptcha_v2_invisible",
        "recaptcha_v2_enterprise",
        "recaptcha_v3",
        "recaptcha_v3_enterprise",
    }
)
CAPTCHAAI_VARIANTS = frozenset(
    {
        "image",
        "image_file",
        "grid",
        "grid_file",
        "bls",
        *_RECAPTCHA,
        "turnstile",
        "cloudflare_challenge",
        "geetest_v3",
        "geetest_v4",
        "captchafox",
        "friendly_captcha",
        "lemin",
    }
)
TWOCAPTCHA_VARIANTS = frozenset(
    {
        "image",
        "image_file",
        "grid",
        "grid_file",
        "coordinates",
        "coordinates_file",
        "rotate",
        "textcaptcha",
        *_RECAPTCHA,
        "hcaptcha",
        "funcaptcha",
        "turnstile",
        "geetest_v3",
        "geetest_v4",
        "amazon_waf",
        "datadome",
        "captchafox",
        "friendly_captcha",
        "lemin",
    }
)
#: The task types the JSON client maps (protocol/tasktypes.py), per dialect and service.
# 2captcha's JSON API takes the same kinds as its in.php, images as base64 only (no file uploads).
TWOCAPTCHA_V2_VARIANTS = frozenset(v for v in TWOCAPTCHA_VARIANTS if not v.endswith("_file"))
ANTICAPTCHA_VARIANTS = frozenset(
    {
        "image",
        "coordinates",
        *_RECAPTCHA,
        "hcaptcha",
        "funcaptcha",
        "turnstile",
        "geetest_v3",
        "geetest_v4",
        "amazon_waf",
    }
)
CAPSOLVER_VARIANTS = frozenset(
    {
        "image",
        "recaptcha_v2",
        "recaptcha_v2_invisible",
        "recaptcha_v2_enterprise",
        "recaptcha_v3",
        "recaptcha_v3_enterprise",
        "turnstile",
        "geetest_v3",
        "geetest_v4",
        "amazon_waf",
        "datadome",
        "funcaptcha",
    }
)
#: generic-inphp: every in.php variant this package knows (the service answers for the rest).
GENERIC_VARIANTS = CAPTCHAAI_VARIANTS | TWOCAPTCHA_VARIANTS

PROFILES: Mapping[str, ProviderProfile] = {
    "captchaai": ProviderProfile(
        name="captchaai",
        title="CaptchaAI",
        protocol="inphp",
        base_url="https://ocr.captchaai.com",
        codes=CODES,
        variants=CAPTCHAAI_VARIANTS,
        thread_limit="threadsinfo",
        key_length=32,
        bills_per_solve=False,
        sources=(
            "https://docs.captchaai.com/api/api-error-handling",
            "captchaai==1.0.1 (PyPI): captchaai/core/registry.py, captchaai/client.py",
        ),
    ),
    "2captcha": ProviderProfile(
        name="2captcha",
        title="2captcha (in.php / res.php)",
        protocol="inphp",
        base_url="https://2captcha.com",
        codes=TWOCAPTCHA_CODES,
        variants=TWOCAPTCHA_VARIANTS,
        thread_limit="configured",
        poll_interval_s=5.0,
        key_length=32,
        sources=(
            "https://2captcha.com/api-docs/error-codes",
            "2captcha/2captcha-python: twocaptcha/api.py, twocaptcha/solver.py",
        ),
    ),
    "2captcha-v2": ProviderProfile(
        name="2captcha-v2",
        title="2captcha (API v2: createTask / getTaskResult)",
        protocol="json",
        base_url="https://api.2captcha.com",
        codes=JSON_API_CODES,
        variants=TWOCAPTCHA_V2_VARIANTS,
        thread_limit="configured",
        poll_interval_s=5.0,
        key_length=32,
        task_dialect="2captcha",
        sources=(
            "https://2captcha.com/api-docs/error-codes",
            "https://2captcha.com/api-docs/other-methods",
        ),
    ),
    "capsolver": ProviderProfile(
        name="capsolver",
        title="CapSolver",
        protocol="json",
        base_url="https://api.capsolver.com",
        codes=CAPSOLVER_CODES,
        variants=CAPSOLVER_VARIANTS,
        thread_limit="configured",
        poll_interval_s=3.0,
        task_dialect="capsolver",
        sources=(
            "https://docs.capsolver.com/guide/api-error",
            "https://docs.capsolver.com/guide/api-gettaskresult",
            "https://docs.capsolver.com/guide/api-createtask",
            "capsolver==1.0.1 (PyPI): capsolver/__init__.py, capsolver/api_requestor.py",
        ),
    ),
    "anticaptcha": ProviderProfile(
        name="anticaptcha",
        title="Anti-Captcha",
        protocol="json",
        base_url="https://api.anti-captcha.com",
        codes=JSON_API_CODES,
        variants=ANTICAPTCHA_VARIANTS,
        thread_limit="configured",
        poll_interval_s=3.0,
        key_length=32,
        task_dialect="anticaptcha",
        sources=(
            "https://anti-captcha.com/apidoc/errors",
            "https://anti-captcha.com/apidoc/methods/getTaskResult",
            "https://anti-captcha.com/apidoc/methods/reportIncorrectImageCaptcha",
            "anti-captcha/anticaptcha-python: anticaptchaofficial/antinetworking.py",
        ),
    ),
    "generic-inphp": ProviderProfile(
        name="generic-inphp",
        title="Any 2captcha-compatible in.php service",
        protocol="inphp",
        base_url=None,
        codes=TWOCAPTCHA_CODES,
        variants=GENERIC_VARIANTS,
        thread_limit="configured",
        poll_interval_s=5.0,
        sources=("https://2captcha.com/api-docs/error-codes",),
    ),
}

PROVIDER_NAMES: tuple[str, ...] = tuple(PROFILES)


def profile_for(name: str | ProviderProfile) -> ProviderProfile:
    """The profile called ``name`` (a profile passes through); ConfigError names the known ones."""
    if isinstance(name, ProviderProfile):
        return name
    profile = PROFILES.get(name) if isinstance(name, str) else None
    if profile is None:
        raise ConfigError(f"unknown solver provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")
    return profile


def render_task_types() -> str:
    """docs/providers.md's table (``<!-- provider-task-types -->``): each variant, and per profile
    whether it solves it (in.php) or the task type it sends (JSON: ``protocol/tasktypes.py``)."""
    variants = [
        v for v in VARIANTS if not v.endswith("_file") and any(p.supports(v) for p in PROFILES.values())
    ]
    lines = [
        "| our method (variant) | " + " | ".join(f"`{name}`" for name in PROFILES) + " |",
        "| --- |" + " --- |" * len(PROFILES),
    ]
    for variant in variants:
        cells = []
        for profile in PROFILES.values():
            task_type = task_type_for(profile.task_dialect, variant) if profile.task_dialect else None
            if not profile.supports(variant):
                cells.append("")
            elif task_type is None:
                cells.append("yes")
            else:
                cells.append(" / ".join(f"`{n}`" for n in (task_type.proxyless, task_type.proxied) if n))
        lines.append(f"| `{variant}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
