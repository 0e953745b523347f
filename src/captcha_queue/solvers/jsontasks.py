"""Our methods to and from the JSON API's task types (``createTask`` / ``getTaskResult``).

Tasks in the queue keep the in.php names of ``protocol/methods.py`` (``googlekey``, ``pageurl``,
``proxy``...), so a task can be solved by any provider. This module turns a validated variant and its
params into the ``task`` object of a dialect (Anti-Captcha's, which 2captcha's API v2 shares, or
CapSolver's), and a ``solution`` object back into a :class:`Solution` of the shape the variant promises
(a token, OCR text, a JSON document, or the coordinates of clicks). Pure: no I/O.

Field names follow the services' documentation and official SDKs (see docs/providers.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..models import Solution
from ..protocol.methods import MethodSpec, ParamValue
from .codes import error_for
from .http import coordinates_of

__all__ = ["TaskType", "build_task", "solution_of", "task_type_for", "task_types"]

Dialect = str  # "anticaptcha" | "capsolver"


@dataclass(frozen=True)
class TaskType:
    """One task type: its name without and with a proxy, and our param -> its field."""

    proxyless: str | None
    proxied: str | None
    fields: Mapping[str, str]
    constants: Mapping[str, Any] = field(default_factory=dict)
    #: Solution fields holding the answer, in order; ``*``: the whole solution object (JSON answers).
    answer: tuple[str, ...] = ("gRecaptchaResponse", "token")
    post: Callable[[dict[str, Any]], dict[str, Any]] | None = None


_BROWSER = {"userAgent": "userAgent", "cookies": "cookies"}
_SITE = {"pageurl": "websiteURL", "googlekey": "websiteKey", "sitekey": "websiteKey"}
_BOOL_FIELDS = frozenset({"isInvisible", "phrase", "case", "math", "isEnterprise"})
_INT_FIELDS = frozenset({"numeric", "minLength", "maxLength", "rows", "columns", "version"})
_FLOAT_FIELDS = frozenset({"minScore", "angle"})


def _capsolver_turnstile(task: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: task.pop(k) for k in ("action", "cdata") if k in task}
    if metadata:
        task["metadata"] = metadata
    return task


_IMAGE_AC = TaskType(
    "ImageToTextTask",
    None,
    {
        "body": "body",
        "file": "body",
        "phrase": "phrase",
        "regsense": "case",
        "numeric": "numeric",
        "calc": "math",
        "min_len": "minLength",
        "max_len": "maxLength",
        "textinstructions": "comment",
    },
    answer=("text",),
)
_RECAPTCHA_V2_AC = TaskType(
    "RecaptchaV2TaskProxyless",
    "RecaptchaV2Task",
    {**_SITE, "invisible": "isInvisible", "data-s": "recaptchaDataSValue", **_BROWSER},
)
_RECAPTCHA_V2E_AC = TaskType(
    "RecaptchaV2EnterpriseTaskProxyless",
    "RecaptchaV2EnterpriseTask",
    {**_SITE, "data-s": "enterprisePayload", **_BROWSER},
)
_RECAPTCHA_V3_AC = TaskType(
    "RecaptchaV3TaskProxyless",
    None,
    {**_SITE, "min_score": "minScore", "action": "pageAction"},
    constants={"isEnterprise": False},
)
_ANTICAPTCHA: Mapping[str, TaskType] = {
    "image": _IMAGE_AC,
    "coordinates": TaskType(
        "ImageToCoordinatesTask",
        None,
        {"body": "body", "file": "body", "textinstructions": "comment"},
        constants={"mode": "points"},
        answer=("coordinates",),
    ),
    "recaptcha_v2": _RECAPTCHA_V2_AC,
    "recaptcha_v2_invisible": _RECAPTCHA_V2_AC,
    "recaptcha_v2_enterprise": _RECAPTCHA_V2E_AC,
    "recaptcha_v3": _RECAPTCHA_V3_AC,
    "recaptcha_v3_enterprise": TaskType(
        "RecaptchaV3TaskProxyless",
        None,
        {**_SITE, "min_score": "minScore", "action": "pageAction"},
        constants={"isEnterprise": True},
    ),
    "hcaptcha": TaskType(
        "HCaptchaTaskProxyless",
        "HCaptchaTask",
        {**_SITE, "invisible": "isInvisible", **_BROWSER},
    ),
    "funcaptcha": TaskType(
        "FunCaptchaTaskProxyless",
        "FunCaptchaTask",
        {"pageurl": "websiteURL", "publickey": "websitePublicKey", "surl": "funcaptchaApiJSSubdomain"}
        | {"data": "data", **_BROWSER},
        answer=("token",),
    ),
    "turnstile": TaskType(
        "TurnstileTaskProxyless",
        "TurnstileTask",
        {**_SITE, "action": "action", "data": "cData", **_BROWSER},
        answer=("token",),
    ),
    "geetest_v3": TaskType(
        "GeeTestTaskProxyless",
        "GeeTestTask",
        {
            "pageurl": "websiteURL",
            "gt": "gt",
            "challenge": "challenge",
            "api_server": "geetestApiServerSubdomain",
        }
        | _BROWSER,
        answer=("*",),
    ),
    "geetest_v4": TaskType(
        "GeeTestTaskProxyless",
        "GeeTestTask",
        {"pageurl": "websiteURL", "gt": "gt", "api_server": "geetestApiServerSubdomain", **_BROWSER},
        constants={"version": 4},
        answer=("*",),
    ),
    "amazon_waf": TaskType(
        "AmazonTaskProxyless",
        "AmazonTask",
        {
            **_SITE,
            "iv": "iv",
            "context": "context",
            "challenge_script": "challengeScript",
            "captcha_script": "captchaScript",
            **_BROWSER,
        },
        answer=("*",),
    ),
}
#: 2captcha's API v2 takes Anti-Captcha's task types, plus its own for the human-solved kinds.
_TWOCAPTCHA: Mapping[str, TaskType] = {
    **_ANTICAPTCHA,
    "coordinates": TaskType(
        "CoordinatesTask",
        None,
        {"body": "body", "file": "body", "textinstructions": "comment"},
        answer=("coordinates",),
    ),
    "grid": TaskType(
        "GridTask",
        None,
        {"body": "body", "file": "body", "instructions": "comment", "rows": "rows", "cols": "columns"},
        answer=("click",),
    ),
    "rotate": TaskType(
        "RotateTask",
        None,
        {"body": "body", "angle": "angle", "textinstructions": "comment"},
        answer=("rotate",),
    ),
    "textcaptcha": TaskType("TextCaptchaTask", None, {"textcaptcha": "comment"}, answer=("text",)),
    "datadome": TaskType(
        None,
        "DataDomeSliderTask",
        {"pageurl": "websiteURL", "captcha_url": "captchaUrl", "userAgent": "userAgent"},
        answer=("cookie",),
    ),
}
_CAPSOLVER: Mapping[str, TaskType] = {
    "image": TaskType("ImageToTextTask", None, {"body": "body", "file": "body"}, answer=("text",)),
    "recaptcha_v2": TaskType(
        "ReCaptchaV2TaskProxyLess", "ReCaptchaV2Task", {**_SITE, "invisible": "isInvisible", **_BROWSER}
    ),
    "recaptcha_v2_invisible": TaskType(
        "ReCaptchaV2TaskProxyLess", "ReCaptchaV2Task", {**_SITE, "invisible": "isInvisible", **_BROWSER}
    ),
    "recaptcha_v2_enterprise": TaskType(
        "ReCaptchaV2EnterpriseTaskProxyLess", "ReCaptchaV2EnterpriseTask", {**_SITE, **_BROWSER}
    ),
    "recaptcha_v3": TaskType(
        "ReCaptchaV3TaskProxyLess", "ReCaptchaV3Task", {**_SITE, "action": "pageAction", **_BROWSER}
    ),
    "recaptcha_v3_enterprise": TaskType(
        "ReCaptchaV3EnterpriseTaskProxyLess",
        "ReCaptchaV3EnterpriseTask",
        {**_SITE, "action": "pageAction", **_BROWSER},
    ),
    "turnstile": TaskType(
        "AntiTurnstileTaskProxyLess",
        None,
        {**_SITE, "action": "action", "data": "cdata"},
        answer=("token",),
        post=_capsolver_turnstile,
    ),
    "funcaptcha": TaskType(
        "FunCaptchaTaskProxyLess",
        None,
        {"pageurl": "websiteURL", "publickey": "websitePublicKey", "surl": "funcaptchaApiJSSubdomain"}
        | {"data": "data"},
        answer=("token",),
    ),
    "geetest_v3": TaskType(
        "GeeTestTaskProxyLess",
        None,
        {
            "pageurl": "websiteURL",
            "gt": "gt",
            "challenge": "challenge",
            "api_server": "geetestApiServerSubdomain",
        },
        answer=("*",),
    ),
    "geetest_v4": TaskType(
        "GeeTestTaskProxyLess",
        None,
        {"pageurl": "websiteURL", "gt": "captchaId", "api_server": "geetestApiServerSubdomain"},
        answer=("*",),
    ),
    "amazon_waf": TaskType(
        "AntiAwsWafTaskProxyLess",
        "AntiAwsWafTask",
        {
            "pageurl": "websiteURL",
            "sitekey": "awsKey",
            "iv": "awsIv",
            "context": "awsContext",
            "challenge_script": "awsChallengeJS",
        },
        answer=("*",),
    ),
    "datadome": TaskType(
        None,
        "DatadomeSliderTask",
        {"pageurl": "websiteURL", "captcha_url": "captchaUrl", "userAgent": "userAgent"},
        answer=("cookie",),
    ),
}

_DIALECTS: Mapping[str, Mapping[str, TaskType]] = {
    "anticaptcha": _ANTICAPTCHA,
    "2captcha": _TWOCAPTCHA,
    "capsolver": _CAPSOLVER,
}


def task_types(dialect: Dialect) -> Mapping[str, TaskType]:
    """Variant name -> task type, for a dialect (``anticaptcha``, ``2captcha`` or ``capsolver``)."""
    return _DIALECTS[dialect]


def task_type_for(dialect: Dialect, spec: MethodSpec) -> TaskType | None:
    name = spec.name.removesuffix("_file")
    return _DIALECTS[dialect].get(name)


def _convert(name: str, value: ParamValue) -> Any:
    if name in _BOOL_FIELDS:
        return str(value).strip() not in ("", "0", "false", "False")
    if name in _INT_FIELDS:
        try:
            return int(float(value))
        except ValueError:
            return value
    if name in _FLOAT_FIELDS:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _proxy(params: Mapping[str, ParamValue], dialect: Dialect) -> dict[str, Any]:
    """``user:pass@host:port`` + ``proxytype`` as the dialect spells a proxy."""
    raw = str(params["proxy"]).strip()
    kind = str(params.get("proxytype", "HTTP")).strip().lower()
    login = password = ""
    if "@" in raw:
        credentials, raw = raw.rsplit("@", 1)
        login, _, password = credentials.partition(":")
    host, _, port = raw.rpartition(":")
    if dialect == "capsolver":
        parts = [kind, host, port] + ([login, password] if login else [])
        return {"proxy": ":".join(parts)}
    out: dict[str, Any] = {
        "proxyType": kind,
        "proxyAddress": host,
        "proxyPort": int(port) if port.isdigit() else port,
    }
    if login:
        out |= {"proxyLogin": login, "proxyPassword": password}
    return out


def build_task(dialect: Dialect, spec: MethodSpec, params: Mapping[str, ParamValue]) -> dict[str, Any]:
    """The ``task`` object for a validated variant; TaskRejected when the dialect has no such type."""
    task_type = task_type_for(dialect, spec)
    if task_type is None:
        raise error_for("ERROR_TASK_NOT_SUPPORTED", f"no {dialect} task type for {spec.name} tasks")
    proxied = bool(params.get("proxy"))
    name = task_type.proxied if proxied and task_type.proxied else task_type.proxyless
    if name is None:  # only a proxied type exists (DataDome): the proxy is required by validation too
        if not proxied:
            raise error_for("INVALID_TASK", f"{spec.name} tasks need a proxy")
        name = task_type.proxied
    task: dict[str, Any] = {"type": name}
    for ours, theirs in task_type.fields.items():
        if ours in params and str(params[ours]).strip() != "":
            task[theirs] = _convert(theirs, params[ours])
    task.update(task_type.constants)
    if proxied and name == task_type.proxied:
        task.update(_proxy(params, dialect))
    if task_type.post is not None:
        task = task_type.post(task)
    return task


def solution_of(dialect: Dialect, spec: MethodSpec, solution: Any) -> Solution:
    """The Solution in a ``solution`` object, in the shape the variant promises."""
    if not isinstance(solution, dict) or not solution:
        raise error_for("BAD_RESPONSE", "the task is ready but its solution is empty")
    task_type = task_type_for(dialect, spec)
    answer = task_type.answer if task_type is not None else ("gRecaptchaResponse", "token", "text")
    user_agent = solution.get("userAgent") or solution.get("user_agent")
    ua = str(user_agent) if user_agent else None
    if spec.name.startswith("coordinates"):
        points = coordinates_of(solution.get("coordinates", solution))
        return Solution(text=json.dumps(points, separators=(",", ":")), user_agent=ua, data=points)
    if "*" in answer:
        data = {k: v for k, v in solution.items() if k not in ("userAgent", "user_agent")}
        return Solution(text=json.dumps(data, separators=(",", ":")), user_agent=ua, data=data)
    for name in answer:
        value = solution.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, dict | list):
            return Solution(text=json.dumps(value, separators=(",", ":")), user_agent=ua, data=value)
        return Solution(text=str(value), user_agent=ua)
    raise error_for("BAD_RESPONSE", f"the solution has none of {', '.join(answer)}")
