"""The per-method table of the in.php protocol, and the validation built on it.

Shared by the producer (validate before anything is written), the client (what to send, when to poll,
where the answer lives) and the simulator (what to require, which error code a missing param earns).
Pure: no I/O.

A *method* is what users submit: a wire name (``base64``, ``userrecaptcha``, ``turnstile``...) or a
friendly alias (``image``, ``recaptcha_v3``, ``grid``...) that expands to a wire name plus fixed params.
A *variant* (:class:`MethodSpec`) is what a (wire method, params) pair means: ``userrecaptcha`` with
``version=v3`` is reCAPTCHA v3, which polls first after 10 s and answers a token in ``request``.

Wire names of params follow the CaptchaAI docs and SDK (``userAgent``, ``min_len``, ``regsense``,
``apiServer``...); the spellings other clients use are accepted as aliases and renamed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..errors import InvalidTask

__all__ = [
    "KNOWN_METHODS",
    "MISSING_PARAM_CODES",
    "RESERVED_PARAMS",
    "VARIANTS",
    "WIRE_METHODS",
    "AnswerKind",
    "MethodSpec",
    "ParamValue",
    "canonical_params",
    "missing_params",
    "normalize",
    "spec_for",
]

ParamValue = str | int | float
#: ``text``: OCR text; ``token``: an opaque token; ``json``: a JSON document (possibly as a string).
AnswerKind = Literal["text", "token", "json"]

#: Params that belong to the protocol, never to a task (``key`` above all: it must never reach Redis).
RESERVED_PARAMS = frozenset({"key", "json", "method"})

#: The error code the service answers when a required param is missing (default ERROR_BAD_PARAMETERS).
MISSING_PARAM_CODES: Mapping[str, str] = {
    "pageurl": "ERROR_PAGEURL",
    "googlekey": "ERROR_GOOGLEKEY",
    "body": "ERROR_ZERO_CAPTCHA_FILESIZE",
    "file": "ERROR_ZERO_CAPTCHA_FILESIZE",
}


@dataclass(frozen=True)
class MethodSpec:
    """One variant of one wire method: what it needs and how its answer comes back."""

    name: str  # the variant: "image", "recaptcha_v3", "geetest_v4", ... (or the raw name if unknown)
    wire_method: str
    required: tuple[str, ...] = ()
    #: groups of which at least one member must be present (e.g. BLS images as 9 fields or one body)
    required_any: tuple[tuple[str, ...], ...] = ()
    optional: tuple[str, ...] = ()
    fixed: Mapping[str, ParamValue] = field(default_factory=dict)
    first_poll_s: float = 5.0
    poll_interval_s: float = 5.0
    answer_field: Literal["request", "result"] = "request"
    answer_kind: AnswerKind = "token"
    returns_user_agent: bool = False
    #: "multipart": params named in file_params carry base64 text and are sent as file parts.
    submit_encoding: Literal["form", "multipart"] = "form"
    file_params: tuple[str, ...] = ()
    known: bool = True

    @property
    def params(self) -> tuple[str, ...]:
        """Every param this variant documents (required, alternative and optional)."""
        alternatives = tuple(p for group in self.required_any for p in group)
        return (*self.required, *alternatives, *self.optional)


# -- the params, grouped --------------------------------------------------------------------------

_COMMON = ("pingback", "soft_id", "header_acao")
_BROWSER = ("proxy", "proxytype", "userAgent", "cookies")
_IMAGE_OPTIONS = (
    "numeric",
    "min_len",
    "max_len",
    "phrase",
    "regsense",
    "calc",
    "lang",
    "textinstructions",
    *_COMMON,
)
_BLS_IMAGES = tuple(f"image_base64_{n}" for n in range(1, 10))

# Aliases every method accepts (other clients' spellings -> wire spelling).
_COMMON_ALIASES: Mapping[str, str] = {
    "user_agent": "userAgent",
    "useragent": "userAgent",
    "callback": "pingback",
    "softId": "soft_id",
    "url": "pageurl",
    "page_url": "pageurl",
    "proxy_type": "proxytype",
}
_IMAGE_ALIASES: Mapping[str, str] = {
    "minLen": "min_len",
    "maxLen": "max_len",
    "caseSensitive": "regsense",
    "case_sensitive": "regsense",
    "instructions": "textinstructions",
    "hintText": "textinstructions",
}
_GRID_ALIASES: Mapping[str, str] = {"textinstructions": "instructions", "hintText": "instructions"}
_RECAPTCHA_ALIASES: Mapping[str, str] = {"sitekey": "googlekey", "score": "min_score"}
_GEETEST_ALIASES: Mapping[str, str] = {"captcha_id": "gt", "apiServer": "api_server"}
_FUNCAPTCHA_ALIASES: Mapping[str, str] = {"sitekey": "publickey", "websitePublicKey": "publickey"}
_ROTATE_ALIASES: Mapping[str, str] = {"comment": "textinstructions", "instructions": "textinstructions"}
_COORDINATES_ALIASES: Mapping[str, str] = {
    "comment": "textinstructions",
    "instructions": "textinstructions",
    "hintText": "textinstructions",
}
_TEXT_ALIASES: Mapping[str, str] = {
    "text": "textcaptcha",
    "question": "textcaptcha",
    "comment": "textcaptcha",
}
_DATADOME_ALIASES: Mapping[str, str] = {"captchaUrl": "captcha_url"}
_LEMIN_ALIASES: Mapping[str, str] = {"api_server": "apiServer"}

_ALIASES_BY_WIRE: Mapping[str, Mapping[str, str]] = {
    "base64": _IMAGE_ALIASES,
    "post": _IMAGE_ALIASES,
    "userrecaptcha": _RECAPTCHA_ALIASES,
    "geetest": _GEETEST_ALIASES,
    "lemin": _LEMIN_ALIASES,
    "bls": _GRID_ALIASES,
    "funcaptcha": _FUNCAPTCHA_ALIASES,
    "rotatecaptcha": _ROTATE_ALIASES,
    "textcaptcha": _TEXT_ALIASES,
    "datadome": _DATADOME_ALIASES,
}


# -- the variants ---------------------------------------------------------------------------------


def _image(wire: str, image_param: str) -> MethodSpec:
    return MethodSpec(
        name="image",
        wire_method=wire,
        required=(image_param,),
        optional=_IMAGE_OPTIONS,
        first_poll_s=1.0,
        answer_kind="text",
        submit_encoding="multipart" if wire == "post" else "form",
        file_params=("file",) if wire == "post" else (),
    )


def _grid(wire: str, image_param: str) -> MethodSpec:
    return MethodSpec(
        name="grid",
        wire_method=wire,
        required=(image_param, "instructions"),
        optional=("grid_size", "img_type", "recaptcha", "rows", "cols", *_COMMON),
        first_poll_s=1.0,
        answer_kind="json",
        submit_encoding="multipart" if wire == "post" else "form",
        file_params=("file",) if wire == "post" else (),
    )


def _coordinates(wire: str, image_param: str) -> MethodSpec:
    """2captcha's click captcha: ``coordinatescaptcha=1`` on an image; the answer is a list of points."""
    return MethodSpec(
        name="coordinates" + ("_file" if wire == "post" else ""),
        wire_method=wire,
        required=(image_param, "coordinatescaptcha"),
        optional=("textinstructions", "lang", "min_clicks", "max_clicks", *_COMMON),
        first_poll_s=5.0,
        answer_kind="json",
        submit_encoding="multipart" if wire == "post" else "form",
        file_params=("file",) if wire == "post" else (),
    )


