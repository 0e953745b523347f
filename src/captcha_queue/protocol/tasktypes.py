"""The JSON API's task types (``createTask``'s ``task.type``), in one table read both ways.

Tasks in the queue keep the in.php names of ``protocol/methods.py`` (``googlekey``, ``pageurl``,
``proxy``...), so any provider can solve any task. Each :class:`TaskType` row says, for one provider
*dialect* (Anti-Captcha's, 2captcha's API v2, CapSolver's) and one of our variants, how that
provider names the task (without and with a proxy), which task field holds which of our params,
and how its ``solution`` object carries the answer. Every user of the JSON API reads this table:

* the gateway (inbound): a client's ``task`` -> our method and params (:func:`parse_task`, over every
  dialect), and a finished task's :class:`Solution` -> the ``solution`` object that provider returns
  for that type (:func:`write_solution`);
* the JSON API solver (outbound): our variant and params -> the provider's ``task``
  (:func:`build_task`), and its ``solution`` object -> our Solution (:func:`read_solution`);
* the simulator's JSON API (inbound, one dialect), and the docs' compatibility tables.

Field names follow the services' documentation and official SDKs (sources in docs/providers.md). A
field name with a dot is nested (``enterprisePayload.s``, ``metadata.action``). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InvalidTask
from ..models import Solution
from .methods import VARIANTS, ParamValue

__all__ = [
    "DIALECTS",
    "GATEWAY_DIALECTS",
    "Dialect",
    "DialectName",
    "Parsed",
    "Shape",
    "TaskType",
    "accepted_types",
    "build_task",
    "markdown_table",
    "parse_task",
    "read_solution",
    "task_type_for",
    "write_solution",
]

DialectName = Literal["anticaptcha", "2captcha", "capsolver"]
#: How a ``solution`` object carries the answer:
#: ``value``: in each of the ``answer`` fields (read: the first present);
#: ``object``: the whole object is the answer (GeeTest, AWS WAF, Lemin), kept as ``Solution.data``;
#: ``points``: ``coordinates`` as ``[{"x": .., "y": ..}]``; ``pairs``: ``coordinates`` as ``[[x, y]]``;
#: ``number``: a number in the first ``answer`` field (a rotation angle).
Shape = Literal["value", "object", "points", "pairs", "number"]
ProxyStyle = Literal["fields", "string"]

_BOOL_FIELDS = frozenset({"isInvisible", "phrase", "case", "math", "isEnterprise"})
_INT_FIELDS = frozenset({"numeric", "minLength", "maxLength", "rows", "columns", "version", "proxyPort"})
_FLOAT_FIELDS = frozenset({"minScore", "angle"})
#: Fields a solution may carry besides the answer (never part of an ``object`` answer).
_USER_AGENT_FIELDS = ("userAgent", "user_agent")
#: Read when a solution lacks the type's own answer fields (services add aliases over time).
_FALLBACK_ANSWER = ("gRecaptchaResponse", "token", "text")

#: The in.php params a variant implies (its friendly name's fixed params), set when a task of that
#: type is parsed (``RecaptchaV3TaskProxyless`` is ``userrecaptcha`` with ``version=v3``).
_IMPLIED: Mapping[str, Mapping[str, str]] = {
    "recaptcha_v2_enterprise": {"enterprise": "1"},
    "recaptcha_v3": {"version": "v3"},
    "recaptcha_v3_enterprise": {"version": "v3", "enterprise": "1"},
    "geetest_v4": {"version": "4"},
    "coordinates": {"coordinatescaptcha": "1"},
    "grid": {"img_type": "recaptcha"},
}


@dataclass(frozen=True)
class TaskType:
    """One provider's task type for one of our variants."""

    variant: str
    proxyless: str | None
    proxied: str | None
    #: our param -> the task's field (``a.b``: field ``b`` of object ``a``).
    fields: Mapping[str, str]
    #: Fields always sent; a task whose value differs is not of this row (``isEnterprise``, ``version``).
    constants: Mapping[str, Any] = field(default_factory=dict)
    answer: tuple[str, ...] = ("gRecaptchaResponse",)
    shape: Shape = "value"
    #: Other names clients send for this type (accepted, never sent).
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name of this type, the sent ones first."""
        return tuple(n for n in (self.proxyless, self.proxied, *self.aliases) if n)

    @property
    def method(self) -> str:
        """Our wire method (``userrecaptcha``, ``base64``...)."""
        return VARIANTS[self.variant].wire_method

    @property
    def implied(self) -> Mapping[str, str]:
        return _IMPLIED.get(self.variant, {})


@dataclass(frozen=True)
class Dialect:
    """How one provider's ``createTask`` names and shapes tasks."""

    name: DialectName
    title: str
    #: ``fields``: proxyType/proxyAddress/proxyPort/proxyLogin/proxyPassword; ``string``:
    #: ``proxy: "type:host:port[:login:password]"`` (CapSolver).
    proxy: ProxyStyle
    #: our variant -> its task type
    types: Mapping[str, TaskType]


@dataclass(frozen=True)
class Parsed:
    """A client's ``task`` read through the table: our method and params, and the row that read it."""

    dialect: DialectName
    task_type: TaskType
    name: str
    method: str
    params: dict[str, str]


# -- the table ------------------------------------------------------------------------------------

_BROWSER = {"userAgent": "userAgent", "cookies": "cookies"}
_RC = {"pageurl": "websiteURL", "googlekey": "websiteKey"}
_SK = {"pageurl": "websiteURL", "sitekey": "websiteKey"}
_IMAGE_FIELDS = {
    "body": "body",
    "phrase": "phrase",
    "regsense": "case",
    "numeric": "numeric",
    "calc": "math",
    "min_len": "minLength",
    "max_len": "maxLength",
    "textinstructions": "comment",
}
_FUNCAPTCHA = {
    "pageurl": "websiteURL",
    "publickey": "websitePublicKey",
    "surl": "funcaptchaApiJSSubdomain",
    "data": "data",
}
_GEETEST = {"pageurl": "websiteURL", "gt": "gt", "challenge": "challenge"}
_AMAZON = {
    **_SK,
    "iv": "iv",
    "context": "context",
    "challenge_script": "challengeScript",
    "captcha_script": "captchaScript",
}
_DATADOME = {"pageurl": "websiteURL", "captcha_url": "captchaUrl", "userAgent": "userAgent"}


def _ac_recaptcha_v2(variant: str) -> TaskType:
    return TaskType(
        variant,
        "RecaptchaV2TaskProxyless",
        "RecaptchaV2Task",
        {**_RC, "invisible": "isInvisible", "data-s": "recaptchaDataSValue", **_BROWSER},
        aliases=("NoCaptchaTaskProxyless", "NoCaptchaTask"),
    )


def _ac_recaptcha_v3(variant: str, enterprise: bool) -> TaskType:
    return TaskType(
        variant,
        "RecaptchaV3TaskProxyless",
        None,
        {**_RC, "min_score": "minScore", "action": "pageAction"},
        constants={"isEnterprise": enterprise},
    )


_ANTICAPTCHA_TYPES: Mapping[str, TaskType] = {
    "image": TaskType("image", "ImageToTextTask", None, _IMAGE_FIELDS, answer=("text",)),
    "coordinates": TaskType(
        "coordinates",
        "ImageToCoordinatesTask",
        None,
        {"body": "body", "textinstructions": "comment"},
        constants={"mode": "points"},
        answer=("coordinates",),
        shape="pairs",
    ),
    "recaptcha_v2": _ac_recaptcha_v2("recaptcha_v2"),
    "recaptcha_v2_invisible": _ac_recaptcha_v2("recaptcha_v2_invisible"),
    "recaptcha_v2_enterprise": TaskType(
        "recaptcha_v2_enterprise",
        "RecaptchaV2EnterpriseTaskProxyless",
        "RecaptchaV2EnterpriseTask",
        {**_RC, "data-s": "enterprisePayload.s", **_BROWSER},
    ),
    "recaptcha_v3": _ac_recaptcha_v3("recaptcha_v3", False),
    "recaptcha_v3_enterprise": _ac_recaptcha_v3("recaptcha_v3_enterprise", True),
    "hcaptcha": TaskType(
        "hcaptcha", "HCaptchaTaskProxyless", "HCaptchaTask", {**_SK, "invisible": "isInvisible", **_BROWSER}
    ),
    "funcaptcha": TaskType(
        "funcaptcha",
        "FunCaptchaTaskProxyless",
        "FunCaptchaTask",
        {**_FUNCAPTCHA, **_BROWSER},
        answer=("token",),
    ),
    "turnstile": TaskType(
        "turnstile",
        "TurnstileTaskProxyless",
        "TurnstileTask",
        {**_SK, "action": "action", "data": "cData", **_BROWSER},
        answer=("token",),
    ),
    "geetest_v3": TaskType(
        "geetest_v3",
        "GeeTestTaskProxyless",
        "GeeTestTask",
        {**_GEETEST, "api_server": "geetestApiServerSubdomain", **_BROWSER},
        shape="object",
    ),
    "geetest_v4": TaskType(
        "geetest_v4",
        "GeeTestTaskProxyless",
        "GeeTestTask",
        {"pageurl": "websiteURL", "gt": "gt", "api_server": "geetestApiServerSubdomain", **_BROWSER},
        constants={"version": 4},
        shape="object",
    ),
    "amazon_waf": TaskType(
        "amazon_waf", "AmazonTaskProxyless", "AmazonTask", {**_AMAZON, **_BROWSER}, shape="object"
    ),
}


