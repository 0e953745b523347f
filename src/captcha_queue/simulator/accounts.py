"""Simulated accounts: keys, thread limits, over-capacity behaviour, balance, IP bans.

Accounts are known by a *label*, never by their key, in everything the simulator shows (``/stats``,
logs): the label is the configured name, or ``acct-`` plus a short hash of the key.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Account", "AccountBook", "KeyCheck", "OverCapacity", "account_label"]

OverCapacity = Literal["no_slot", "zero_balance", "queue"]
OVER_CAPACITY_MODES: tuple[OverCapacity, ...] = ("no_slot", "zero_balance", "queue")
#: The code each rejecting mode answers when every thread is busy.
OVER_CAPACITY_CODES: Mapping[str, str] = {
    "no_slot": "ERROR_NO_SLOT_AVAILABLE",
    "zero_balance": "ERROR_ZERO_BALANCE",
}

KEY_LENGTH = 32


def account_label(key: str) -> str:
    """A stable, key-free name for an account."""
    return "acct-" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass
class Account:
    label: str
    threads: int
    balance: float
    state: Literal["ok", "bad"] = "ok"
    ip_allowed: bool = True
    working: int = 0  # tasks being solved (holding a thread)
    in_flight: int = 0  # accepted and not finished: working + queued
    queued: deque[int] = field(default_factory=deque)  # task ids waiting for a thread ("queue" mode)
    max_in_flight: int = 0
    max_working: int = 0
    submits: int = 0
    solved: int = 0
    rejected_over_capacity: int = 0
    spent: float = 0.0  # charged for accepted tasks (profiles that pay per solve)
    refunds: int = 0  # tasks whose price came back (a bad report, or unsolvable)
    refunded: float = 0.0
    reports_bad: int = 0
    reports_good: int = 0
    rejected_no_funds: int = 0

    def accept(self) -> None:
        self.in_flight += 1
        self.submits += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def start(self) -> None:
        self.working += 1
        self.max_working = max(self.max_working, self.working)

    def finish(self) -> None:
        self.working -= 1
        self.in_flight -= 1
        self.solved += 1

    def has_free_thread(self) -> bool:
        return self.working < self.threads

    def reset_stats(self) -> None:
        self.max_in_flight = self.in_flight
        self.max_working = self.working
        self.submits = self.solved = self.rejected_over_capacity = 0
        self.refunds = self.reports_bad = self.reports_good = self.rejected_no_funds = 0
        self.spent = self.refunded = 0.0

    def snapshot(self) -> dict[str, object]:
        return {
            "threads": self.threads,
            "working_threads": self.working,
            "in_flight": self.in_flight,
            "queued": len(self.queued),
            "max_in_flight": self.max_in_flight,
            "max_working": self.max_working,
            "submits": self.submits,
            "solved": self.solved,
            "rejected_over_capacity": self.rejected_over_capacity,
            "balance": round(self.balance, 6),
            "spent": round(self.spent, 6),
            "refunds": self.refunds,
            "refunded": round(self.refunded, 6),
            "reports_bad": self.reports_bad,
            "reports_good": self.reports_good,
            "rejected_no_funds": self.rejected_no_funds,
            "state": self.state,
            "ip_allowed": self.ip_allowed,
        }


@dataclass(frozen=True)
class KeyCheck:
    account: Account | None
    code: str | None  # the error to answer, or None when the key is good


class AccountBook:
    """Known keys and their accounts, plus the per-IP bad-key counter behind IP_BANNED.

    ``keys`` None: any well-formed key is an account (created on first use). ``names`` maps keys to
    labels. ``clock`` is a monotonic clock in seconds.
    """

    def __init__(
        self,
        *,
        keys: tuple[str, ...] | None,
        names: Mapping[str, str],
        threads: int,
        balance: float,
        ban_after: int,
        ban_s: float,
        clock: Callable[[], float],
        key_length: int | None = KEY_LENGTH,
    ) -> None:
        self.open = keys is None
        self.key_length = key_length
        self.default_threads = threads
        self.default_balance = balance
        self.ban_after = ban_after
        self.ban_s = ban_s
        self._clock = clock
        self._names = dict(names)
        self._accounts: dict[str, Account] = {}
        self._bad_keys: dict[str, int] = {}  # ip -> consecutive bad-key requests
        self._banned_until: dict[str, float] = {}  # ip -> monotonic deadline
        for key in keys or ():
            self._create(key)

    def _create(self, key: str) -> Account:
        label = self._names.get(key) or account_label(key)
        account = Account(label=label, threads=self.default_threads, balance=self.default_balance)
        self._accounts[key] = account
        return account

    @property
    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    def by_label_or_key(self, name: str) -> Account | None:
        if name in self._accounts:
            return self._accounts[name]
        for account in self._accounts.values():
            if account.label == name:
                return account
        if self.open and self._well_formed(name):
            return self._create(name)
        return None

    def check(self, key: str | None, ip: str) -> KeyCheck:
        """The account of ``key`` as seen from ``ip``, or the error code the service would answer."""
        now = self._clock()
        until = self._banned_until.get(ip)
        if until is not None:
            if now < until:
                return KeyCheck(None, "IP_BANNED")
            del self._banned_until[ip]
        key = (key or "").strip()
        if not self._well_formed(key):
            return self._bad(ip, "ERROR_WRONG_USER_KEY")
        account = self._accounts.get(key)
        if account is None and self.open:
            account = self._create(key)
        if account is None or account.state == "bad":
            return self._bad(ip, "ERROR_KEY_DOES_NOT_EXIST")
        self._bad_keys.pop(ip, None)
        if not account.ip_allowed:
            return KeyCheck(account, "ERROR_IP_NOT_ALLOWED")
        return KeyCheck(account, None)

    def _well_formed(self, key: str) -> bool:
        if self.key_length is None:
            return 8 <= len(key) <= 128
        return len(key) == self.key_length

    def _bad(self, ip: str, code: str) -> KeyCheck:
        count = self._bad_keys.get(ip, 0) + 1
        self._bad_keys[ip] = count
        if self.ban_after > 0 and count >= self.ban_after:
            self._banned_until[ip] = self._clock() + self.ban_s
            self._bad_keys.pop(ip, None)
        return KeyCheck(None, code)

    def unban(self) -> None:
        self._banned_until.clear()
        self._bad_keys.clear()

    def banned_ips(self) -> int:
        now = self._clock()
        return sum(1 for until in self._banned_until.values() if until > now)
