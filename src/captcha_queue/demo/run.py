"""The one-command demo: Redis, the solver simulator, P worker processes, a mixed workload, a report.

Everything runs as real processes on loopback: the workers are ``captcha-queue worker`` subprocesses
(one process each, so ``--chaos`` can ``kill -9`` one and restart it), the simulator is
``captcha-queue simulator``. Solve times and poll intervals are scaled by ``--time-scale`` so a run
takes about a minute. The run ends when every task has its final result; the exit status is 0 only
if nothing was lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import secrets
import struct
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from ..errors import ConfigError
from ..models import PRIORITIES, AccountSpec, TaskSpec
from ..processes import Processes
from ..queue import AsyncCaptchaQueue
from .report import DemoReport
from .view import ProgressView

__all__ = ["DemoConfig", "DemoReport", "run_demo"]

#: The simulator's control token (cli/simulator_cmd.py reads the same variable).
ENV_SIMULATOR_TOKEN = "CAPTCHA_QUEUE_SIMULATOR_TOKEN"

#: A key of the right shape for the simulator (any well-formed 32-character key is an account there).
SIMULATOR_KEY = "d" * 32


@dataclass(frozen=True)
class DemoConfig:
    redis_url: str
    tasks: int = 2000
    time_scale: float = 0.05
    processes: int = 2
    concurrency: int = 500
    chaos: bool = False
    real: bool = False
    threads: int = 40
    lease_s: float = 5.0
    seed: int = 7
    timeout_s: float = 600.0
    namespace: str = "demo"
    solver_url: str | None = None  # --real: the service; default the simulator started here
    api_key: str | None = None
    #: 2 or more: that many registered accounts on the simulator, served by every worker
    #: (``--accounts all``); a third of the way through, the first one's key is revoked and its
    #: tasks fail over to the next.
    accounts: int = 1


# -- the workload ---------------------------------------------------------------------------------


def _tiny_png(seed: int) -> str:
    """A valid PNG of a few hundred bytes (the simulator checks size and type), base64-encoded."""
    rnd = random.Random(seed)
    width, height = 24, 8
    rows = b"".join(b"\x00" + bytes(rnd.randrange(256) for _ in range(width * 3)) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode()


_MIX: list[tuple[float, str]] = [
    (0.30, "image"),
    (0.25, "recaptcha_v2"),
    (0.15, "recaptcha_v3"),
    (0.20, "turnstile"),
    (0.10, "geetest"),
]
_PRIORITY_MIX: list[tuple[float, str]] = [(0.10, "high"), (0.70, "normal"), (0.20, "low")]


def _pick(rnd: random.Random, mix: list[tuple[float, str]]) -> str:
    x = rnd.random()
    for weight, name in mix:
        if x < weight:
            return name
        x -= weight
    return mix[-1][1]


def workload(count: int, seed: int) -> Iterator[TaskSpec]:
    """A realistic mix of methods and priorities; each task carries its own page URL."""
    rnd = random.Random(seed)
    image = _tiny_png(seed)
    for n in range(count):
        kind = _pick(rnd, _MIX)
        priority = _pick(rnd, _PRIORITY_MIX)
        page = f"https://shop.example/checkout/{n}"
        method: str
        params: dict[str, str | int | float]
        if kind == "image":
            method, params = "base64", {"body": image, "numeric": 1}
        elif kind == "recaptcha_v2":
            method, params = "userrecaptcha", {"googlekey": "6Le-demo-sitekey-v2", "pageurl": page}
        elif kind == "recaptcha_v3":
            method = "userrecaptcha"
            params = {"googlekey": "6Le-demo-sitekey-v3", "pageurl": page, "version": "v3"}
            params |= {"action": "checkout", "min_score": 0.7}
        elif kind == "turnstile":
            method, params = "turnstile", {"sitekey": "0x4AAAAAAADemo", "pageurl": page}
        else:
            method = "geetest"
            params = {"gt": "022397c99c9f646f6477822485f30404", "challenge": f"c{n:08d}", "pageurl": page}
        yield TaskSpec(method=method, params=params, priority=priority, metadata={"n": n, "kind": kind})  # type: ignore[arg-type]


# -- processes ------------------------------------------------------------------------------------


def _start_simulator(procs: Processes, cfg: DemoConfig, env: dict[str, str]) -> str:
    args = ["simulator", "--port", "0", "--time-scale", str(cfg.time_scale), "--threads", str(cfg.threads)]
    args += ["--seed", str(cfg.seed)]
    if cfg.accounts > 1:
        # Every account calls from 127.0.0.1: the revoked key must not get the address banned.
        args += ["--ip-ban-after", "1000000"]
    proc = procs.spawn_python(["-m", "captcha_queue", *args], env, capture=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("http"):
        raise ConfigError(f"the simulator did not start (it printed {line!r})")
    return line.rstrip("/")


def _worker_args(cfg: DemoConfig) -> list[str]:
    accounts = ["--accounts", "all"] if cfg.accounts > 1 else []
    return [
        "-m",
        "captcha_queue",
        "worker",
        "--processes",
        "1",
        "--concurrency",
        str(cfg.concurrency),
        "--time-scale",
        str(1.0 if cfg.real else cfg.time_scale),
        "--lease-s",
        str(cfg.lease_s),
        "--log-format",
        "json",
        *accounts,
    ]


async def _simulator_stats(base_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/stats") as resp:
        data: dict[str, Any] = msgspec.json.decode(await resp.read())
        return data


# -- the run --------------------------------------------------------------------------------------


async def run_demo(cfg: DemoConfig, *, live: bool = True) -> DemoReport:
    """Run the whole demo and return its report. Raises ConfigError if a piece cannot start."""

    env = dict(os.environ)
    env["REDIS_URL"] = cfg.redis_url
    env["CAPTCHA_QUEUE_NAMESPACE"] = cfg.namespace
    procs = Processes()
    report = DemoReport()
    sim_url: str | None = None
    try:
        if cfg.real:
            if not cfg.api_key:
                raise ConfigError("CAPTCHAAI_KEY is not set (needed with --real)")
            env["CAPTCHAAI_KEY"] = cfg.api_key
            if cfg.solver_url:
                env["CAPTCHAAI_URL"] = cfg.solver_url
        else:
            if cfg.accounts > 1:
                env[ENV_SIMULATOR_TOKEN] = control_token = secrets.token_hex(16)
            sim_url = _start_simulator(procs, cfg, env)
            env["CAPTCHAAI_URL"] = sim_url
            env["CAPTCHAAI_KEY"] = SIMULATOR_KEY
        async with AsyncCaptchaQueue.from_url(cfg.redis_url, namespace=cfg.namespace) as q:
            failover: Failover | None = None
            if cfg.accounts > 1 and sim_url is not None:
                failover = await _register_accounts(q, cfg, env, sim_url, control_token)
            workers = [procs.spawn_python(_worker_args(cfg), env) for _ in range(cfg.processes)]
            await _run(q, cfg, report, workers, procs, env, live=live, failover=failover)
            stats = await q.stats()
            report.dead_letters = stats.dead
            report.solver_limit = stats.solver_slots_limit
        if sim_url is not None:
            sim = await _simulator_stats(sim_url)
            report.solver_submits = _int(sim, "submits")
            report.solver_polls = _int(sim, "polls")
            report.max_in_flight = _max_in_flight(sim)
    finally:
        procs.stop_all()
    return report


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, dict):
        value = value.get("total")
    return int(value) if isinstance(value, int | float) else None


def _max_in_flight(sim: dict[str, Any]) -> int | None:
    accounts = sim.get("accounts")
    if isinstance(accounts, dict):
        values = [a.get("max_in_flight") for a in accounts.values() if isinstance(a, dict)]
        found = [int(v) for v in values if isinstance(v, int | float)]
        return max(found) if found else None
    value = sim.get("max_in_flight")
    return int(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Failover:
    """How the demo breaks its first account: the simulator's control endpoint and that key."""

    control_url: str
    token: str
    key: str
    account: str
    next_account: str

    async def revoke(self) -> None:
        """Revoke the key at the (simulated) service: its next request answers ERROR_KEY_DOES_NOT_EXIST."""
        body = {"accounts": {self.key: {"state": "bad"}}}
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.control_url, json=body, headers=headers) as resp,
        ):
            if resp.status != 200:
                raise ConfigError(f"the simulator refused the failover ({resp.status})")