def _tc_recaptcha_v2(variant: str) -> TaskType:
    return TaskType(
        variant,
        "RecaptchaV2TaskProxyless",
        "RecaptchaV2Task",
        {**_RC, "invisible": "isInvisible", "data-s": "recaptchaDataSValue", **_BROWSER},
        answer=("gRecaptchaResponse", "token"),
    )


def _tc_recaptcha_v3(variant: str, enterprise: bool) -> TaskType:
    return TaskType(
        variant,
        "RecaptchaV3TaskProxyless",
        None,
        {**_RC, "min_score": "minScore", "action": "pageAction"},
        constants={"isEnterprise": enterprise},
        answer=("gRecaptchaResponse", "token"),
        aliases=("RecaptchaV3Task",),
    )


#: 2captcha's API v2 takes Anti-Captcha's task types (its reCAPTCHA and hCaptcha answers carry the
#: token twice, as ``gRecaptchaResponse`` and ``token``), plus its own for the human-solved kinds.
_TWOCAPTCHA_TYPES: Mapping[str, TaskType] = {
    **_ANTICAPTCHA_TYPES,
    "coordinates": TaskType(
        "coordinates",
        "CoordinatesTask",
        None,
        {"body": "body", "textinstructions": "comment"},
        answer=("coordinates",),
        shape="points",
    ),
    "grid": TaskType(
        "grid",
        "GridTask",
        None,
        {"body": "body", "instructions": "comment", "rows": "rows", "cols": "columns"},
        answer=("click",),
    ),
    "rotate": TaskType(
        "rotate",
        "RotateTask",
        None,
        {"body": "body", "angle": "angle", "textinstructions": "comment"},
        answer=("rotate",),
        shape="number",
    ),
    "textcaptcha": TaskType(
        "textcaptcha", "TextCaptchaTask", None, {"textcaptcha": "comment"}, answer=("text",)
    ),
    "recaptcha_v2": _tc_recaptcha_v2("recaptcha_v2"),
    "recaptcha_v2_invisible": _tc_recaptcha_v2("recaptcha_v2_invisible"),
    "recaptcha_v2_enterprise": TaskType(
        "recaptcha_v2_enterprise",
        "RecaptchaV2EnterpriseTaskProxyless",
        "RecaptchaV2EnterpriseTask",
        {**_RC, "data-s": "enterprisePayload.s", **_BROWSER},
        answer=("gRecaptchaResponse", "token"),
    ),
    "recaptcha_v3": _tc_recaptcha_v3("recaptcha_v3", False),
    "recaptcha_v3_enterprise": _tc_recaptcha_v3("recaptcha_v3_enterprise", True),
    "hcaptcha": TaskType(
        "hcaptcha",
        "HCaptchaTaskProxyless",
        "HCaptchaTask",
        {**_SK, "invisible": "isInvisible", **_BROWSER},
        answer=("gRecaptchaResponse", "token"),
    ),
    "turnstile": TaskType(
        "turnstile",
        "TurnstileTaskProxyless",
        "TurnstileTask",
        {**_SK, "action": "action", "data": "data", **_BROWSER},
        answer=("token",),
    ),
    "geetest_v4": TaskType(
        "geetest_v4",
        "GeeTestTaskProxyless",
        "GeeTestTask",
        {
            "pageurl": "websiteURL",
            "gt": "initParameters.captcha_id",
            "api_server": "geetestApiServerSubdomain",
            **_BROWSER,
        },
        constants={"version": 4},
        shape="object",
    ),
    "datadome": TaskType("datadome", None, "DataDomeSliderTask", _DATADOME, answer=("cookie",)),
    "friendly_captcha": TaskType(
        "friendly_captcha",
        "FriendlyCaptchaTaskProxyless",
        "FriendlyCaptchaTask",
        {**_SK, **_BROWSER},
        answer=("token",),
    ),
    "captchafox": TaskType(
        "captchafox", None, "CaptchaFoxTask", {**_SK, "userAgent": "userAgent"}, answer=("token",)
    ),
    "lemin": TaskType(
        "lemin",
        "LeminTaskProxyless",
        "LeminTask",
        {
            "pageurl": "websiteURL",
            "captcha_id": "captchaId",
            "div_id": "divId",
            "apiServer": "leminApiServerSubdomain",
            **_BROWSER,
        },
        shape="object",
    ),
}


