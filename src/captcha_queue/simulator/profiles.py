"""The simulator's provider profiles (``--profile``): which endpoints it serves and with what semantics.

=============  ========  ==========  ==========  =================  ======================================
profile        in.php    JSON API    threadsinfo  pays per solve     a wrong key
=============  ========  ==========  ==========  =================  ======================================
captchaai      yes       no          yes          no (threads)       ERROR_WRONG_USER_KEY / ..._NOT_EXIST
2captcha       yes       yes (v2)    no           yes                same; JSON: ERROR_KEY_DOES_NOT_EXIST
capsolver      no        yes         no           yes                ERROR_KEY_DENIED_ACCESS (HTTP 401)
anticaptcha    no        yes         no           yes                ERROR_KEY_DOES_NOT_EXIST
generic-inphp  yes       no          no           yes                as 2captcha
=============  ========  ==========  ==========  =================  ======================================

A profile that pays per solve charges ``price`` when a task is accepted, answers ``ERROR_ZERO_BALANCE``
(no money) when the balance cannot pay, gives the price back when the service gave up
(``ERROR_CAPTCHA_UNSOLVABLE``) and on a bad report (once per task), and answers over-capacity submits
with its busy code (``ERROR_NO_SLOT_AVAILABLE``) instead of CaptchaAI's ``ERROR_ZERO_BALANCE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..protocol.tasktypes import DialectName
from ..solvers.profiles import PROFILES

__all__ = ["SIM_PROFILES", "SimProfile", "sim_profile"]


@dataclass(frozen=True)
class SimProfile:
    name: str
    inphp: bool
    #: The JSON API's dialect (``protocol.tasktypes``), or None when the profile serves no JSON API.
    json_dialect: DialectName | None
    threadsinfo: bool
    bills_per_solve: bool
    price: float
    #: None: any non-empty key of 8+ characters is well formed (CapSolver's keys are not 32 long).
    key_length: int | None = 32
    #: JSON errorCode for each in.php code the engine answers (the rest pass unchanged).
    json_codes: Mapping[str, str] | None = None
    #: HTTP status of JSON error answers per errorCode (default 200).
    json_status: Mapping[str, int] | None = None

    @property
    def variants(self) -> frozenset[str]:
        """The task variants this service solves (the client's profile table; 2captcha: both APIs)."""
        names = {self.name, "2captcha-v2"} if self.name == "2captcha" else {self.name}
        return frozenset().union(*(PROFILES[n].variants for n in names))


_ANTICAPTCHA_CODES = {
    "ERROR_WRONG_USER_KEY": "ERROR_KEY_DOES_NOT_EXIST",
    "IP_BANNED": "ERROR_IP_BLOCKED",
    "ERROR_WRONG_CAPTCHA_ID": "ERROR_NO_SUCH_CAPCHA_ID",
    "ERROR_WRONG_ID_FORMAT": "ERROR_NO_SUCH_CAPCHA_ID",
    "ERROR_PAGEURL": "ERROR_BAD_PARAMETERS",
    "ERROR_GOOGLEKEY": "ERROR_RECAPTCHA_INVALID_SITEKEY",
    "ERROR_UPLOAD": "ERROR_IMAGE_TYPE_NOT_SUPPORTED",
}
_CAPSOLVER_CODES = {
    "ERROR_WRONG_USER_KEY": "ERROR_KEY_DENIED_ACCESS",
    "ERROR_KEY_DOES_NOT_EXIST": "ERROR_KEY_DENIED_ACCESS",
    "ERROR_IP_NOT_ALLOWED": "ERROR_KEY_DENIED_ACCESS",
    "IP_BANNED": "ERROR_KEY_DENIED_ACCESS",
    "ERROR_WRONG_CAPTCHA_ID": "ERROR_TASKID_INVALID",
    "ERROR_WRONG_ID_FORMAT": "ERROR_TASKID_INVALID",
    "ERROR_CAPTCHA_UNSOLVABLE": "ERROR_CAPTCHA_SOLVE_FAILED",
    "ERROR_NO_SLOT_AVAILABLE": "ERROR_RATE_LIMIT",
    "ERROR_BAD_PARAMETERS": "ERROR_INVALID_TASK_DATA",
    "ERROR_PAGEURL": "ERROR_INVALID_TASK_DATA",
    "ERROR_GOOGLEKEY": "ERROR_INVALID_TASK_DATA",
    "ERROR_BAD_PROXY": "ERROR_INVALID_TASK_DATA",
    "ERROR_UPLOAD": "ERROR_INVALID_TASK_DATA",
    "ERROR_ZERO_CAPTCHA_FILESIZE": "ERROR_INVALID_TASK_DATA",
    "ERROR_TOO_BIG_CAPTCHA_FILESIZE": "ERROR_INVALID_TASK_DATA",
    "ERROR_IMAGE_TYPE_NOT_SUPPORTED": "ERROR_INVALID_TASK_DATA",
    "ERROR_IMAGE_DIMENSIONS_TOO_LARGE": "ERROR_INVALID_TASK_DATA",
    "ERROR_TASK_NOT_SUPPORTED": "ERROR_INVALID_TASK_DATA",
}

SIM_PROFILES: Mapping[str, SimProfile] = {
    "captchaai": SimProfile("captchaai", True, None, True, False, 0.0),
    "2captcha": SimProfile("2captcha", True, "2captcha", False, True, 0.002, json_codes=_ANTICAPTCHA_CODES),
    "capsolver": SimProfile(
        "capsolver",
        False,
        "capsolver",
        False,
        True,
        0.001,
        key_length=None,
        json_codes=_CAPSOLVER_CODES,
        json_status={"ERROR_KEY_DENIED_ACCESS": 401, "ERROR_RATE_LIMIT": 429},
    ),
    "anticaptcha": SimProfile(
        "anticaptcha", False, "anticaptcha", False, True, 0.002, json_codes=_ANTICAPTCHA_CODES
    ),
    "generic-inphp": SimProfile("generic-inphp", True, None, False, True, 0.002),
}
#: Alias: 2captcha's profile serves both of its APIs.
_ALIASES = {"2captcha-v2": "2captcha"}


def sim_profile(name: str) -> SimProfile:
    """The profile called ``name``; ValueError names the known ones."""
    profile = SIM_PROFILES.get(_ALIASES.get(name, name))
    if profile is None:
        raise ValueError(f"unknown simulator profile {name!r}; known: {', '.join(SIM_PROFILES)}")
    return profile
