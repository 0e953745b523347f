"""The task type table (protocol/tasktypes.py), table-driven: every provider's createTask payload of
every task type goes in through the gateway's reading (our method + params, validated as the queue
validates them) and comes out of the JSON API solver's writing for that provider equal to itself; the
gateway takes every type the solver side sends; solutions round-trip in each type's shape; and a few
payloads written out by hand from the providers' docs pin the field names themselves."""

from __future__ import annotations

from typing import Any

import pytest

from captcha_queue.models import Solution
from captcha_queue.protocol.methods import canonical_params, normalize, spec_for
from captcha_queue.protocol.tasktypes import (
    DIALECTS,
    Dialect,
    TaskType,
    accepted_types,
    build_task,
    parse_task,
    read_solution,
    task_type_for,
    write_solution,
)
from captcha_queue.solvers.profiles import PROFILES

from .gateway_helpers import png_b64

#: One valid value of each of our params.
SAMPLES: dict[str, str] = {
    "pageurl": "https://example.com/login",
    "googlekey": "6Le-site-key",
    "sitekey": "0x4AAAAAAAB-site",
    "data-s": "data-s-token",
    "userAgent": "Mozilla/5.0 (test)",
    "cookies": "a=1; b=2",
    "min_score": "0.7",
    "action": "login",
    "publickey": "PUB-KEY-1",
    "surl": "https://client-api.arkoselabs.com",
    "data": '{"blob":"b1"}',
    "gt": "gt-key-1",
    "challenge": "challenge-1",
    "api_server": "api.geetest.com",
    "iv": "iv-1",
    "context": "ctx-1",
    "challenge_script": "https://x.token.awswaf.com/challenge.js",
    "captcha_script": "https://x.captcha.awswaf.com/captcha.js",
    "captcha_url": "https://geo.captcha-delivery.com/captcha/?initialCid=1",
    "body": png_b64(),
    "phrase": "1",
    "regsense": "1",
    "numeric": "1",
    "calc": "0",
    "min_len": "3",
    "max_len": "8",
    "textinstructions": "type the letters",
    "instructions": "select all cars",
    "rows": "3",
    "cols": "3",
    "angle": "15",
    "textcaptcha": "What is 2 + 2?",
    "captcha_id": "lemin-captcha-id",
    "div_id": "lemin-div",
    "apiServer": "api.leminnow.com",
}
#: The JSON type of the fields that are not strings (as the providers' docs type them).
TYPED: dict[str, Any] = {
    "phrase": True,
    "case": True,
    "math": False,
    "numeric": 1,
    "minLength": 3,
    "maxLength": 8,
    "rows": 3,
    "columns": 3,
    "minScore": 0.7,
    "angle": 15.0,
}
PROXY_FIELDS = {
    "proxyType": "http",
    "proxyAddress": "203.0.113.7",
    "proxyPort": 3128,
    "proxyLogin": "user",
    "proxyPassword": "pass",
}
PROXY_STRING = {"proxy": "http:203.0.113.7:3128:user:pass"}