async def _register_accounts(
    q: AsyncCaptchaQueue, cfg: DemoConfig, env: dict[str, str], sim_url: str, token: str
) -> Failover:
    """``accounts`` simulator accounts in the registry, the first one first (highest priority); their
    keys go to the workers' environment, the registry holds only the variables' names."""
    names = [f"demo-{i}" for i in range(1, cfg.accounts + 1)]
    keys = [f"{i:02d}".ljust(32, "k") for i in range(1, cfg.accounts + 1)]
    for index, (name, key) in enumerate(zip(names, keys, strict=True)):
        variable = f"DEMO_ACCOUNT_KEY_{index + 1}"
        env[variable] = key
        spec = AccountSpec(
            name=name, base_url=sim_url, limit=cfg.threads, priority=cfg.accounts - index, key_env=variable
        )
        await q.add_account(spec, replace=True)
    return Failover(f"{sim_url}/control", token, keys[0], names[0], names[1])


async def _run(
    q: Any,
    cfg: DemoConfig,
    report: DemoReport,
    workers: list[subprocess.Popen[bytes]],
    procs: Processes,
    env: dict[str, str],
    *,
    live: bool,
    failover: Failover | None = None,
) -> None:

    specs = list(workload(cfg.tasks, cfg.seed))
    started = time.monotonic()
    ids: list[str] = []
    for start in range(0, len(specs), 500):
        ids += await q.submit_many(specs[start : start + 500])
    report.submitted = len(ids)
    priority_of = {task_id: spec.priority for task_id, spec in zip(ids, specs, strict=True)}
    submitted_per_priority: Counter[str] = Counter(priority_of.values())
    view = ProgressView(submitted_per_priority, enabled=live)
    chaos_at = cfg.tasks // 3 if cfg.chaos else None
    failover_at = cfg.tasks // 3 if failover is not None else None
    with view:
        refresher = asyncio.create_task(_refresh(q, view, report, started))
        try:
            async for result in q.as_completed(ids, timeout_s=cfg.timeout_s):
                report.finished += 1
                report.by_status[result.status] += 1
                report.by_priority[result.priority].append(result)
                if result.attempts > 1:
                    report.retries += result.attempts - 1
                if result.account:
                    report.by_account[result.account.split("/")[0]] += 1
                view.record(result)
                if failover is not None and failover_at is not None and report.finished >= failover_at:
                    failover_at = None
                    await failover.revoke()
                    view.note(
                        f"failover: the key of account {failover.account} was revoked at the service; "
                        f"its workers pause it and its tasks go to {failover.next_account}"
                    )
                    report.failovers += 1
                if chaos_at is not None and report.finished >= chaos_at:
                    chaos_at = None
                    await _kill_and_restart(workers, procs, cfg, env, view)
                    report.kills += 1
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
    report.elapsed_s = time.monotonic() - started


async def _refresh(q: AsyncCaptchaQueue, view: ProgressView, report: DemoReport, started: float) -> None:
    while True:
        with contextlib.suppress(Exception):
            view.update_stats(await q.stats(), report.finished, time.monotonic() - started)
        await asyncio.sleep(0.5)


async def _kill_and_restart(
    workers: list[subprocess.Popen[bytes]],
    procs: Processes,
    cfg: DemoConfig,
    env: dict[str, str],
    view: Any,
) -> None:
    victim = workers[0]
    view.note(f"chaos: kill -9 worker pid {victim.pid}; its tasks come back when its leases expire")
    procs.kill(victim)
    await asyncio.to_thread(victim.wait)
    await asyncio.sleep(max(0.5, cfg.lease_s / 5))
    workers[0] = procs.spawn_python(_worker_args(cfg), env)
    view.note(f"chaos: worker restarted as pid {workers[0].pid}")


PRIORITY_ORDER = PRIORITIES