def _token(
    name: str,
    wire: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    *,
    first_poll_s: float,
    answer_field: Literal["request", "result"] = "request",
    answer_kind: AnswerKind = "token",
    returns_user_agent: bool = False,
) -> MethodSpec:
    return MethodSpec(
        name=name,
        wire_method=wire,
        required=required,
        optional=(*optional, *_COMMON),
        first_poll_s=first_poll_s,
        answer_field=answer_field,
        answer_kind=answer_kind,
        returns_user_agent=returns_user_agent,
    )


_V2_OPTIONS = ("invisible", "enterprise", "action", "data-s", *_BROWSER)
_V3_OPTIONS = ("action", "min_score", "enterprise", *_BROWSER)

VARIANTS: Mapping[str, MethodSpec] = {
    "image": _image("base64", "body"),
    "image_file": _image("post", "file"),
    "grid": _grid("base64", "body"),
    "grid_file": _grid("post", "file"),
    "bls": MethodSpec(
        name="bls",
        wire_method="bls",
        required=("instructions",),
        required_any=((_BLS_IMAGES[0], "body"),),
        optional=(*_BLS_IMAGES[1:], "code", "sitekey", "pageurl", *_COMMON),
        first_poll_s=1.0,
        answer_kind="json",
    ),
    "recaptcha_v2": _token(
        "recaptcha_v2", "userrecaptcha", ("googlekey", "pageurl"), _V2_OPTIONS, first_poll_s=15.0
    ),
    "recaptcha_v2_invisible": _token(
        "recaptcha_v2_invisible", "userrecaptcha", ("googlekey", "pageurl"), _V2_OPTIONS, first_poll_s=15.0
    ),
    "recaptcha_v2_enterprise": _token(
        "recaptcha_v2_enterprise",
        "userrecaptcha",
        ("googlekey", "pageurl"),
        _V2_OPTIONS,
        first_poll_s=15.0,
        answer_field="result",
        returns_user_agent=True,
    ),
    # The spec's table lists `action` as required for v3, but the vendor SDK sends it only when given:
    # validating it as optional keeps tasks the service accepts.
    "recaptcha_v3": _token(
        "recaptcha_v3", "userrecaptcha", ("googlekey", "pageurl", "version"), _V3_OPTIONS, first_poll_s=10.0
    ),
    "recaptcha_v3_enterprise": _token(
        "recaptcha_v3_enterprise",
        "userrecaptcha",
        ("googlekey", "pageurl", "version"),
        _V3_OPTIONS,
        first_poll_s=10.0,
        answer_field="result",
        returns_user_agent=True,
    ),
    "turnstile": _token(
        "turnstile", "turnstile", ("sitekey", "pageurl"), ("action", "data", *_BROWSER), first_poll_s=10.0
    ),
    # Answer in `result` per the SDK, in `request` per the examples: the client reads either.
    "cloudflare_challenge": _token(
        "cloudflare_challenge",
        "cloudflare_challenge",
        ("pageurl", "proxy", "proxytype"),
        ("userAgent", "cookies", "sitekey"),
        first_poll_s=15.0,
        answer_field="result",
        returns_user_agent=True,
    ),
    "geetest_v3": _token(
        "geetest_v3",
        "geetest",
        ("gt", "challenge", "pageurl"),
        ("api_server", *_BROWSER),
        first_poll_s=15.0,
        answer_kind="json",
    ),
    "geetest_v4": _token(
        "geetest_v4",
        "geetest",
        ("gt", "pageurl", "version"),
        ("challenge", "api_server", *_BROWSER),
        first_poll_s=15.0,
        answer_kind="json",
    ),
    "captchafox": _token(
        "captchafox",
        "captchafox",
        ("sitekey", "pageurl", "proxy"),
        ("proxytype", "userAgent", "cookies"),
        first_poll_s=10.0,
        returns_user_agent=True,
    ),
    "friendly_captcha": _token(
        "friendly_captcha",
        "friendly_captcha",
        ("sitekey", "pageurl"),
        ("version", *_BROWSER),
        first_poll_s=10.0,
    ),
    "coordinates": _coordinates("base64", "body"),
    "coordinates_file": _coordinates("post", "file"),
    "rotate": MethodSpec(
        name="rotate",
        wire_method="rotatecaptcha",
        required=("body",),
        optional=("angle", "textinstructions", "lang", *_COMMON),
        first_poll_s=5.0,
        answer_kind="text",
    ),
    "textcaptcha": MethodSpec(
        name="textcaptcha",
        wire_method="textcaptcha",
        required=("textcaptcha",),
        optional=("lang", *_COMMON),
        first_poll_s=5.0,
        answer_kind="text",
    ),
    "hcaptcha": _token(
        "hcaptcha",
        "hcaptcha",
        ("sitekey", "pageurl"),
        ("invisible", "data", "domain", *_BROWSER),
        first_poll_s=15.0,
    ),
    "funcaptcha": _token(
        "funcaptcha",
        "funcaptcha",
        ("publickey", "pageurl"),
        ("surl", "data[blob]", "data", *_BROWSER),
        first_poll_s=15.0,
    ),
    # AWS WAF: the answer is a JSON object (captcha_voucher / existing_token on 2captcha).
    "amazon_waf": _token(
        "amazon_waf",
        "amazon_waf",
        ("sitekey", "iv", "context", "pageurl"),
        ("challenge_script", "captcha_script", *_BROWSER),
        first_poll_s=10.0,
        answer_kind="json",
    ),
    # DataDome: a proxy and its user agent are required; the answer is a cookie.
    "datadome": _token(
        "datadome",
        "datadome",
        ("captcha_url", "pageurl", "userAgent", "proxy", "proxytype"),
        ("cookies",),
        first_poll_s=10.0,
    ),
    "lemin": _token(
        "lemin",
        "lemin",
        ("captcha_id", "div_id", "pageurl"),
        ("apiServer", *_BROWSER),
        first_poll_s=10.0,
        answer_kind="json",
    ),
}

#: Method names users may submit that are not wire names: alias -> (wire method, fixed params).
_FRIENDLY: Mapping[str, tuple[str, Mapping[str, ParamValue]]] = {
    "image": ("base64", {}),
    "normal": ("base64", {}),
    "grid": ("base64", {"img_type": "recaptcha"}),
    "recaptcha_v2": ("userrecaptcha", {}),
    "recaptcha_v2_invisible": ("userrecaptcha", {"invisible": 1}),
    "recaptcha_v2_enterprise": ("userrecaptcha", {"enterprise": 1}),
    "recaptcha_v3": ("userrecaptcha", {"version": "v3"}),
    "recaptcha_v3_enterprise": ("userrecaptcha", {"version": "v3", "enterprise": 1}),
    "geetest_v3": ("geetest", {}),
    "geetest_v4": ("geetest", {"version": 4}),
    "coordinates": ("base64", {"coordinatescaptcha": 1}),
    "rotate": ("rotatecaptcha", {}),
    "aws_waf": ("amazon_waf", {}),
    "arkose": ("funcaptcha", {}),
}

WIRE_METHODS: tuple[str, ...] = (
    "base64",
    "post",
    "userrecaptcha",
    "turnstile",
    "cloudflare_challenge",
    "geetest",
    "captchafox",
    "friendly_captcha",
    "lemin",
    "bls",
    "hcaptcha",
    "funcaptcha",
    "amazon_waf",
    "datadome",
    "rotatecaptcha",
    "textcaptcha",
)
KNOWN_METHODS: tuple[str, ...] = tuple(sorted({*WIRE_METHODS, *_FRIENDLY}))

