"""The simulator's settings. Durations are *service* seconds (multiplied by ``time_scale``) unless a
name says ``real``: ``time_scale=0.01`` turns a 35 s reCAPTCHA v2 solve into 0.35 s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .accounts import OVER_CAPACITY_MODES, OverCapacity
from .faults import FaultPlan, LatencyModel
from .profiles import sim_profile

__all__ = ["IdFormat", "PingbackMode", "SimulatorConfig"]

IdFormat = Literal["mixed", "int", "string"]
PingbackMode = Literal["get_query", "post_form", "off"]


@dataclass
class SimulatorConfig:
    # the provider: endpoints, error semantics, thread limit discovery, billing (simulator/profiles.py)
    profile: str = "captchaai"
    price: float | None = None  # charged per accepted task; None: the profile's (0 for captchaai)
    # accounts
    keys: tuple[str, ...] | None = None  # None: any well-formed 32-character key is an account
    names: Mapping[str, str] = field(default_factory=dict)  # key -> label shown in /stats
    threads: int = 50  # per account
    over_capacity: OverCapacity = "zero_balance"
    balance: float = 10.0
    ip_ban_after: int = 5  # consecutive bad-key requests from one IP
    ip_ban_s: float = 300.0
    # time and solving
    time_scale: float = 1.0
    latency: Mapping[str, LatencyModel] = field(default_factory=dict)  # variant (or "*") -> model
    unsolvable_rate: float = 0.0
    seed: int | None = None
    # faults
    faults: FaultPlan = field(default_factory=FaultPlan)
    slow_real_s: float = 2.0  # how late a "slow" answer comes (real seconds)
    hang_real_s: float = 300.0  # how long a "hang" lasts at most (real seconds; ends at shutdown)
    # protocol details where the sources disagree
    id_format: IdFormat = "mixed"  # mixed: JSON integers for userrecaptcha (as observed), strings otherwise
    json_default: bool = False  # the answer format when a request sends no json param
    json_answers_as_text: bool = False  # GeeTest/grid/BLS/Lemin answers as a JSON string, not a value
    cf_answer_field: Literal["result", "request"] = "result"  # cloudflare_challenge (SDK vs examples)
    multi_get: bool = True  # res.php ?ids=1,2,3 (legacy; undocumented on CaptchaAI)
    accept_unknown_methods: bool = False  # answer a token for methods outside the table
    min_poll_interval_s: float | None = None  # strict mode: ERROR_TOO_MUCH_REQUESTS when polled faster
    result_ttl_real_s: float = 900.0  # finished tasks can be polled this long (then ERROR_WRONG_CAPTCHA_ID)
    # images (the sources disagree; these are the spec's simulator defaults)
    min_image_bytes: int = 100
    max_image_bytes: int = 1 << 20
    max_image_px: int = 1000
    # pingback
    pingback_mode: PingbackMode = "get_query"
    pingback_attempts: int = 1
    pingback_timeout_real_s: float = 5.0
    # test endpoints: POST /stats/reset and /control need "Authorization: Bearer <control_token>"
    control_token: str | None = field(default=None, repr=False)  # None: a random one per app

    def __post_init__(self) -> None:
        sim_profile(self.profile)  # ValueError for an unknown one
        if self.price is not None and not 0.0 <= self.price < float("inf"):
            raise ValueError("price must be a finite number >= 0")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")
        if self.over_capacity not in OVER_CAPACITY_MODES:
            raise ValueError(f"over_capacity must be one of {', '.join(OVER_CAPACITY_MODES)}")
        if not 0.0 <= self.unsolvable_rate <= 1.0:
            raise ValueError("unsolvable_rate must be within [0, 1]")

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale
