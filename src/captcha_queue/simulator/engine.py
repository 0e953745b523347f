"""The simulated service: accounts, tasks and their timers, independent of HTTP.

A solve is a timer (``loop.call_later``), not a coroutine, so thousands of tasks in flight cost a
heap entry each. Finished tasks stay pollable for ``result_ttl_real_s`` and are pruned by one
periodic timer.

Test hooks (params that pass through the queue untouched, since unknown params are kept):

* ``x_sim_error=CODE`` on in.php: answer that code instead of accepting the task;
* ``x_sim_result=CODE``: the task finishes with that code (e.g. ERROR_CAPTCHA_UNSOLVABLE);
* ``x_sim_solve_s=N``: the task takes N real seconds (not scaled);
* ``x_task=KEY``: the task key counted in ``/stats`` ``submits_by_task``.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..protocol.answers import Answer, plain_value
from ..protocol.answers import error as _error
from ..protocol.methods import MethodSpec, canonical_params
from .accounts import OVER_CAPACITY_CODES, Account, AccountBook
from .config import SimulatorConfig
from .faults import latency_for
from .profiles import SimProfile, sim_profile
from .stats import SimStats, task_key_of
from .validation import Upload, check_submit

__all__ = ["Answer", "SimTask", "Simulator"]

_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)


class SimTask:
    __slots__ = (
        "accepted_at",
        "account",
        "answer",
        "code",
        "done_at",
        "id",
        "key",
        "last_poll",
        "params",
        "price",
        "reported",
        "solve_s",
        "spec",
        "state",
        "timer",
        "user_agent",
    )

    def __init__(self, task_id: int, account: Account, spec: MethodSpec, params: dict[str, str]) -> None:
        self.id = task_id
        self.account = account
        self.spec = spec
        self.params = params  # only the few the answer or a pingback needs
        self.state = "queued"  # queued -> solving -> done
        self.answer: Any = None
        self.user_agent: str | None = None
        self.code: str | None = None  # the error a finished task answers
        self.done_at = 0.0
        self.last_poll = -1e18
        self.solve_s = 0.0
        self.price = 0.0
        self.reported = False
        self.timer: asyncio.TimerHandle | None = None
        self.key: str | None = None  # the task key the submit counts go by (stats.task_key_of)
        self.accepted_at = 0.0


class Simulator:
    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.rng = random.Random(config.seed)
        self.stats = SimStats()
        self.profile: SimProfile = sim_profile(config.profile)
        self.accounts = AccountBook(
            key_length=self.profile.key_length,
            keys=config.keys,
            names=config.names,
            threads=config.threads,
            balance=config.balance,
            ban_after=config.ip_ban_after,
            ban_s=config.scaled(config.ip_ban_s),
            clock=clock,
        )
        self.tasks: dict[int, SimTask] = {}
        self._done: deque[SimTask] = deque()
        self._next_id = 7_000_000_000 + self.rng.randrange(10**8)
        self.forced: dict[str, deque[str]] = {"in": deque(), "res": deque()}
        self.on_done: Callable[[SimTask], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prune_timer: asyncio.TimerHandle | None = None
        self._unfinished: dict[int, SimTask] = {}  # accepted, not finished: in flight

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._schedule_prune()

    def stop(self) -> None:
        if self._prune_timer is not None:
            self._prune_timer.cancel()
        for task in self.tasks.values():
            if task.timer is not None:
                task.timer.cancel()
        self._loop = None

    @property
    def in_flight(self) -> int:
        return sum(a.in_flight for a in self.accounts.accounts)

    def snapshot(self) -> dict[str, Any]:
        accounts = {a.label: a.snapshot() for a in self.accounts.accounts}
        return self.stats.snapshot(
            in_flight=self.in_flight, accounts=accounts, banned_ips=self.accounts.banned_ips()
        )

    def reset_stats(self) -> None:
        self.stats.reset()
        self.stats.max_in_flight = self.in_flight
        self._note_peak(self.clock())
        for account in self.accounts.accounts:
            account.reset_stats()

    # -- in.php --------------------------------------------------------------------------------------

    def submit(self, raw: Mapping[str, str], uploads: Mapping[str, Upload], ip: str) -> Answer:
        self.stats.submit_requests += 1
        check = self.accounts.check(raw.get("key"), ip)
        if check.code is not None or check.account is None:
            return _error(check.code or "ERROR_KEY_DOES_NOT_EXIST")
        account = check.account
        if self.forced["in"]:
            return _error(self.forced["in"].popleft())
        if raw.get("x_sim_error"):
            return _error(raw["x_sim_error"])
        if account.threads <= 0:  # CaptchaAI: "Your Account Has No Threads"
            return _error("ERROR_KEY_DOES_NOT_EXIST")
        wire = raw.get("method", "").strip()
        params = canonical_params(wire, {k: v for k, v in raw.items() if k not in ("key", "json", "method")})
        spec, rejection = check_submit(self.config, wire, params, uploads)
        if rejection is not None or spec is None:
            return _error(
                rejection.code if rejection else "ERROR_BAD_PARAMETERS",
                plain_only=bool(rejection and rejection.plain),
            )
        if (
            spec.known
            and spec.name.removesuffix("_file") not in self.profile.variants
            and (spec.name not in self.profile.variants)
        ):
            return _error("ERROR_BAD_PARAMETERS")  # the service has no such method
        if not account.has_free_thread() and self.config.over_capacity != "queue":
            account.rejected_over_capacity += 1
            mode = self.config.over_capacity
            if self.profile.bills_per_solve and mode == "zero_balance":
                mode = "no_slot"  # where ERROR_ZERO_BALANCE means "no money", busy is a slot code
            return _error(OVER_CAPACITY_CODES[mode])
        price = self.price_of(spec)
        if self.profile.bills_per_solve and (account.balance <= 0 or account.balance < price):
            account.rejected_no_funds += 1
            return _error("ERROR_ZERO_BALANCE")  # no money (2captcha, CapSolver, Anti-Captcha)
        return self._accept(account, spec, params, price)

    def price_of(self, spec: MethodSpec) -> float:
        """What one task costs on this profile (0 where the account pays for threads)."""
        if not self.profile.bills_per_solve:
            return 0.0
        return self.config.price if self.config.price is not None else self.profile.price

    def _accept(
        self, account: Account, spec: MethodSpec, params: dict[str, str], price: float = 0.0
    ) -> Answer:
        self._next_id += 1
        kept: dict[str, str] = {
            k: params[k]
            for k in ("pingback", "x_sim_result", "x_sim_solve_s", "numeric", "min_len", "max_len")
            if k in params
        }
        task = SimTask(self._next_id, account, spec, kept)
        task.price = price
        account.balance -= price
        account.spent += price
        self.tasks[task.id] = task
        task.key = task_key_of(params)
        task.accepted_at = self.clock()
        account.accept()
        self.stats.accepted(spec.name, task.key)
        self._unfinished[task.id] = task
        in_flight = self.in_flight
        if in_flight > self.stats.max_in_flight:
            self.stats.max_in_flight = in_flight
            self._note_peak(task.accepted_at)
        if account.has_free_thread():
            self._start(task)
        else:
            account.queued.append(task.id)
        as_int = self.config.id_format == "int" or (
            self.config.id_format == "mixed" and spec.wire_method == "userrecaptcha"
        )
        return Answer(ok=True, request=task.id if as_int else str(task.id))

    def _start(self, task: SimTask) -> None:
        task.state = "solving"
        task.account.start()
        forced = task.params.get("x_sim_solve_s")
        if forced is not None:
            delay = max(0.0, float(forced))
        else:
            delay = self.config.scaled(latency_for(task.spec.name, self.config.latency).sample(self.rng))
        task.solve_s = delay
        if self._loop is None:  # not serving: finish synchronously (unit use)
            self._finish(task)
            return
        task.timer = self._loop.call_later(delay, self._finish, task)

    def _note_peak(self, now: float) -> None:
        """What was in flight at the newest maximum (the chaos checker names those tasks when the
        maximum is over the fleet limit): each task's key, how long ago it was accepted, its state."""
        self.stats.peak = {
            "at_unix_s": round(time.time(), 3),
            "in_flight": len(self._unfinished),
            "tasks": [
                {"key": t.key, "accepted_s_ago": round(now - t.accepted_at, 3), "state": t.state}
                for t in self._unfinished.values()
            ],
        }

    def _finish(self, task: SimTask) -> None:
        self._unfinished.pop(task.id, None)
        task.timer = None
        task.state = "done"
        task.done_at = self.clock()
        account = task.account
        account.finish()
        forced = task.params.get("x_sim_result")
        if forced:
            task.code = forced
        elif self.config.unsolvable_rate > 0 and self.rng.random() < self.config.unsolvable_rate:
            task.code = "ERROR_CAPTCHA_UNSOLVABLE"
        if task.code == "ERROR_CAPTCHA_UNSOLVABLE":
            self.stats.unsolvable += 1
            self._refund(task)  # "the captcha price is automatically returned" (2captcha)
        elif task.code is None:
            task.answer, task.user_agent = self._make_answer(task)
            self.stats.solved += 1
        self._done.append(task)
        while account.queued and account.has_free_thread():
            queued = self.tasks.get(account.queued.popleft())
            if queued is not None and queued.state == "queued":
                self._start(queued)
        if self.on_done is not None and task.params.get("pingback"):
            self.on_done(task)

    def finish_now(self, task: SimTask) -> None:
        """Finish a task at once (answers given in the submit itself: CapSolver's image tasks)."""
        if task.state == "done":
            return
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
        if task.state == "queued":
            if task.id in task.account.queued:
                task.account.queued.remove(task.id)
            task.state = "solving"
            task.account.start()
        self._finish(task)

    def kick_queues(self) -> None:
        """Start queued tasks that fit (after the thread limit was raised at run time)."""
        for account in self.accounts.accounts:
            while account.queued and account.has_free_thread():
                queued = self.tasks.get(account.queued.popleft())
                if queued is not None and queued.state == "queued":
                    self._start(queued)

    # -- res.php -------------------------------------------------------------------------------------

    def res(self, raw: Mapping[str, str], ip: str) -> Answer:
        action = raw.get("action", "").strip()
        check = self.accounts.check(raw.get("key"), ip)
        if check.code is not None or check.account is None:
            return _error(check.code or "ERROR_KEY_DOES_NOT_EXIST")
        account = check.account
        if action == "get":
            self.stats.poll_requests += 1
        if self.forced["res"]:
            return _error(self.forced["res"].popleft())
        if not action:
            return _error("ERROR_EMPTY_ACTION")
        if action == "get":
            if raw.get("ids") and self.config.multi_get:
                return self._poll_many(account, raw["ids"])
            self.stats.polls += 1
            return self._poll_one(account, raw.get("id", ""))
        if action == "threadsinfo" and self.profile.threadsinfo:
            return Answer(
                ok=True,
                request="OK",
                document={"status": 1, "threads": account.threads, "working_threads": account.working},
            )
        if action == "getbalance":
            return Answer(ok=True, request=f"{account.balance:.3f}", bare=True)
        if action in ("reportbad", "reportgood"):
            return self._report(account, raw.get("id", ""), action)
        return _error("ERROR_BAD_PARAMETERS")

    def lookup(self, account: Account, raw_id: str) -> SimTask | str:
        """The account's task ``raw_id``, or the in.php code for an unknown one."""
        return self._lookup(account, raw_id)

    def _lookup(self, account: Account, raw_id: str) -> SimTask | str:
        raw_id = raw_id.strip()
        if not raw_id.isdigit():
            return "ERROR_WRONG_ID_FORMAT"
        task = self.tasks.get(int(raw_id))
        if task is None or task.account is not account:
            return "ERROR_WRONG_CAPTCHA_ID"
        return task

    def _poll_one(self, account: Account, raw_id: str) -> Answer:
        task = self._lookup(account, raw_id)
        if isinstance(task, str):
            return _error(task)
        now = self.clock()
        min_interval = self.config.min_poll_interval_s
        if min_interval is not None and now - task.last_poll < self.config.scaled(min_interval):
            task.last_poll = now
            return _error("ERROR_TOO_MUCH_REQUESTS")
        task.last_poll = now
        if task.state != "done":
            return _error("CAPCHA_NOT_READY")
        if task.code is not None:
            return _error(task.code)
        return self._render_solution(task)

    def _poll_many(self, account: Account, ids: str) -> Answer:
        items: list[str] = []
        for raw_id in ids.split(","):
            self.stats.polls += 1
            answer = self._poll_one(account, raw_id)
            self.stats.codes[answer.code] += 1
            value = answer.extra.get("result", answer.request) if answer.ok else answer.request
            items.append(_plain_value(value))
        return Answer(ok=True, request="|".join(items), bare=True)  # legacy: no "OK|" prefix

    def _report(self, account: Account, raw_id: str, action: str) -> Answer:
        task = self._lookup(account, raw_id)
        if isinstance(task, str):
            return _error(task)
        return self.report_task(task, good=action == "reportgood")

    def report_task(self, task: SimTask, *, good: bool) -> Answer:
        """A report on a finished task: counted once; a bad one refunds its price (once)."""
        if task.reported:
            return _error("ERROR_DUPLICATE_REPORT")
        task.reported = True
        self.stats.reports["good" if good else "bad"] += 1
        if good:
            task.account.reports_good += 1
        else:
            task.account.reports_bad += 1
            self._refund(task)
        return Answer(ok=True, request="OK_REPORT_RECORDED", bare=True)

    def _refund(self, task: SimTask) -> None:
        if task.price <= 0:
            return
        task.account.balance += task.price
        task.account.refunds += 1
        task.account.refunded += task.price
        self.stats.refunds += 1
        task.price = 0.0

    # -- answers ---------------------------------------------------------------------------------------

    def _make_answer(self, task: SimTask) -> tuple[Any, str | None]:
        name = task.spec.name
        rng = self.rng
        ua = _USER_AGENT if task.spec.returns_user_agent else None
        if name == "image":
            return _ocr_text(rng, task.params), None
        if name.startswith("grid") or name == "bls":
            cells = 16 if name.startswith("grid") else 9
            return sorted(rng.sample(range(1, cells + 1), 3)), None
        if name == "geetest_v3":
            challenge = "".join(rng.choices("0123456789abcdef", k=32))
            return {
                "challenge": challenge,
                "validate": challenge[::-1],
                "seccode": challenge[::-1] + "|jordan",
            }, ua
        if name == "geetest_v4":
            return {
                "captcha_id": "".join(rng.choices("0123456789abcdef", k=32)),
                "lot_number": "".join(rng.choices("0123456789abcdef", k=32)),
                "pass_token": "".join(rng.choices("0123456789abcdef", k=64)),
                "gen_time": str(int(time.time())),
                "captcha_output": "".join(rng.choices(string.ascii_letters + string.digits, k=40)),
            }, ua
        if name == "lemin":
            return {"answer": "0xaxcgx0xaxakx0xaxaex", "challenge_uuid": f"{task.id:x}-uuid"}, ua
        if name.startswith("coordinates"):
            return [{"x": rng.randrange(1, 300), "y": rng.randrange(1, 200)} for _ in range(2)], None
        if name == "rotate":
            return str(rng.choice(range(10, 350, 10))), None
        if name == "textcaptcha":
            return rng.choice(("blue", "seven", "paris", "42")), None
        if name == "amazon_waf":
            voucher = "".join(rng.choices(string.ascii_letters + string.digits, k=40))
            return {"captcha_voucher": voucher, "existing_token": f"tok-{task.id}"}, ua
        if name == "datadome":
            cookie = "".join(rng.choices(string.ascii_letters + string.digits + "_~", k=60))
            return f"datadome={cookie}; Max-Age=31536000; Domain=.example.test; Path=/", ua
        token = f"sim{task.id}-" + "".join(rng.choices(string.ascii_letters + string.digits + "_-", k=40))
        return token, ua

    def _render_solution(self, task: SimTask) -> Answer:
        spec = task.spec
        value = task.answer
        if task.spec.name.startswith("coordinates") and isinstance(value, list):
            # 2captcha: JSON answers a list of {"x": "..", "y": ".."}; plain text "coordinates:x=..,y=..;..."
            return Answer(
                ok=True,
                request=[{"x": str(p["x"]), "y": str(p["y"])} for p in value],
                extra={"user_agent": task.user_agent} if task.user_agent else {},
                plain_text="coordinates:" + ";".join(f"x={p['x']},y={p['y']}" for p in value),
            )
        if isinstance(value, dict | list) and self.config.json_answers_as_text:
            value = _plain_value(value)
        extra: dict[str, Any] = {}
        if task.user_agent:
            extra["user_agent"] = task.user_agent
        field_name = spec.answer_field
        if spec.name == "cloudflare_challenge":
            field_name = self.config.cf_answer_field
        if field_name == "result":
            extra["result"] = value
            return Answer(ok=True, request="OK", extra=extra)
        return Answer(ok=True, request=value, extra=extra)

    # -- housekeeping -----------------------------------------------------------------------------------

    def _schedule_prune(self) -> None:
        if self._loop is None:
            return
        period = max(0.5, min(30.0, self.config.result_ttl_real_s / 10))
        self._prune_timer = self._loop.call_later(period, self._prune)

    def _prune(self) -> None:
        deadline = self.clock() - self.config.result_ttl_real_s
        while self._done and self._done[0].done_at < deadline:
            task = self._done.popleft()
            self.tasks.pop(task.id, None)
        self._schedule_prune()


_plain_value = plain_value


def _ocr_text(rng: random.Random, params: Mapping[str, str]) -> str:
    numeric = params.get("numeric", "0")
    alphabet = {"1": string.digits, "2": string.ascii_lowercase, "4": string.ascii_lowercase}.get(
        numeric, string.ascii_lowercase + string.digits
    )
    try:
        low = max(1, int(params.get("min_len", "0") or 0))
        high = int(params.get("max_len", "0") or 0) or max(low, 6)
    except ValueError:
        low, high = 4, 6
    length = rng.randint(min(low, high), max(low, high)) if high >= 1 else 5
    return "".join(rng.choices(alphabet, k=length))
