"""The one code table: every code of the spec's section 3, code by code, and unknown codes."""

from __future__ import annotations

import logging

import pytest

from captcha_queue.errors import (
    AccountError,
    SolverBusy,
    SolverError,
    TaskRejected,
    TransientError,
    Unsolvable,
)
from captcha_queue.solvers.codes import CODES, NOT_READY_CODES, error_for, info_for, is_service_code

# Spec section 3.2 (in.php) and 3.3 (res.php), with the class its policy calls for.
SPEC_CODES: list[tuple[str, type[SolverError], float | None]] = [
    ("ERROR_WRONG_USER_KEY", AccountError, None),
    ("ERROR_KEY_DOES_NOT_EXIST", AccountError, None),
    ("ERROR_ZERO_BALANCE", SolverBusy, 8.0),
    ("ERROR_NO_SLOT_AVAILABLE", SolverBusy, 5.0),
    ("ERROR_PAGEURL", TaskRejected, None),
    ("ERROR_GOOGLEKEY", TaskRejected, None),
    ("ERROR_WRONG_GOOGLEKEY", TaskRejected, None),
    ("ERROR_BAD_TOKEN_OR_PAGEURL", TaskRejected, None),
    ("ERROR_BAD_PARAMETERS", TaskRejected, None),
    ("ERROR_ZERO_CAPTCHA_FILESIZE", TaskRejected, None),
    ("ERROR_TOO_BIG_CAPTCHA_FILESIZE", TaskRejected, None),
    ("ERROR_IMAGE_DIMENSIONS_TOO_LARGE", TaskRejected, None),
    ("ERROR_WRONG_FILE_EXTENSION", TaskRejected, None),
    ("ERROR_IMAGE_TYPE_NOT_SUPPORTED", TaskRejected, None),
    ("ERROR_UPLOAD", TaskRejected, None),
    ("ERROR_BAD_PROXY", TaskRejected, None),
    ("ERROR_PROXY_CONNECTION_FAILED", TransientError, 5.0),
    ("ERROR_SERVER_ERROR", TransientError, 10.0),
    ("ERROR_INTERNAL_SERVER_ERROR", TransientError, 10.0),
    ("IP_BANNED", AccountError, 300.0),
    ("ERROR_IP_BANNED", AccountError, 300.0),
    ("ERROR_IP_NOT_ALLOWED", AccountError, None),
    ("ERROR_TOO_MUCH_REQUESTS", SolverBusy, 10.0),
    ("MAX_USER_TURN", SolverBusy, 10.0),
    ("ERROR_BAD_DUPLICATES", TaskRejected, None),
    ("ERROR_CAPTCHAIMAGE_BLOCKED", TaskRejected, None),
    ("ERROR_DOMAIN_NOT_ALLOWED", TaskRejected, None),
    ("ERROR: 1001", AccountError, 600.0),
    ("ERROR: 1002", AccountError, 300.0),
    ("ERROR: 1003", AccountError, 30.0),
    ("ERROR: 1004", AccountError, 600.0),
    ("ERROR: 1005", AccountError, 300.0),
    ("ERROR_CAPTCHA_UNSOLVABLE", Unsolvable, None),
    ("ERROR_WRONG_ID_FORMAT", TaskRejected, None),
    ("ERROR_WRONG_CAPTCHA_ID", TaskRejected, None),
    ("ERROR_EMPTY_ACTION", TaskRejected, None),
    ("REPORT_NOT_RECORDED", TaskRejected, None),
    ("ERROR_DUPLICATE_REPORT", TaskRejected, None),
    ("ERROR_TOKEN_EXPIRED", TaskRejected, None),
    # what the client reports for HTTP and network trouble
    ("HTTP_429", SolverBusy, 5.0),
    ("HTTP_502", TransientError, 5.0),
    ("HTTP_404", TransientError, 5.0),
    ("HTML_PAGE", TransientError, 5.0),
    ("BAD_RESPONSE", TransientError, 5.0),
    ("TIMEOUT", TransientError, None),
    ("CONNECTION_ERROR", TransientError, None),
]


@pytest.mark.parametrize(("code", "cls", "wait_s"), SPEC_CODES)
def test_code(code: str, cls: type[SolverError], wait_s: float | None) -> None:
    error = error_for(code)
    assert type(error) is cls
    assert error.code == code
    assert str(error).startswith(code)
    if isinstance(error, AccountError):
        assert error.pause_s == wait_s
    else:
        assert error.retry_after_s == wait_s


def test_every_spec_code_is_in_the_table() -> None:
    for code, _, _ in SPEC_CODES:
        if not code.startswith("HTTP_"):
            assert code in CODES, code
    assert {"CAPCHA_NOT_READY", "CAPTCHA_NOT_READY"} == NOT_READY_CODES


def test_waits_are_time_scaled() -> None:
    busy = error_for("ERROR_NO_SLOT_AVAILABLE", time_scale=0.01)
    assert busy.retry_after_s == pytest.approx(0.05)
    banned = error_for("IP_BANNED", time_scale=0.01)
    assert isinstance(banned, AccountError)
    assert banned.pause_s == pytest.approx(3.0)
    assert error_for("HTTP_429", retry_after_s=2.0).retry_after_s == 2.0


def test_detail_is_part_of_the_message() -> None:
    error = error_for("ERROR_PAGEURL", "pageurl is not a URL")
    assert "pageurl is not a URL" in str(error)
    assert error.message.startswith("pageurl missing or invalid")


def test_unknown_code_is_transient_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="captcha_queue.solvers")
    first = error_for("ERROR_SOMETHING_NEW_42")
    second = error_for("ERROR_SOMETHING_NEW_42")
    assert type(first) is TransientError
    assert type(second) is TransientError
    assert first.code == "ERROR_SOMETHING_NEW_42"
    warnings = [r for r in caplog.records if "ERROR_SOMETHING_NEW_42" in r.getMessage()]
    assert len(warnings) == 1
    assert info_for("ERROR_SOMETHING_NEW_42").policy == "retry"


def test_service_code_recognition() -> None:
    assert is_service_code("ERROR_ANYTHING")
    assert is_service_code("ERROR: 1003")
    assert is_service_code("IP_BANNED")
    assert is_service_code("MAX_USER_TURN")
    assert not is_service_code("03AGdBq24PBCbwiDRaS_MJ7Z")
    assert not is_service_code("OK|123")