# -- value checks (a wrong value fails here, not after a round trip) ------------------------------

_PROXY_TYPES = ("HTTP", "HTTPS", "SOCKS4", "SOCKS5")


def _one_of(*allowed: str) -> Callable[[str], bool]:
    return lambda value: value in allowed


def _non_negative_int(value: str) -> bool:
    return value.isdigit()


def _score(value: str) -> bool:
    try:
        return 0.0 <= float(value) <= 1.0
    except ValueError:
        return False


def _angle(value: str) -> bool:
    try:
        return 1.0 <= float(value) <= 359.0
    except ValueError:
        return False


_CHECKS: Mapping[str, tuple[Callable[[str], bool], str]] = {
    "numeric": (_one_of("0", "1", "2", "3", "4"), "0, 1, 2, 3 or 4"),
    "phrase": (_one_of("0", "1"), "0 or 1"),
    "regsense": (_one_of("0", "1"), "0 or 1"),
    "calc": (_one_of("0", "1"), "0 or 1"),
    "invisible": (_one_of("0", "1"), "0 or 1"),
    "enterprise": (_one_of("0", "1"), "0 or 1"),
    "min_len": (_non_negative_int, "a non-negative integer"),
    "max_len": (_non_negative_int, "a non-negative integer"),
    "min_score": (_score, "a number between 0 and 1"),
    "proxytype": (_one_of(*_PROXY_TYPES), "HTTP, HTTPS, SOCKS4 or SOCKS5"),
    "grid_size": (_one_of("3x3", "4x4"), "3x3 or 4x4"),
    "coordinatescaptcha": (_one_of("0", "1"), "0 or 1"),
    "angle": (_angle, "a number of degrees between 1 and 359"),
}


