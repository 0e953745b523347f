"""``POST /control``: change the simulator while it runs (for chaos tests).

The body is a JSON object; every field is optional::

    {"threads": 5,                       # every account (and accounts created later)
     "over_capacity": "no_slot",         # no_slot | zero_balance | queue
     "unsolvable_rate": 0.1,
     "time_scale": 0.01,
     "fault_rate": 0.2, "fault_kinds": ["http_500", "reset"],   # or "faults": {"http_500": 0.1}
     "accounts": {"<label or key>": {"threads": 0, "state": "bad", "ip_allowed": false, "balance": 0}},
     "next_errors": {"in": ["ERROR_NO_SLOT_AVAILABLE"], "res": ["ERROR_SERVER_ERROR"]},
     "unban": true,
     "min_poll_interval_s": 5, "multi_get": false, "id_format": "int", "pingback_mode": "post_form"}

The answer (and ``GET /control``) is the current settings, without keys.
"""

from __future__ import annotations

from typing import Any

from .accounts import OVER_CAPACITY_MODES
from .engine import Simulator
from .faults import DEFAULT_FAULT_KINDS, FaultPlan

__all__ = ["apply_control", "current_settings"]

_PLAIN_FIELDS = {
    "unsolvable_rate": float,
    "min_poll_interval_s": float,
    "multi_get": bool,
    "json_answers_as_text": bool,
    "accept_unknown_methods": bool,
    "slow_real_s": float,
    "hang_real_s": float,
    "pingback_attempts": int,
}
_CHOICES = {
    "id_format": ("mixed", "int", "string"),
    "pingback_mode": ("get_query", "post_form", "off"),
    "cf_answer_field": ("result", "request"),
    "over_capacity": OVER_CAPACITY_MODES,
}


def apply_control(simulator: Simulator, changes: dict[str, Any]) -> None:
    """Apply ``changes`` (validated first: a bad field changes nothing); raises ValueError."""
    config = simulator.config
    known = {*_PLAIN_FIELDS, *_CHOICES, "threads", "time_scale", "fault_rate", "fault_kinds", "faults"}
    known |= {"accounts", "next_errors", "unban"}
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown control fields: {', '.join(sorted(unknown))}")
    for name, allowed in _CHOICES.items():
        if name in changes and changes[name] not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}")
    plan = _fault_plan(changes, config.faults)
    accounts = {}
    for name, fields in (changes.get("accounts") or {}).items():
        account = simulator.accounts.by_label_or_key(name)
        if account is None:
            raise ValueError(f"no account {name[:12]!r}")
        accounts[name] = (account, fields)
    if "time_scale" in changes and float(changes["time_scale"]) <= 0:
        raise ValueError("time_scale must be positive")
    # validated: apply
    for name, kind in _PLAIN_FIELDS.items():
        if name in changes:
            value = changes[name]
            setattr(config, name, None if value is None else kind(value))
    for name in _CHOICES:
        if name in changes:
            setattr(config, name, changes[name])
    if "time_scale" in changes:
        config.time_scale = float(changes["time_scale"])
    config.faults = plan
    if "threads" in changes:
        threads = int(changes["threads"])
        config.threads = simulator.accounts.default_threads = threads
        for account in simulator.accounts.accounts:
            account.threads = threads
    for account, fields in accounts.values():
        if "threads" in fields:
            account.threads = int(fields["threads"])
        if "state" in fields:
            account.state = "bad" if fields["state"] == "bad" else "ok"
        if "ip_allowed" in fields:
            account.ip_allowed = bool(fields["ip_allowed"])
        if "balance" in fields:
            account.balance = float(fields["balance"])
    for endpoint, codes in (changes.get("next_errors") or {}).items():
        if endpoint not in simulator.forced:
            raise ValueError("next_errors endpoints are 'in' and 'res'")
        simulator.forced[endpoint].extend(str(code) for code in codes)
    if changes.get("unban"):
        simulator.accounts.unban()
    simulator.kick_queues()


def _fault_plan(changes: dict[str, Any], current: FaultPlan) -> FaultPlan:
    if "faults" in changes:
        return FaultPlan({str(k): float(v) for k, v in dict(changes["faults"]).items()})
    if "fault_rate" in changes or "fault_kinds" in changes:
        rate = float(changes.get("fault_rate", current.total_rate))
        kinds = changes.get("fault_kinds") or list(current.rates) or list(DEFAULT_FAULT_KINDS)
        return FaultPlan.uniform(rate, kinds)
    return current


def current_settings(simulator: Simulator) -> dict[str, Any]:
    config = simulator.config
    return {
        "threads": config.threads,
        "over_capacity": config.over_capacity,
        "time_scale": config.time_scale,
        "unsolvable_rate": config.unsolvable_rate,
        "faults": dict(config.faults.rates),
        "id_format": config.id_format,
        "multi_get": config.multi_get,
        "min_poll_interval_s": config.min_poll_interval_s,
        "pingback_mode": config.pingback_mode,
        "cf_answer_field": config.cf_answer_field,
        "open_accounts": simulator.accounts.open,
        "accounts": {a.label: {"threads": a.threads, "state": a.state} for a in simulator.accounts.accounts},
        "next_errors": {k: list(v) for k, v in simulator.forced.items()},
    }
