"""Tolerant parsing: every response shape the spec records, as bytes in and values or errors out."""

from __future__ import annotations

import pytest

from captcha_queue.errors import AccountError, SolverBusy, TaskRejected, TransientError, Unsolvable
from captcha_queue.protocol.methods import VARIANTS, MethodSpec
from captcha_queue.solvers.http import (
    Redactor,
    Reply,
    decode_answer,
    parse_balance,
    parse_reply,
    parse_threads,
    raise_for_code,
    task_id_of,
)

CANARY = "CANARY0123456789CANARY0123456789"


def reply(body: str | bytes, status: int = 200) -> Reply:
    raw = body.encode() if isinstance(body, str) else body
    return parse_reply(status, raw, redact=Redactor(CANARY))


# -- submit ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"status":1,"request":"73548291"}',
        '{"status":1,"request":73548291}',
        '{"status":"1","request":"73548291"}',
        "OK|73548291",
        '  {"status": 1, "request": 73548291}\n',
    ],
)
def test_submit_id_shapes(body: str) -> None:
    assert task_id_of(reply(body)) == "73548291"


def test_integer_id_observed_in_production() -> None:
    assert task_id_of(reply('{"status":1,"request":3397637370}')) == "3397637370"


@pytest.mark.parametrize(
    ("body", "cls", "code"),
    [
        ('{"status":0,"request":"ERROR_PAGEURL"}', TaskRejected, "ERROR_PAGEURL"),
        ("ERROR_UPLOAD", TaskRejected, "ERROR_UPLOAD"),  # plain text despite json=1
        ("ERROR_NO_SLOT_AVAILABLE", SolverBusy, "ERROR_NO_SLOT_AVAILABLE"),
        (
            '{"status":0,"request":"ERROR_SERVER_ERROR","error_text":"try later"}',
            TransientError,
            "ERROR_SERVER_ERROR",
        ),
        ("ERROR: 1003", AccountError, "ERROR: 1003"),
        ('{"status":1,"request":""}', TransientError, "BAD_RESPONSE"),
        ('{"status":1,"request":true}', TransientError, "BAD_RESPONSE"),
        ('{"status":0}', TransientError, "BAD_RESPONSE"),
    ],
)
def test_submit_errors(body: str, cls: type[Exception], code: str) -> None:
    with pytest.raises(cls) as info:
        task_id_of(reply(body))
    assert getattr(info.value, "code", None) == code


def test_error_text_is_kept_in_the_message() -> None:
    with pytest.raises(TransientError, match="try later"):
        task_id_of(reply('{"status":0,"request":"ERROR_SERVER_ERROR","error_text":"try later"}'))


# -- HTTP-level trouble -------------------------------------------------------------------------------

HTML_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><h1>502</h1></body></html>"


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (502, HTML_502, TransientError, "HTTP_502"),
        (200, HTML_502, TransientError, "HTML_PAGE"),
        (200, "<!DOCTYPE html><html><body>maintenance</body></html>", TransientError, "HTML_PAGE"),
        (500, "Internal Server Error", TransientError, "HTTP_500"),
        (503, "", TransientError, "HTTP_503"),
        (429, "Too Many Requests", SolverBusy, "HTTP_429"),
        (404, "Not Found", TransientError, "HTTP_404"),
        (200, "", TransientError, "BAD_RESPONSE"),
        (200, b"\x1f\x8b\x08\x00garbled<<\xff\xfe>>", TransientError, "BAD_RESPONSE"),
        (200, '{"status":1,"request":', TransientError, "BAD_RESPONSE"),
        (200, "[1, 2]", TransientError, "BAD_RESPONSE"),
        (200, "Warning: something broke", TransientError, "BAD_RESPONSE"),
    ],
)
def test_http_trouble(status: int, body: str | bytes, cls: type[Exception], code: str) -> None:
    with pytest.raises(cls) as info:
        reply(body, status)
    assert getattr(info.value, "code", None) == code


def test_a_service_code_on_an_error_status_is_still_the_code() -> None:
    assert reply("ERROR_IP_NOT_ALLOWED", 403).code == "ERROR_IP_NOT_ALLOWED"


