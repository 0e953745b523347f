"""methods.py: the per-method table, aliases, variants and validation (pure, no I/O)."""

from __future__ import annotations

import pytest

from captcha_queue.errors import InvalidTask
from captcha_queue.protocol.methods import (
    KNOWN_METHODS,
    MISSING_PARAM_CODES,
    VARIANTS,
    WIRE_METHODS,
    canonical_params,
    missing_params,
    normalize,
    spec_for,
)
from captcha_queue.simulator.samples import sample_params

# (method as submitted, wire method, variant, first poll s, answer field, answer kind, user agent)
EXPECTED = [
    ("image", "base64", "image", 1.0, "request", "text", False),
    ("normal", "base64", "image", 1.0, "request", "text", False),
    ("base64", "base64", "image", 1.0, "request", "text", False),
    ("post", "post", "image", 1.0, "request", "text", False),
    ("grid", "base64", "grid", 1.0, "request", "json", False),
    ("bls", "bls", "bls", 1.0, "request", "json", False),
    ("userrecaptcha", "userrecaptcha", "recaptcha_v2", 15.0, "request", "token", False),
    ("recaptcha_v2", "userrecaptcha", "recaptcha_v2", 15.0, "request", "token", False),
    ("recaptcha_v2_invisible", "userrecaptcha", "recaptcha_v2_invisible", 15.0, "request", "token", False),
    ("recaptcha_v2_enterprise", "userrecaptcha", "recaptcha_v2_enterprise", 15.0, "result", "token", True),
    ("recaptcha_v3", "userrecaptcha", "recaptcha_v3", 10.0, "request", "token", False),
    ("recaptcha_v3_enterprise", "userrecaptcha", "recaptcha_v3_enterprise", 10.0, "result", "token", True),
    ("turnstile", "turnstile", "turnstile", 10.0, "request", "token", False),
    ("cloudflare_challenge", "cloudflare_challenge", "cloudflare_challenge", 15.0, "result", "token", True),
    ("geetest", "geetest", "geetest_v3", 15.0, "request", "json", False),
    ("geetest_v3", "geetest", "geetest_v3", 15.0, "request", "json", False),
    ("geetest_v4", "geetest", "geetest_v4", 15.0, "request", "json", False),
    ("captchafox", "captchafox", "captchafox", 10.0, "request", "token", True),
    ("friendly_captcha", "friendly_captcha", "friendly_captcha", 10.0, "request", "token", False),
    ("lemin", "lemin", "lemin", 10.0, "request", "json", False),
    ("hcaptcha", "hcaptcha", "hcaptcha", 15.0, "request", "token", False),
    ("funcaptcha", "funcaptcha", "funcaptcha", 15.0, "request", "token", False),
    ("arkose", "funcaptcha", "funcaptcha", 15.0, "request", "token", False),
    ("amazon_waf", "amazon_waf", "amazon_waf", 10.0, "request", "json", False),
    ("aws_waf", "amazon_waf", "amazon_waf", 10.0, "request", "json", False),
    ("datadome", "datadome", "datadome", 10.0, "request", "token", False),
    ("rotatecaptcha", "rotatecaptcha", "rotate", 5.0, "request", "text", False),
    ("rotate", "rotatecaptcha", "rotate", 5.0, "request", "text", False),
    ("textcaptcha", "textcaptcha", "textcaptcha", 5.0, "request", "text", False),
    # 2captcha's click captcha: an image with coordinatescaptcha=1 answers points, not OCR text
    ("coordinates", "base64", "coordinates", 5.0, "request", "json", False),
]


def test_every_known_method_has_an_expectation() -> None:
    assert sorted(row[0] for row in EXPECTED) == sorted(KNOWN_METHODS)
    assert set(WIRE_METHODS) <= set(KNOWN_METHODS)


@pytest.mark.parametrize(("method", "wire", "variant", "first_poll_s", "field", "kind", "ua"), EXPECTED)
def test_normalize_and_spec(
    method: str, wire: str, variant: str, first_poll_s: float, field: str, kind: str, ua: bool
) -> None:
    got_wire, params = normalize(method, sample_params(method))
    assert got_wire == wire
    spec = spec_for(got_wire, params)
    assert (spec.name, spec.first_poll_s, spec.poll_interval_s) == (variant, first_poll_s, 5.0)
    assert (spec.answer_field, spec.answer_kind, spec.returns_user_agent) == (field, kind, ua)
    assert spec.wire_method == wire
    # the friendly name and the normalized pair mean the same variant
    assert spec_for(method, sample_params(method)).name == variant
    # normalizing twice changes nothing (the worker may re-normalize what the producer stored)
    assert normalize(got_wire, params) == (got_wire, params)


