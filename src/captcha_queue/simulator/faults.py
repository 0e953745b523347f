"""Fault injection and solve-time models for the simulator. Seeded, so a run can be replayed.

Fault kinds (drawn per in.php / res.php request, before it is processed unless noted):

==================  =========================================================================
``http_500``        HTTP 500 or 503 with a short text body
``html_502``        HTTP 502 with an HTML error page (what a proxy in front of the service sends)
``garbage``         HTTP 200 with a body that is neither JSON nor a code
``plaintext_error`` HTTP 200 ``ERROR_SERVER_ERROR`` as plain text although ``json=1`` was sent
``plaintext``       the request is processed; the normal answer is sent as plain text despite ``json=1``
``http_429``        HTTP 429 with ``Retry-After`` (time-scaled)
``reset``           the connection is reset without an answer
``hang``            no answer until ``hang_s`` passes (or the simulator stops): the client must time out
``slow``            the answer comes after ``slow_s``
``lost_reply``      the request is processed (a submit creates its task), then the connection is reset:
                    the duplicate-submission case. Opt-in: not in the default kinds
==================  =========================================================================
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_FAULT_KINDS",
    "DEFAULT_LATENCY",
    "FAULT_KINDS",
    "FaultPlan",
    "LatencyModel",
    "latency_for",
]

FAULT_KINDS: tuple[str, ...] = (
    "http_500",
    "html_502",
    "garbage",
    "plaintext_error",
    "plaintext",
    "http_429",
    "reset",
    "hang",
    "slow",
    "lost_reply",
)
DEFAULT_FAULT_KINDS: tuple[str, ...] = tuple(k for k in FAULT_KINDS if k != "lost_reply")


@dataclass(frozen=True)
class LatencyModel:
    """Log-normal solve time around ``median_s``, clipped to ``[min_s, max_s]`` (service seconds)."""

    median_s: float
    sigma: float = 0.35
    min_s: float = 0.0
    max_s: float = math.inf

    def sample(self, rng: random.Random) -> float:
        value = (
            self.median_s * math.exp(self.sigma * rng.gauss(0.0, 1.0)) if self.sigma > 0 else self.median_s
        )
        return min(self.max_s, max(self.min_s, value))

    @classmethod
    def parse(cls, text: str) -> LatencyModel:
        """``median`` or ``median:min:max`` in seconds (e.g. ``35:15:80``); a fixed time is ``5:5:5``."""
        parts = [float(p) for p in text.split(":")]
        if len(parts) == 1:
            return cls(parts[0])
        if len(parts) == 3:
            return cls(parts[0], min_s=parts[1], max_s=parts[2])
        raise ValueError(f"latency must be 'median' or 'median:min:max', got {text!r}")


_IMAGE = LatencyModel(1.2, 0.45, 0.5, 3.0)
_TOKEN = LatencyModel(11.0, 0.2, 8.0, 15.0)
#: The spec's section 4.3 proposal (not sourced; 8-15 s where it has no number).
DEFAULT_LATENCY: Mapping[str, LatencyModel] = {
    "image": _IMAGE,
    "grid": LatencyModel(2.0, 0.4, 0.5, 5.0),
    "bls": LatencyModel(2.0, 0.4, 0.5, 5.0),
    "recaptcha_v3": LatencyModel(5.0, 0.3, 2.0, 10.0),
    "recaptcha_v3_enterprise": LatencyModel(5.0, 0.3, 2.0, 10.0),
    "turnstile": _TOKEN,
    "recaptcha_v2": LatencyModel(35.0, 0.35, 20.0, 80.0),
    "recaptcha_v2_invisible": LatencyModel(35.0, 0.35, 20.0, 80.0),
    "recaptcha_v2_enterprise": LatencyModel(35.0, 0.35, 20.0, 80.0),
    "geetest_v3": LatencyModel(14.0, 0.25, 10.0, 20.0),
    "geetest_v4": LatencyModel(14.0, 0.25, 10.0, 20.0),
    "cloudflare_challenge": LatencyModel(75.0, 0.15, 60.0, 90.0),
    "captchafox": _TOKEN,
    "friendly_captcha": _TOKEN,
    "lemin": _TOKEN,
}


def latency_for(variant: str, overrides: Mapping[str, LatencyModel]) -> LatencyModel:
    return overrides.get(variant) or overrides.get("*") or DEFAULT_LATENCY.get(variant) or _TOKEN


class FaultPlan:
    """Per-kind rates; ``draw`` returns the fault for one request, or None (most of the time)."""

    def __init__(self, rates: Mapping[str, float] | None = None) -> None:
        self.rates: dict[str, float] = {}
        for kind, rate in (rates or {}).items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {kind} must be within [0, 1], got {rate}")
            if rate > 0:
                self.rates[kind] = rate
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")

    @classmethod
    def uniform(cls, rate: float, kinds: Iterable[str] = DEFAULT_FAULT_KINDS) -> FaultPlan:
        """``rate`` of all requests fail, spread evenly over ``kinds``."""
        chosen = list(kinds)
        unknown = [kind for kind in chosen if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind {unknown[0]!r}; known: {', '.join(FAULT_KINDS)}")
        if rate <= 0 or not chosen:
            return cls({})
        return cls(dict.fromkeys(chosen, rate / len(chosen)))

    @property
    def total_rate(self) -> float:
        return sum(self.rates.values())

    def draw(self, rng: random.Random) -> str | None:
        if not self.rates:
            return None
        point = rng.random()
        for kind, rate in self.rates.items():
            if point < rate:
                return kind
            point -= rate
        return None