def _cs_recaptcha(variant: str, proxyless: str, proxied: str, fields: Mapping[str, str]) -> TaskType:
    return TaskType(variant, proxyless, proxied, {**_RC, **fields, **_BROWSER})


_CAPSOLVER_TYPES: Mapping[str, TaskType] = {
    "image": TaskType("image", "ImageToTextTask", None, {"body": "body"}, answer=("text",)),
    "recaptcha_v2": _cs_recaptcha(
        "recaptcha_v2", "ReCaptchaV2TaskProxyLess", "ReCaptchaV2Task", {"invisible": "isInvisible"}
    ),
    "recaptcha_v2_invisible": _cs_recaptcha(
        "recaptcha_v2_invisible", "ReCaptchaV2TaskProxyLess", "ReCaptchaV2Task", {"invisible": "isInvisible"}
    ),
    "recaptcha_v2_enterprise": _cs_recaptcha(
        "recaptcha_v2_enterprise",
        "ReCaptchaV2EnterpriseTaskProxyLess",
        "ReCaptchaV2EnterpriseTask",
        {"data-s": "enterprisePayload.s"},
    ),
    "recaptcha_v3": _cs_recaptcha(
        "recaptcha_v3", "ReCaptchaV3TaskProxyLess", "ReCaptchaV3Task", {"action": "pageAction"}
    ),
    "recaptcha_v3_enterprise": _cs_recaptcha(
        "recaptcha_v3_enterprise",
        "ReCaptchaV3EnterpriseTaskProxyLess",
        "ReCaptchaV3EnterpriseTask",
        {"action": "pageAction"},
    ),
    "turnstile": TaskType(
        "turnstile",
        "AntiTurnstileTaskProxyLess",
        None,
        {**_SK, "action": "metadata.action", "data": "metadata.cdata"},
        answer=("token",),
    ),
    "funcaptcha": TaskType("funcaptcha", "FunCaptchaTaskProxyLess", None, _FUNCAPTCHA, answer=("token",)),
    "geetest_v3": TaskType(
        "geetest_v3",
        "GeeTestTaskProxyLess",
        None,
        {**_GEETEST, "api_server": "geetestApiServerSubdomain"},
        shape="object",
    ),
    "geetest_v4": TaskType(
        "geetest_v4",
        "GeeTestTaskProxyLess",
        None,
        {"pageurl": "websiteURL", "gt": "captchaId", "api_server": "geetestApiServerSubdomain"},
        shape="object",
    ),
    "amazon_waf": TaskType(
        "amazon_waf",
        "AntiAwsWafTaskProxyLess",
        "AntiAwsWafTask",
        {
            "pageurl": "websiteURL",
            "sitekey": "awsKey",
            "iv": "awsIv",
            "context": "awsContext",
            "challenge_script": "awsChallengeJS",
        },
        shape="object",
    ),
    #: the docs spell it DatadomeSliderTask, the official SDK (capsolver 1.0.1) DataDomeSliderTask
    "datadome": TaskType(
        "datadome",
        None,
        "DatadomeSliderTask",
        _DATADOME,
        answer=("cookie",),
        aliases=("DataDomeSliderTask",),
    ),
}