def test_friendly_names_add_their_fixed_params() -> None:
    assert normalize("recaptcha_v3", sample_params("recaptcha_v3"))[1]["version"] == "v3"
    _, enterprise = normalize("recaptcha_v3_enterprise", sample_params("recaptcha_v3_enterprise"))
    assert (enterprise["version"], enterprise["enterprise"]) == ("v3", 1)
    assert normalize("recaptcha_v2_invisible", sample_params("recaptcha_v2_invisible"))[1]["invisible"] == 1
    assert normalize("geetest_v4", sample_params("geetest_v4"))[1]["version"] == 4
    assert normalize("grid", sample_params("grid"))[1]["img_type"] == "recaptcha"


def test_a_friendly_name_refuses_a_contradicting_param() -> None:
    params = {**sample_params("recaptcha_v3"), "version": "v2"}
    with pytest.raises(InvalidTask) as info:
        normalize("recaptcha_v3", params)
    assert info.value.field == "version"


def test_image_picks_post_when_given_a_file() -> None:
    wire, params = normalize("image", {"file": "aGVsbG8="})
    assert wire == "post"
    assert spec_for(wire, params).submit_encoding == "multipart"
    assert spec_for(wire, params).file_params == ("file",)


@pytest.mark.parametrize(
    ("method", "given", "wire_name"),
    [
        ("image", "minLen", "min_len"),
        ("image", "maxLen", "max_len"),
        ("image", "caseSensitive", "regsense"),
        ("image", "case_sensitive", "regsense"),
        ("image", "instructions", "textinstructions"),
        ("image", "hintText", "textinstructions"),
        ("turnstile", "user_agent", "userAgent"),
        ("turnstile", "url", "pageurl"),
        ("turnstile", "callback", "pingback"),
        ("turnstile", "softId", "soft_id"),
        ("recaptcha_v2", "sitekey", "googlekey"),
        ("recaptcha_v3", "score", "min_score"),
        ("lemin", "api_server", "apiServer"),
        ("geetest_v3", "apiServer", "api_server"),
    ],
)
def test_aliases_become_wire_names(method: str, given: str, wire_name: str) -> None:
    base = sample_params(method)
    value: str | int | float = {"min_score": 0.7, "regsense": 1, "min_len": 3, "max_len": 8}.get(
        wire_name, "x"
    )
    if wire_name in base:
        value = base.pop(wire_name)
    if wire_name == "pageurl":
        value = "https://example.test/"
    _, params = normalize(method, {**base, given: value})
    assert params[wire_name] == value
    assert given not in params


def test_grid_keeps_instructions_under_their_grid_name() -> None:
    _, params = normalize("grid", {"body": "aGVsbG8=", "textinstructions": "cars", "grid_size": "4x4"})
    assert params["instructions"] == "cars"
    assert "textinstructions" not in params
    # the 2captcha style: method=post + recaptcha=1 + textinstructions
    wire, params = normalize("post", {"file": "aGVsbG8=", "recaptcha": 1, "textinstructions": "cars"})
    assert spec_for(wire, params).name == "grid"
    assert spec_for(wire, params).submit_encoding == "multipart"
    assert params["instructions"] == "cars"


def test_alias_and_wire_name_with_different_values_are_refused() -> None:
    with pytest.raises(InvalidTask) as info:
        normalize("turnstile", {**sample_params("turnstile"), "userAgent": "a", "user_agent": "b"})
    assert info.value.field == "userAgent"


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(InvalidTask) as info:
        normalize("keycaptcha", {"sitekey": "x"})
    assert info.value.field == "method"
    assert "recaptcha_v3" in str(info.value)
    assert "turnstile" in str(info.value)


def test_unknown_method_passes_through_with_the_flag() -> None:
    assert normalize("keycaptcha", {"sitekey": "x"}, allow_unknown=True) == ("keycaptcha", {"sitekey": "x"})
    spec = spec_for("keycaptcha", {})
    assert not spec.known
    assert spec.answer_field == "request"


