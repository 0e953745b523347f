"""The one table of service codes: every code of the spec's section 3, its error class and its policy.

``error_for(code)`` turns a code the service sent (or one the client made up for an HTTP or network
failure: ``HTTP_502``, ``HTML_PAGE``, ``TIMEOUT``...) into the right ``SolverError`` subclass.
An unknown code becomes a :class:`TransientError` (retry with backoff, bounded by the task's attempts),
and is logged once per process so it can be added here.

Policies (what the worker does):

=============  =======================================================================================
not_ready      poll again after the method's interval (CAPCHA_NOT_READY; never raised)
retry          TransientError: retry with backoff; from ``poll`` it means *this poll* failed and the
               remote task is still valid
busy           SolverBusy: back off (``retry_after_s``), costs no attempt
fail_task      TaskRejected: the input is wrong; fail the task now
fresh_solve    Unsolvable: the service gave up; a new submit may succeed
stop_fleet     AccountError(pause_s=None): stop every worker on this key until resumed
pause_fleet    AccountError(pause_s=N): pause every worker on this key or IP for N seconds
ignore         report answers: nothing to do
=============  =======================================================================================
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import AccountError, SolverBusy, SolverError, TaskRejected, TransientError, Unsolvable

__all__ = [
    "CODES",
    "NOT_READY_CODES",
    "REPORT_OK_CODES",
    "CodeInfo",
    "Policy",
    "error_for",
    "info_for",
    "is_service_code",
]

log = logging.getLogger("captcha_queue.solvers")

Policy = Literal[
    "not_ready", "retry", "busy", "fail_task", "fresh_solve", "stop_fleet", "pause_fleet", "ignore"
]

_CLASS_FOR_POLICY: Mapping[Policy, type[SolverError]] = {
    "retry": TransientError,
    "busy": SolverBusy,
    "fail_task": TaskRejected,
    "fresh_solve": Unsolvable,
    "stop_fleet": AccountError,
    "pause_fleet": AccountError,
    "ignore": TaskRejected,
    "not_ready": TransientError,  # never raised: the client returns None instead
}


@dataclass(frozen=True)
class CodeInfo:
    code: str
    policy: Policy
    meaning: str
    #: wait before the next try (busy/retry), or the pause length (pause_fleet); unscaled seconds
    wait_s: float | None = None

    @property
    def error_class(self) -> type[SolverError]:
        return _CLASS_FOR_POLICY[self.policy]


def _table(*rows: CodeInfo) -> Mapping[str, CodeInfo]:
    return {row.code: row for row in rows}


CODES: Mapping[str, CodeInfo] = _table(
    # res.php: not ready (both spellings: the legacy misspelling is what the service sends)
    CodeInfo("CAPCHA_NOT_READY", "not_ready", "not solved yet"),
    CodeInfo("CAPTCHA_NOT_READY", "not_ready", "not solved yet"),
    # the account
    CodeInfo("ERROR_WRONG_USER_KEY", "stop_fleet", "the API key is malformed (not 32 characters)"),
    CodeInfo(
        "ERROR_KEY_DOES_NOT_EXIST", "stop_fleet", "the API key is unknown, or the account has no threads"
    ),
    CodeInfo("ERROR_IP_NOT_ALLOWED", "stop_fleet", "this IP is not on the account's allow-list"),
    CodeInfo("IP_BANNED", "pause_fleet", "IP banned after repeated bad keys; lifted after 5 minutes", 300.0),
    CodeInfo(
        "ERROR_IP_BANNED", "pause_fleet", "IP banned after repeated bad keys; lifted after 5 minutes", 300.0
    ),
    # 2captcha's temporary bans for request floods (unconfirmed for CaptchaAI)
    CodeInfo("ERROR: 1001", "pause_fleet", "temporary ban for too many requests (2captcha)", 600.0),
    CodeInfo("ERROR: 1002", "pause_fleet", "temporary ban for too many requests (2captcha)", 300.0),
    CodeInfo("ERROR: 1003", "pause_fleet", "temporary ban for too many requests (2captcha)", 30.0),
    CodeInfo("ERROR: 1004", "pause_fleet", "temporary ban for too many requests (2captcha)", 600.0),
    CodeInfo("ERROR: 1005", "pause_fleet", "temporary ban for too many requests (2captcha)", 300.0),
    # capacity
    CodeInfo(
        "ERROR_ZERO_BALANCE",
        "busy",
        "no free threads (CaptchaAI); an account with no threads at all is an AccountError",
        8.0,
    ),
    CodeInfo("ERROR_NO_SLOT_AVAILABLE", "busy", "all threads are busy; the task was not queued", 5.0),
    CodeInfo("MAX_USER_TURN", "busy", "the account's queue is full", 10.0),
    CodeInfo("ERROR_TOO_MUCH_REQUESTS", "busy", "request rate limit", 10.0),
    CodeInfo("HTTP_429", "busy", "HTTP 429: request rate limit", 5.0),
    # the task's input
    CodeInfo("ERROR_PAGEURL", "fail_task", "pageurl missing or invalid"),
    CodeInfo("ERROR_GOOGLEKEY", "fail_task", "googlekey blank, malformed or missing"),
    CodeInfo("ERROR_WRONG_GOOGLEKEY", "fail_task", "googlekey blank, malformed or missing"),
    CodeInfo("ERROR_BAD_TOKEN_OR_PAGEURL", "fail_task", "the googlekey and pageurl do not belong together"),
    CodeInfo("ERROR_BAD_PARAMETERS", "fail_task", "required params missing or of the wrong type"),
    CodeInfo("ERROR_ZERO_CAPTCHA_FILESIZE", "fail_task", "the image is too small or missing"),
    CodeInfo("ERROR_TOO_BIG_CAPTCHA_FILESIZE", "fail_task", "the image is too large"),
    CodeInfo("ERROR_IMAGE_DIMENSIONS_TOO_LARGE", "fail_task", "the image is over the pixel limit"),
    CodeInfo("ERROR_WRONG_FILE_EXTENSION", "fail_task", "the file is not jpg, jpeg, png or gif"),
    CodeInfo("ERROR_IMAGE_TYPE_NOT_SUPPORTED", "fail_task", "the image type is not recognised"),
    CodeInfo("ERROR_UPLOAD", "fail_task", "malformed upload or invalid base64"),
    CodeInfo("ERROR_BAD_PROXY", "fail_task", "the proxy is marked bad: use another one"),
    CodeInfo("ERROR_BAD_DUPLICATES", "fail_task", "not enough matching answers (100% accuracy mode)"),
    CodeInfo("ERROR_CAPTCHAIMAGE_BLOCKED", "fail_task", "the image was blocked by moderation"),
    CodeInfo("ERROR_DOMAIN_NOT_ALLOWED", "fail_task", "this domain is not allowed"),
    CodeInfo("ERROR_WRONG_ID_FORMAT", "fail_task", "the task id is not numeric"),
    CodeInfo("ERROR_WRONG_CAPTCHA_ID", "fail_task", "unknown or expired task id"),
    CodeInfo("ERROR_EMPTY_ACTION", "fail_task", "res.php called without an action"),
    CodeInfo("ERROR_TOKEN_EXPIRED", "fail_task", "the challenge expired before it was solved"),
    CodeInfo("INVALID_TASK", "fail_task", "the task failed local validation"),
    CodeInfo("ERROR_TASK_NOT_SUPPORTED", "fail_task", "the provider does not solve this kind of task"),
    # the solve
    CodeInfo("ERROR_CAPTCHA_UNSOLVABLE", "fresh_solve", "the service could not solve it"),
    # transient
    CodeInfo("ERROR_PROXY_CONNECTION_FAILED", "retry", "the solver could not connect through the proxy", 5.0),
    CodeInfo("ERROR_SERVER_ERROR", "retry", "transient server error", 10.0),
    CodeInfo("ERROR_INTERNAL_SERVER_ERROR", "retry", "transient server error", 10.0),
    CodeInfo("HTTP_5XX", "retry", "the service answered an HTTP 5xx status", 5.0),
    CodeInfo("HTTP_ERROR", "retry", "the service answered an unexpected HTTP status", 5.0),
    CodeInfo("HTML_PAGE", "retry", "the service answered an HTML page", 5.0),
    CodeInfo("BAD_RESPONSE", "retry", "the answer could not be understood", 5.0),
    CodeInfo("TIMEOUT", "retry", "the request timed out (a submit may still have reached the service)"),
    CodeInfo("CONNECTION_ERROR", "retry", "the connection failed or was reset"),
    # reports
    CodeInfo("OK_REPORT_RECORDED", "ignore", "the report was recorded"),
    CodeInfo("REPORT_NOT_RECORDED", "ignore", "the report was not recorded"),
    CodeInfo("ERROR_DUPLICATE_REPORT", "ignore", "this task was already reported"),
)

NOT_READY_CODES = frozenset(c.code for c in CODES.values() if c.policy == "not_ready")
REPORT_OK_CODES = frozenset({"OK_REPORT_RECORDED"})

_logged_unknown: set[str] = set()
_logged_lock = threading.Lock()


def is_service_code(text: str) -> bool:
    """Whether a plain-text body is a service code rather than an answer."""
    return text in CODES or text.startswith(("ERROR_", "ERROR: ")) or text == "IP_BANNED"


def info_for(code: str, codes: Mapping[str, CodeInfo] | None = None) -> CodeInfo:
    """The table row of ``code``; HTTP statuses fold into HTTP_5XX / HTTP_ERROR; unknown -> retry.

    ``codes``: a provider's table (``ProviderProfile.codes``); default the CaptchaAI one, ``CODES``.
    """
    table = CODES if codes is None else codes
    info = table.get(code)
    if info is not None:
        return info
    if code.startswith("HTTP_"):
        return table.get("HTTP_5XX", CODES["HTTP_5XX"]) if code[5:6] == "5" else CODES["HTTP_ERROR"]
    with _logged_lock:
        first = code not in _logged_unknown
        _logged_unknown.add(code)
    if first:
        log.warning("unknown solver code %r: treated as transient (retry with backoff)", code[:80])
    return CodeInfo(code, "retry", "an unknown code (treated as transient)", 5.0)


def error_for(
    code: str,
    detail: str = "",
    *,
    time_scale: float = 1.0,
    retry_after_s: float | None = None,
    codes: Mapping[str, CodeInfo] | None = None,
) -> SolverError:
    """The exception for a service code. ``detail`` is appended to the meaning (already redacted);
    ``codes`` is the provider's table (default: CaptchaAI's)."""
    info = info_for(code, codes)
    message = info.meaning if not detail else f"{info.meaning} ({detail})"
    wait_s = retry_after_s if retry_after_s is not None else info.wait_s
    scaled = wait_s * time_scale if wait_s is not None else None
    if info.policy == "pause_fleet":
        return AccountError(code, message, pause_s=scaled, retry_after_s=scaled)
    if info.policy == "stop_fleet":
        return AccountError(code, message, pause_s=None)
    return info.error_class(code, message, retry_after_s=scaled)