DIALECTS: Mapping[DialectName, Dialect] = {
    "anticaptcha": Dialect("anticaptcha", "Anti-Captcha", "fields", _ANTICAPTCHA_TYPES),
    "2captcha": Dialect("2captcha", "2captcha API v2", "fields", _TWOCAPTCHA_TYPES),
    "capsolver": Dialect("capsolver", "CapSolver", "string", _CAPSOLVER_TYPES),
}
#: The gateway accepts every dialect's names; on a tie the first dialect reads the task and shapes
#: its solution (2captcha's: a superset of Anti-Captcha's answers).
GATEWAY_DIALECTS: tuple[DialectName, ...] = ("2captcha", "anticaptcha", "capsolver")


def task_type_for(dialect: DialectName, variant: str) -> TaskType | None:
    """The dialect's task type for one of our variants (``image_file`` is ``image``), or None."""
    return DIALECTS[dialect].types.get(variant.removesuffix("_file"))


def accepted_types(
    dialects: Iterable[DialectName] = GATEWAY_DIALECTS,
) -> dict[str, list[tuple[DialectName, TaskType]]]:
    """Task type name -> the rows that may read it, in dialect then table order."""
    names: dict[str, list[tuple[DialectName, TaskType]]] = {}
    for dialect in dialects:
        for task_type in DIALECTS[dialect].types.values():
            for name in task_type.names:
                rows = names.setdefault(name, [])
                if (dialect, task_type) not in rows:
                    rows.append((dialect, task_type))
    return names


# -- values ---------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A task field's value as an in.php param."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _typed(name: str, value: ParamValue) -> Any:
    """An in.php param's value as the task field ``name`` takes it."""
    leaf = name.rpartition(".")[2]
    if leaf in _BOOL_FIELDS:
        return str(value).strip() not in ("", "0", "false", "False")
    try:
        if leaf in _INT_FIELDS:
            return int(float(value))
        if leaf in _FLOAT_FIELDS:
            return float(value)
    except ValueError:
        return value
    return value