@pytest.mark.parametrize(
    ("method", "drop", "field"),
    [
        ("image", "body", "body"),
        ("post", "file", "file"),
        ("recaptcha_v2", "googlekey", "googlekey"),
        ("recaptcha_v2", "pageurl", "pageurl"),
        ("recaptcha_v3", "pageurl", "pageurl"),
        ("turnstile", "sitekey", "sitekey"),
        ("cloudflare_challenge", "proxy", "proxy"),
        ("cloudflare_challenge", "proxytype", "proxytype"),
        ("captchafox", "proxy", "proxy"),
        ("geetest_v3", "challenge", "challenge"),
        ("geetest_v4", "captcha_id", "gt"),
        ("lemin", "div_id", "div_id"),
        ("grid", "instructions", "instructions"),
        ("bls", "instructions", "instructions"),
        ("friendly_captcha", "sitekey", "sitekey"),
    ],
)
def test_missing_required_param(method: str, drop: str, field: str) -> None:
    params = sample_params(method)
    del params[drop]
    with pytest.raises(InvalidTask) as info:
        normalize(method, params)
    assert info.value.field == field


def test_bls_needs_images_as_fields_or_a_body() -> None:
    with pytest.raises(InvalidTask) as info:
        normalize("bls", {"instructions": "cars"})
    assert info.value.field == "image_base64_1"
    assert normalize("bls", {"instructions": "cars", "body": "aGVsbG8="})[0] == "bls"


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}, b"bytes", float("nan")])
def test_values_must_be_str_int_or_float(value: object) -> None:
    with pytest.raises(InvalidTask) as info:
        normalize("turnstile", {**sample_params("turnstile"), "action": value})
    assert info.value.field == "action"


@pytest.mark.parametrize("name", ["key", "json", "method"])
def test_protocol_params_cannot_come_from_a_task(name: str) -> None:
    with pytest.raises(InvalidTask) as info:
        normalize("turnstile", {**sample_params("turnstile"), name: "x"})
    assert info.value.field == name


@pytest.mark.parametrize(
    ("method", "name", "bad", "good"),
    [
        ("image", "numeric", 7, 4),
        ("image", "phrase", 2, 1),
        ("image", "min_len", -1, 0),
        ("recaptcha_v3", "min_score", 1.5, 0.9),
        ("cloudflare_challenge", "proxytype", "FTP", "socks5"),
        ("grid", "grid_size", "5x5", "4x4"),
    ],
)
def test_value_checks(method: str, name: str, bad: object, good: object) -> None:
    with pytest.raises(InvalidTask) as info:
        normalize(method, {**sample_params(method), name: bad})
    assert info.value.field == name
    _, params = normalize(method, {**sample_params(method), name: good})
    assert str(params[name]).lower() == str(good).lower()


def test_proxytype_is_upper_cased() -> None:
    _, params = normalize(
        "cloudflare_challenge", {**sample_params("cloudflare_challenge"), "proxytype": "socks5"}
    )
    assert params["proxytype"] == "SOCKS5"


def test_unknown_params_pass_through() -> None:
    _, params = normalize("turnstile", {**sample_params("turnstile"), "x_task": "t-1", "data": "cdata"})
    assert params["x_task"] == "t-1"
    assert params["data"] == "cdata"


def test_canonical_params_never_raises_and_prefers_the_wire_spelling() -> None:
    assert canonical_params("turnstile", {"user_agent": "a", "userAgent": "b"}) == {
        "user_agent": "a",
        "userAgent": "b",
    }
    assert canonical_params("base64", {"body": "x", "minLen": "3"}) == {"body": "x", "min_len": "3"}
    grid = canonical_params("base64", {"body": "x", "instructions": "cars", "grid_size": "3x3"})
    assert grid["instructions"] == "cars"


def test_missing_params_and_their_codes() -> None:
    spec = VARIANTS["recaptcha_v2"]
    assert missing_params(spec, {"pageurl": "https://a"}) == ["googlekey"]
    assert missing_params(spec, {"googlekey": " ", "pageurl": "https://a"}) == ["googlekey"]
    assert MISSING_PARAM_CODES["pageurl"] == "ERROR_PAGEURL"
    assert MISSING_PARAM_CODES["googlekey"] == "ERROR_GOOGLEKEY"