def _text(value: ParamValue) -> str:
    return str(value).strip()


def _is_on(params: Mapping[str, object], name: str) -> bool:
    value = params.get(name)
    return value is not None and str(value).strip() not in ("", "0", "False")


# -- the public functions -------------------------------------------------------------------------


def spec_for(method: str, params: Mapping[str, object]) -> MethodSpec:
    """The variant a method and its params mean; an unknown method gets a generic, permissive spec."""
    wire, fixed = _FRIENDLY.get(method, (method, {}))
    merged: dict[str, object] = {**params, **fixed}
    if wire in ("base64", "post"):
        if _is_on(merged, "coordinatescaptcha"):
            if method == "coordinates" and "body" not in merged and "file" in merged:
                wire = "post"
            return VARIANTS["coordinates_file" if wire == "post" else "coordinates"]
        grid = "grid_size" in merged or merged.get("img_type") == "recaptcha" or _is_on(merged, "recaptcha")
        if method in ("image", "normal", "grid") and "body" not in merged and "file" in merged:
            wire = "post"  # the friendly name picks the encoding from the param given
        key = ("grid" if grid else "image") + ("_file" if wire == "post" else "")
        return VARIANTS[key]
    if wire == "userrecaptcha":
        v3 = str(merged.get("version", "")).lower() == "v3"
        if _is_on(merged, "enterprise"):
            return VARIANTS["recaptcha_v3_enterprise" if v3 else "recaptcha_v2_enterprise"]
        if v3:
            return VARIANTS["recaptcha_v3"]
        return VARIANTS["recaptcha_v2_invisible" if _is_on(merged, "invisible") else "recaptcha_v2"]
    if wire == "geetest":
        return VARIANTS["geetest_v4" if str(merged.get("version", "")) in ("4", "v4") else "geetest_v3"]
    if wire == "rotatecaptcha":
        return VARIANTS["rotate"]
    if wire in VARIANTS:
        return VARIANTS[wire]
    return MethodSpec(name=method, wire_method=method, known=False)