def _put(task: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        task = task.setdefault(part, {})
    task[leaf] = value


def payload(dialect: Dialect, row: TaskType, name: str) -> dict[str, Any]:
    """A full createTask ``task`` of this type, every field the row maps filled."""
    task: dict[str, Any] = {"type": name}
    for ours, theirs in row.fields.items():
        leaf = theirs.rpartition(".")[2]
        if leaf == "isInvisible":
            value: Any = row.variant != "recaptcha_v2"  # the invisible variant is the flag
        else:
            value = TYPED.get(leaf, SAMPLES[ours])
        _put(task, theirs, value)
    task.update(row.constants)
    if name == row.proxied:
        task.update(PROXY_STRING if dialect.proxy == "string" else PROXY_FIELDS)
    return task


CASES = [
    pytest.param(dialect, row, name, id=f"{dialect.name}-{row.variant}-{name}")
    for dialect in DIALECTS.values()
    for row in dialect.types.values()
    for name in (row.proxyless, row.proxied)
    if name is not None
]


@pytest.mark.parametrize(("dialect", "row", "name"), CASES)
def test_every_task_type_round_trips_through_our_params(dialect: Dialect, row: TaskType, name: str) -> None:
    sent = payload(dialect, row, name)
    parsed = parse_task(sent)  # as the gateway reads it: every dialect's names
    assert parsed is not None
    assert parsed.method == row.method
    wire, params = normalize(parsed.method, canonical_params(parsed.method, parsed.params))
    spec = spec_for(wire, params)
    assert spec.name == row.variant
    assert build_task(dialect.name, spec.name, params) == sent
    # the provider's own reading (the simulator's, one dialect) gives the same params
    own = parse_task(sent, (dialect.name,))
    assert own is not None
    assert own.params == parsed.params


@pytest.mark.parametrize("profile", [p for p in PROFILES.values() if p.task_dialect is not None])
def test_the_table_and_the_json_profiles_agree_and_the_gateway_takes_every_type(profile: Any) -> None:
    dialect = DIALECTS[profile.task_dialect]
    solvable = {variant.removesuffix("_file") for variant in profile.variants}
    assert solvable == set(dialect.types), "a variant the profile solves has no task type, or the reverse"
    accepted = accepted_types()
    for row in dialect.types.values():
        for name in row.names:
            assert (dialect.name, row) in accepted[name]


SOLUTIONS: dict[str, Solution] = {
    "value": Solution("TOKEN-1", user_agent="Mozilla/5.0 (solver)"),
    "object": Solution(
        '{"captcha_voucher":"v","existing_token":"t"}', None, {"captcha_voucher": "v", "existing_token": "t"}
    ),
    "points": Solution('[{"x":39,"y":59}]', None, [{"x": 39, "y": 59}]),
    "pairs": Solution('[{"x":39,"y":59}]', None, [{"x": 39, "y": 59}]),
    "number": Solution("180"),
}


ROWS = [
    pytest.param(row, id=f"{dialect.name}-{row.variant}")
    for dialect in DIALECTS.values()
    for row in dialect.types.values()
]


@pytest.mark.parametrize("row", ROWS)
def test_solutions_round_trip_in_the_types_shape(row: TaskType) -> None:
    solution = SOLUTIONS[row.shape]
    if row.answer == ("click",):
        solution = Solution("[1,4,9]", None, [1, 4, 9])
    written = write_solution(row, solution)
    assert read_solution(row, written) == solution
    if row.shape == "value":
        assert set(written) == {*row.answer, *(["userAgent"] if solution.user_agent else [])}


def test_hand_written_payloads_from_the_providers_docs() -> None:
    """Literal field names, so a typo in the table cannot round-trip itself."""
    cases: list[tuple[str, dict[str, Any], str, dict[str, str]]] = [
        (
            "2captcha",
            {"type": "HCaptchaTaskProxyless", "websiteURL": "https://e.com", "websiteKey": "hc-key"},
            "hcaptcha",
            {"sitekey": "hc-key", "pageurl": "https://e.com"},
        ),
        (
            "anticaptcha",
            {
                "type": "FunCaptchaTaskProxyless",
                "websiteURL": "https://e.com",
                "websitePublicKey": "PK",
                "funcaptchaApiJSSubdomain": "https://client-api.arkoselabs.com",
                "data": '{"blob":"x"}',
            },
            "funcaptcha",
            {"publickey": "PK", "surl": "https://client-api.arkoselabs.com", "data": '{"blob":"x"}'},
        ),
        (
            "2captcha",
            {
                "type": "AmazonTaskProxyless",
                "websiteURL": "https://e.com",
                "websiteKey": "AQI",
                "iv": "CgAH",
                "context": "9BUg",
                "challengeScript": "https://x.token.awswaf.com/challenge.js",
            },
            "amazon_waf",
            {"sitekey": "AQI", "iv": "CgAH", "context": "9BUg"},
        ),
        (
            "capsolver",
            {
                "type": "AntiAwsWafTaskProxyLess",
                "websiteURL": "https://e.com",
                "awsKey": "AQI",
                "awsIv": "CgAH",
                "awsContext": "9BUg",
            },
            "amazon_waf",
            {"sitekey": "AQI", "iv": "CgAH", "context": "9BUg"},
        ),
        (
            "2captcha",
            {
                "type": "DataDomeSliderTask",
                "websiteURL": "https://e.com",
                "captchaUrl": "https://geo.captcha-delivery.com/captcha/?x=1",
                "userAgent": "UA",
                **PROXY_FIELDS,
            },
            "datadome",
            {
                "captcha_url": "https://geo.captcha-delivery.com/captcha/?x=1",
                "proxy": "user:pass@203.0.113.7:3128",
            },
        ),
        (
            "capsolver",
            {
                "type": "AntiTurnstileTaskProxyLess",
                "websiteURL": "https://e.com",
                "websiteKey": "0x4A",
                "metadata": {"action": "login", "cdata": "cd"},
            },
            "turnstile",
            {"sitekey": "0x4A", "action": "login", "data": "cd"},
        ),
        (
            "anticaptcha",
            {
                "type": "TurnstileTaskProxyless",
                "websiteURL": "https://e.com",
                "websiteKey": "0x4A",
                "cData": "cd",
            },
            "turnstile",
            {"sitekey": "0x4A", "data": "cd"},
        ),
        (
            "anticaptcha",
            {
                "type": "RecaptchaV2EnterpriseTaskProxyless",
                "websiteURL": "https://e.com",
                "websiteKey": "6Le",
                "enterprisePayload": {"s": "S-VALUE"},
            },
            "recaptcha_v2_enterprise",
            {"googlekey": "6Le", "data-s": "S-VALUE", "enterprise": "1"},
        ),
        (
            "2captcha",
            {
                "type": "GeeTestTaskProxyless",
                "websiteURL": "https://e.com",
                "version": 4,
                "initParameters": {"captcha_id": "CID"},
            },
            "geetest_v4",
            {"gt": "CID", "version": "4"},
        ),
        (
            "anticaptcha",
            {
                "type": "RecaptchaV3TaskProxyless",
                "websiteURL": "https://e.com",
                "websiteKey": "6Le",
                "minScore": 0.3,
                "pageAction": "login",
                "isEnterprise": True,
            },
            "recaptcha_v3_enterprise",
            {"min_score": "0.3", "action": "login", "version": "v3", "enterprise": "1"},
        ),
    ]
    for dialect, sent, variant, expected in cases:
        parsed = parse_task(sent)
        assert parsed is not None, sent["type"]
        assert expected.items() <= parsed.params.items(), sent["type"]
        wire, params = normalize(parsed.method, canonical_params(parsed.method, parsed.params))
        spec = spec_for(wire, params)
        assert spec.name == variant, sent["type"]
        assert build_task(dialect, spec.name, params) == sent  # type: ignore[arg-type]


def test_unknown_types_and_contradicted_constants() -> None:
    assert parse_task({"type": "NoSuchTask"}) is None
    assert parse_task({"websiteURL": "https://e.com"}) is None
    assert parse_task({"type": 7}) is None
    # a CapSolver-only spelling is not another dialect's
    assert parse_task({"type": "ReCaptchaV2TaskProxyLess"}, ("anticaptcha",)) is None
    # GeeTest version 3 is v3 even next to v4's fields
    parsed = parse_task({"type": "GeeTestTask", "websiteURL": "u", "gt": "g", "challenge": "c", "version": 3})
    assert parsed is not None
    assert parsed.task_type.variant == "geetest_v3"


def test_a_type_that_needs_a_proxy_is_refused_without_one() -> None:
    from captcha_queue.errors import InvalidTask

    with pytest.raises(InvalidTask, match="need a proxy"):
        build_task("2captcha", "datadome", {"pageurl": "u", "captcha_url": "c", "userAgent": "a"})
    with pytest.raises(InvalidTask, match="no task type"):
        build_task("capsolver", "rotate", {"body": "x"})
    assert task_type_for("capsolver", "image_file") is task_type_for("capsolver", "image")


def test_the_docs_tables_are_generated_from_the_table() -> None:
    import importlib.util
    from pathlib import Path

    from captcha_queue.protocol.tasktypes import markdown_table
    from captcha_queue.solvers.profiles import render_task_types

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", root / "tools" / "mkdocs_hooks.py")
    assert spec is not None
    assert spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    gateway_page = hooks.on_page_markdown((root / "docs" / "gateway.md").read_text())
    providers_page = hooks.on_page_markdown((root / "docs" / "providers.md").read_text())
    assert markdown_table() in gateway_page
    assert render_task_types() in providers_page
    for name in accepted_types():
        assert f"`{name}`" in markdown_table(), name
    for dialect in DIALECTS.values():
        for row in dialect.types.values():
            assert f"`{row.variant}`" in render_task_types()
            for sent in (row.proxyless, row.proxied):
                assert sent is None or f"`{sent}`" in render_task_types()