def test_html_title_is_in_the_message() -> None:
    with pytest.raises(TransientError, match="502 Bad Gateway"):
        reply(HTML_502, 502)


def test_retry_after_header_is_used_unscaled() -> None:
    with pytest.raises(SolverBusy) as info:
        parse_reply(429, b"", time_scale=0.01, retry_after_s=2.0)
    assert info.value.retry_after_s == 2.0
    with pytest.raises(SolverBusy) as info:
        parse_reply(429, b"", time_scale=0.01)
    assert info.value.retry_after_s == pytest.approx(0.05)


def test_the_key_is_redacted_from_echoed_bodies() -> None:
    for status, body in [(200, f"weird {CANARY} body"), (500, f"<html><title>{CANARY}</title></html>")]:
        with pytest.raises(TransientError) as info:
            reply(body, status)
        assert CANARY not in str(info.value)
        assert "[REDACTED]" in str(info.value)


# -- poll answers -------------------------------------------------------------------------------------


def spec(name: str) -> MethodSpec:
    return VARIANTS[name]


@pytest.mark.parametrize(
    "body", ['{"status":0,"request":"CAPCHA_NOT_READY"}', "CAPCHA_NOT_READY", "CAPTCHA_NOT_READY"]
)
def test_not_ready(body: str) -> None:
    parsed = reply(body)
    assert parsed.not_ready
    raise_for_code(parsed)  # not an error


def test_unsolvable_in_both_formats() -> None:
    for body in ('{"status":0,"request":"ERROR_CAPTCHA_UNSOLVABLE"}', "ERROR_CAPTCHA_UNSOLVABLE"):
        with pytest.raises(Unsolvable):
            raise_for_code(reply(body))


@pytest.mark.parametrize(
    ("variant", "body", "text", "user_agent"),
    [
        ("recaptcha_v2", '{"status":1,"request":"03AGdBq24"}', "03AGdBq24", None),
        ("recaptcha_v2", "OK|03AGdBq24", "03AGdBq24", None),
        ("image", "OK|x7k2p", "x7k2p", None),
        ("image", '{"status":1,"request":12345}', "12345", None),  # a numeric OCR answer as a JSON number
        # Enterprise: the token is in `result`, with the user agent to reuse
        (
            "recaptcha_v2_enterprise",
            '{"status":1,"request":"OK","result":"tok","user_agent":"UA/1"}',
            "tok",
            "UA/1",
        ),
        ("recaptcha_v3_enterprise", '{"status":1,"result":"tok","user_agent":"UA/1"}', "tok", "UA/1"),
        # ... and tolerated in `request` when `result` is absent
        ("recaptcha_v2_enterprise", '{"status":1,"request":"tok","user_agent":"UA/1"}', "tok", "UA/1"),
        # Cloudflare Challenge: `result` (SDK) or `request` (examples), both with user_agent
        (
            "cloudflare_challenge",
            '{"status":1,"request":"OK","result":"cf_clear","user_agent":"UA"}',
            "cf_clear",
            "UA",
        ),
        ("cloudflare_challenge", '{"status":1,"request":"cf_clear","user_agent":"UA"}', "cf_clear", "UA"),
        ("captchafox", '{"status":1,"request":"fox","user_agent":"UA"}', "fox", "UA"),
        ("turnstile", '{"status":1,"request":"0.tok","user_agent":"ignored?"}', "0.tok", "ignored?"),
    ],
)
def test_answers(variant: str, body: str, text: str, user_agent: str | None) -> None:
    solution = decode_answer(spec(variant), reply(body))
    assert solution.text == text
    assert solution.user_agent == user_agent