def canonical_params(wire_method: str, params: Mapping[str, str]) -> dict[str, str]:
    """Wire params with every alias renamed, never raising (for the server side: the simulator).

    When both spellings are sent, the wire spelling wins.
    """
    aliases = {**_COMMON_ALIASES, **_ALIASES_BY_WIRE.get(wire_method, {})}
    out = dict(params)
    for name, value in params.items():
        target = aliases.get(name)
        if target is not None and target not in params:
            out[target] = value
            del out[name]
    if (
        wire_method in ("base64", "post")
        and "textinstructions" in out
        and spec_for(wire_method, out).name.startswith("grid")
    ):
        out.setdefault("instructions", out.pop("textinstructions"))
    return out


def missing_params(spec: MethodSpec, params: Mapping[str, object]) -> list[str]:
    """Required params of ``spec`` absent or empty in ``params`` (one name per unmet alternative group)."""

    def present(name: str) -> bool:
        value = params.get(name)
        return value is not None and str(value).strip() != ""

    missing = [name for name in spec.required if not present(name)]
    missing += [group[0] for group in spec.required_any if not any(present(name) for name in group)]
    return missing


def normalize(
    method: str, params: Mapping[str, object], *, allow_unknown: bool = False
) -> tuple[str, dict[str, ParamValue]]:
    """The wire method and params for a submission, with aliases applied; raises InvalidTask.

    ``allow_unknown`` lets a method this table does not know pass through, unvalidated apart from the
    value types and the reserved names.
    """
    if not isinstance(method, str) or not method.strip():
        raise InvalidTask("method must be a non-empty string", field="method")
    method = method.strip()
    clean = _check_values(params)
    if method not in _FRIENDLY and method not in WIRE_METHODS:
        if allow_unknown:
            return method, clean
        raise InvalidTask(
            f"unknown method {method!r}; known methods: {', '.join(KNOWN_METHODS)}", field="method"
        )
    wire, fixed = _FRIENDLY.get(method, (method, {}))
    renamed = _apply_aliases(clean, {**_COMMON_ALIASES, **_ALIASES_BY_WIRE.get(wire, {})})
    spec = spec_for(method, renamed)
    if spec.name.startswith("grid") and "textinstructions" in renamed:
        renamed = _apply_aliases(renamed, _GRID_ALIASES)
    wire = spec.wire_method
    for name, value in fixed.items():
        given = renamed.get(name)
        if given is not None and _text(given).lower() != _text(value).lower():
            raise InvalidTask(f"{method} implies {name}={value}, got {name}={given}", field=name)
        renamed[name] = value
    missing = missing_params(spec, renamed)
    if missing:
        raise InvalidTask(f"{spec.name} needs param {missing[0]!r}", field=missing[0])
    for name, value in renamed.items():
        check = _CHECKS.get(name)
        if check is not None:
            text = _text(value).upper() if name == "proxytype" else _text(value)
            if not check[0](text):
                raise InvalidTask(f"{name} must be {check[1]}, got {value!r}", field=name)
            if name == "proxytype":
                renamed[name] = text
    return wire, renamed


def _check_values(params: Mapping[str, object]) -> dict[str, ParamValue]:
    if not isinstance(params, Mapping):
        raise InvalidTask("params must be a mapping of names to str/int/float values", field="params")
    clean: dict[str, ParamValue] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise InvalidTask(f"param names must be non-empty strings, got {name!r}", field="params")
        if name in RESERVED_PARAMS:
            raise InvalidTask(f"{name!r} is set by the solver client, not by a task", field=name)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidTask(
                f"param {name!r} must be a str, int or float, got {type(value).__name__}", field=name
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidTask(f"param {name!r} must be a finite number", field=name)
        clean[name] = value
    return clean


def _apply_aliases(params: Mapping[str, ParamValue], aliases: Mapping[str, str]) -> dict[str, ParamValue]:
    out: dict[str, ParamValue] = {}
    for name, value in params.items():
        target = aliases.get(name, name)
        if target != name and target in params and _text(params[target]) != _text(value):
            raise InvalidTask(
                f"{name!r} and {target!r} are the same param with different values", field=target
            )
        out[target] = value
    return out