def _get(task: Mapping[str, Any], path: str) -> Any:
    value: Any = task
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _put(task: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = task
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != {} and value != []


# -- inbound: a task -> our method and params -----------------------------------------------------


def _score(dialect: Dialect, task_type: TaskType, task: Mapping[str, Any]) -> int | None:
    """How well a row fits a task: its fields, constants and proxy style present; None when a constant
    differs."""
    style = (
        "fields" if _present(task.get("proxyAddress")) else "string" if _present(task.get("proxy")) else ""
    )
    score = 1 if style == dialect.proxy else 0
    for name, value in task_type.constants.items():
        given = task.get(name)
        if given is None:
            continue
        if _text(given).lower() != _text(value).lower():
            return None
        score += 1
    return score + sum(1 for theirs in task_type.fields.values() if _present(_get(task, theirs)))


def _proxy_in(task: Mapping[str, Any]) -> dict[str, str]:
    """The proxy of a task, either style, as in.php's ``proxy`` (``login:password@host:port``) and
    ``proxytype``."""
    address = task.get("proxyAddress")
    if _present(address):
        login, password = task.get("proxyLogin") or "", task.get("proxyPassword") or ""
        auth = f"{_text(login)}:{_text(password)}@" if login else ""
        port = task.get("proxyPort")
        return {
            "proxy": f"{auth}{_text(address)}:{'' if port is None else _text(port)}",
            "proxytype": _text(task.get("proxyType") or "HTTP").upper(),
        }
    raw = task.get("proxy")
    if isinstance(raw, str) and raw.count(":") >= 2:
        parts = raw.split(":")
        kind, host, port = parts[0], parts[1], parts[2]
        auth = f"{parts[3]}:{':'.join(parts[4:])}@" if len(parts) >= 4 else ""
        return {"proxy": f"{auth}{host}:{port}", "proxytype": kind.upper()}
    return {}


def parse_task(task: Mapping[str, Any], dialects: Iterable[DialectName] = GATEWAY_DIALECTS) -> Parsed | None:
    """A client's ``task`` as our method and params (not yet validated); None for an unknown type.

    Of the rows that name the type, the one whose fields the task fills best reads it (a constant the
    task contradicts rules a row out: ``isEnterprise``, ``version``); on a tie, the first dialect.
    """
    name = task.get("type")
    if not isinstance(name, str):
        return None
    best: tuple[int, DialectName, TaskType] | None = None
    for dialect, task_type in accepted_types(dialects).get(name, []):
        score = _score(DIALECTS[dialect], task_type, task)
        if score is not None and (best is None or score > best[0]):
            best = (score, dialect, task_type)
    if best is None:
        return None
    _, dialect, task_type = best
    params: dict[str, str] = {}
    for ours, theirs in task_type.fields.items():
        value = _get(task, theirs)
        if _present(value):
            params[ours] = _text(value)
    params.update(_proxy_in(task))
    params.update(task_type.implied)
    return Parsed(dialect, task_type, name, task_type.method, params)


# -- outbound: our variant and params -> a provider's task ----------------------------------------


def _proxy_out(params: Mapping[str, ParamValue], style: ProxyStyle) -> dict[str, Any]:
    raw = str(params["proxy"]).strip()
    kind = str(params.get("proxytype", "HTTP")).strip().lower()
    login = password = ""
    if "@" in raw:
        credentials, raw = raw.rsplit("@", 1)
        login, _, password = credentials.partition(":")
    host, _, port = raw.rpartition(":")
    if style == "string":
        return {"proxy": ":".join([kind, host, port] + ([login, password] if login else []))}
    out: dict[str, Any] = {
        "proxyType": kind,
        "proxyAddress": host,
        "proxyPort": int(port) if port.isdigit() else port,
    }
    if login:
        out |= {"proxyLogin": login, "proxyPassword": password}
    return out


def build_task(dialect: DialectName, variant: str, params: Mapping[str, ParamValue]) -> dict[str, Any]:
    """The dialect's ``task`` object for a validated task; InvalidTask when it has no such type or the
    type needs a proxy the task lacks."""
    task_type = task_type_for(dialect, variant)
    if task_type is None:
        raise InvalidTask(f"{DIALECTS[dialect].title} has no task type for {variant} tasks", field="method")
    proxied = bool(str(params.get("proxy", "")).strip())
    name = task_type.proxied if proxied and task_type.proxied else task_type.proxyless
    if name is None:  # only a proxied type exists (DataDome, CaptchaFox)
        if not proxied:
            raise InvalidTask(f"{variant} tasks need a proxy", field="proxy")
        name = task_type.proxied
    values = dict(params)
    if "file" in values:
        values.setdefault("body", values["file"])
    task: dict[str, Any] = {"type": name}
    for ours, theirs in task_type.fields.items():
        if ours in values and str(values[ours]).strip() != "":
            _put(task, theirs, _typed(theirs, values[ours]))
    task.update(task_type.constants)
    if proxied and name == task_type.proxied:
        task.update(_proxy_out(params, DIALECTS[dialect].proxy))
    return task


# -- solutions ------------------------------------------------------------------------------------


def _points(raw: Any) -> list[dict[str, int]] | None:
    """``[{"x": 39, "y": 59}, ...]`` from a list of objects or of pairs (numbers or numeric strings)."""
    if not isinstance(raw, list) or not raw:
        return None
    points: list[dict[str, int]] = []
    for item in raw:
        try:
            if isinstance(item, dict):
                points.append({"x": round(float(item["x"])), "y": round(float(item["y"]))})
            elif isinstance(item, list) and len(item) >= 2:
                points.append({"x": round(float(item[0])), "y": round(float(item[1]))})
            else:
                return None
        except (KeyError, TypeError, ValueError):
            return None
    return points


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def read_solution(task_type: TaskType | None, solution: Mapping[str, Any]) -> Solution | None:
    """Our Solution from a provider's ``solution`` object; None when it holds no answer."""
    agent = next((solution[k] for k in _USER_AGENT_FIELDS if solution.get(k)), None)
    user_agent = str(agent) if agent else None
    shape = task_type.shape if task_type is not None else "value"
    if shape in ("points", "pairs"):
        points = _points(solution.get("coordinates"))
        return None if points is None else Solution(_compact(points), user_agent, points)
    if shape == "object":
        data = {k: v for k, v in solution.items() if k not in _USER_AGENT_FIELDS}
        return Solution(_compact(data), user_agent, data) if data else None
    fields = (*task_type.answer, *_FALLBACK_ANSWER) if task_type is not None else _FALLBACK_ANSWER
    for name in fields:
        value = solution.get(name)
        if not _present(value):
            continue
        if isinstance(value, dict | list):
            return Solution(_compact(value), user_agent, value)
        return Solution(_text(value), user_agent)
    return None


def _number(text: str) -> int | str:
    """A whole number of degrees (2captcha's ``rotate``), or the text when it is not a number."""
    try:
        return round(float(text))
    except (ValueError, OverflowError):
        return text


def write_solution(task_type: TaskType | None, solution: Solution) -> dict[str, Any]:
    """The ``solution`` object the task type's provider returns, for one of our Solutions."""
    value: Any = solution.data if solution.data is not None else solution.text
    out: dict[str, Any]
    if task_type is None:  # a variant no JSON dialect names (BLS, Cloudflare challenge...)
        if isinstance(value, dict):
            out = dict(value)
        elif isinstance(value, list):
            out = {"click": value}
        else:
            out = {"token": value}
    elif task_type.shape in ("points", "pairs"):
        points = _points(solution.data) or []
        pairs = task_type.shape == "pairs"
        out = {"coordinates": [[p["x"], p["y"]] if pairs else p for p in points]}
    elif task_type.shape == "object":
        out = dict(value) if isinstance(value, dict) else {"token": value}
    elif task_type.shape == "number":
        out = {task_type.answer[0]: _number(solution.text)}
    else:
        out = {name: value for name in task_type.answer}
    if solution.user_agent:
        out["userAgent"] = solution.user_agent
    return out


# -- the docs' table ------------------------------------------------------------------------------

_SHAPE_DOCS: Mapping[str, str] = {
    "object": "the provider's object, as the worker's provider answered it",
    "points": '`coordinates`: `[{"x": 39, "y": 59}, ...]`',
    "pairs": "`coordinates`: `[[39, 59], ...]`",
}


def _solution_doc(task_type: TaskType) -> str:
    if task_type.shape == "number":
        return f"`{task_type.answer[0]}`: a whole number"
    return _SHAPE_DOCS.get(task_type.shape) or ", ".join(f"`{name}`" for name in task_type.answer)


def markdown_table() -> str:
    """docs/gateway.md's task type table (``<!-- task-types -->``): every type createTask takes, who
    names it so, our method, the field -> param map and the ``solution`` answered. Rows that read a
    task alike (same names, fields and constants) are one line."""
    groups: dict[tuple[Any, ...], tuple[TaskType, list[str], list[str]]] = {}
    for dialect in GATEWAY_DIALECTS:
        for task_type in DIALECTS[dialect].types.values():
            key = (task_type.names, tuple(task_type.fields.items()), tuple(task_type.constants.items()))
            _, variants, titles = groups.setdefault(key, (task_type, [], []))
            for item, items in ((task_type.variant, variants), (DIALECTS[dialect].title, titles)):
                if item not in items:
                    items.append(item)
    lines = [
        "| task type | named so by | queued as | fields -> params | `solution` |",
        "| --- | --- | --- | --- | --- |",
    ]
    for task_type, variants, titles in groups.values():
        names = ", ".join(f"`{name}`" for name in task_type.names)
        fields = [
            f"`{theirs}` -> `{ours}`" for ours, theirs in task_type.fields.items() if ours not in _BROWSER
        ]
        fields += [f"`{k}: {json.dumps(v)}`" for k, v in task_type.constants.items()]
        implied = "".join(f" `{k}={v}`" for k, v in task_type.implied.items())
        queued = " / ".join(f"`{v}`" for v in variants) + f" (`{task_type.method}`{implied})"
        row = [names, ", ".join(titles), queued, ", ".join(fields), _solution_doc(task_type)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