@pytest.mark.parametrize(
    ("variant", "body", "data"),
    [
        ("grid", '{"status":1,"request":[1,4,7]}', [1, 4, 7]),
        ("grid", '{"status":1,"request":"[1,4,7]"}', [1, 4, 7]),
        ("grid", "OK|click:1/4/7", [1, 4, 7]),
        ("bls", "OK|[2,5]", [2, 5]),
        (
            "geetest_v3",
            '{"status":1,"request":{"challenge":"c","validate":"v","seccode":"s"}}',
            {"challenge": "c", "validate": "v", "seccode": "s"},
        ),
        (
            "geetest_v3",
            '{"status":1,"request":"{\\"geetest_challenge\\":\\"c\\",\\"geetest_validate\\":\\"v\\"}"}',
            {"geetest_challenge": "c", "geetest_validate": "v"},
        ),
        (
            "geetest_v3",
            "OK|challenge:c1,validate:v1,seccode:s1",
            {"challenge": "c1", "validate": "v1", "seccode": "s1"},
        ),
        (
            "geetest_v4",
            '{"status":1,"request":{"captcha_id":"i","lot_number":"l","pass_token":"p","gen_time":"1","captcha_output":"o"}}',
            {"captcha_id": "i", "lot_number": "l", "pass_token": "p", "gen_time": "1", "captcha_output": "o"},
        ),
        (
            "lemin",
            '{"status":1,"request":"{\\"answer\\":\\"a\\",\\"challenge_uuid\\":\\"u\\"}"}',
            {"answer": "a", "challenge_uuid": "u"},
        ),
    ],
)
def test_json_answers(variant: str, body: str, data: object) -> None:
    solution = decode_answer(spec(variant), reply(body))
    assert solution.data == data
    assert solution.text  # the raw answer is kept as text too


def test_json_answer_that_is_not_json_keeps_the_text() -> None:
    solution = decode_answer(spec("grid"), reply("OK|no cells"))
    assert (solution.text, solution.data) == ("no cells", None)


def test_token_answers_are_not_parsed_as_json() -> None:
    solution = decode_answer(spec("turnstile"), reply('{"status":1,"request":"123"}'))
    assert (solution.text, solution.data) == ("123", None)


def test_an_empty_answer_is_a_bad_response() -> None:
    with pytest.raises(TransientError) as info:
        decode_answer(spec("recaptcha_v2_enterprise"), reply('{"status":1,"request":"OK"}'))
    assert info.value.code == "BAD_RESPONSE"


# -- account ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"threads":10,"working_threads":3}',
        '{"status":1,"threads":10,"working_threads":3}',
        '{"status":1,"request":{"threads":10,"working_threads":3}}',
        '{"status":1,"request":"{\\"threads\\":10,\\"working_threads\\":3}"}',
        '{"status":1,"request":"OK","threads":"10","working_threads":"3"}',
    ],
)
def test_threadsinfo_shapes(body: str) -> None:
    info = parse_threads(reply(body))
    assert (info.threads, info.working_threads) == (10, 3)


def test_threadsinfo_errors() -> None:
    with pytest.raises(AccountError) as info:
        parse_threads(reply('{"status":0,"request":"ERROR_KEY_DOES_NOT_EXIST"}'))
    assert info.value.code == "ERROR_KEY_DOES_NOT_EXIST"
    with pytest.raises(TransientError):
        parse_threads(reply('{"status":1,"request":"OK"}'))
    # Not a number: a worker must not read it as "no thread limit" (before: threads=None, unlimited).
    for threads in ("null", '"many"', "[]"):
        with pytest.raises(TransientError):
            parse_threads(reply('{"status":1,"request":"OK","threads":' + threads + "}"))


@pytest.mark.parametrize(
    "body", ['{"status":1,"request":"12.345"}', '{"status":1,"request":12.345}', "12.345"]
)
def test_balance_shapes(body: str) -> None:
    assert parse_balance(reply(body)) == pytest.approx(12.345)


def test_reports() -> None:
    for body in ('{"status":1,"request":"OK_REPORT_RECORDED"}', "OK_REPORT_RECORDED"):
        parsed = reply(body)
        assert parsed.ok
        raise_for_code(parsed)


def test_redactor_handles_url_encoding() -> None:
    redact = Redactor("abc+def/ghi=jkl")
    assert "abc" not in redact("key=abc%2Bdef%2Fghi%3Djkl&x=1")
    assert redact.leaks("abc+def/ghi=jkl")
    assert not redact.leaks("nothing here")
