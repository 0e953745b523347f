"""The rig every chaos scenario runs on: real processes on loopback, stopped by pid.

A ``Rig`` owns a private Redis (optionally with an append-only file), the solver simulator as a
``captcha-queue simulator`` subprocess, worker processes (one ``captcha-queue worker --processes 1``
each, so a scenario can ``kill -9`` one and start it again), optionally a ``FaultProxy`` between the
workers and Redis, and a producer queue connected straight to Redis. A sampler records the fleet
(solver slots in use, tasks waiting) a few times per second for the checker.

Worker output goes to one log file per process start; a worker that exits without being killed by
the scenario is a crash, counted with the last lines of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis

from captcha_queue.errors import CaptchaQueueError
from captcha_queue.models import DeadLetter, Result, TaskSpec
from captcha_queue.processes import Processes
from captcha_queue.queue._core import decode_lenient
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.connection import make_client
from captcha_queue.store.keys import Keys
from captcha_queue.store.server import EmbeddedRedis, Persistence

from ..ports import free_port
from .checker import FinalState, FleetSample, final_states
from .proxy import FaultProxy

__all__ = ["CANARY_KEY", "Rig", "RigConfig", "WorkerCrash", "stop_task"]

#: The solver API key every scenario uses: 32 characters (a valid shape), easy to grep for.
CANARY_KEY = "CANARY" + "c4a7" * 6 + "51"
ACCOUNT = "default"

_result_decoder = msgspec.json.Decoder(Result)
_dead_decoder = msgspec.json.Decoder(DeadLetter)


@dataclass(frozen=True)
class RigConfig:
    """One scenario's processes. Service times are scaled by ``time_scale`` (simulator and polls)."""

    workers: int = 2
    concurrency: int = 200
    solver_limit: int = 50
    time_scale: float = 0.01
    lease_s: float = 2.0
    persistence: Persistence = field(default_factory=Persistence)
    redis_args: Sequence[str] = ()  # extra redis-server arguments (e.g. --maxmemory)
    simulator_args: Sequence[str] = ()
    worker_args: Sequence[str] = ()
    #: Workers read N from the account's threads (no ``--solver-limit``): the simulator's threads
    #: must then be N (``simulator_args``).
    limit_from_account: bool = False
    #: ``POST /control`` settings applied before the first worker starts (faults at start).
    sim_control_at_start: Mapping[str, Any] = field(default_factory=dict)
    api_key: str = CANARY_KEY
    redis_via_proxy: bool = False
    result_ttl_s: float = 3600.0
    namespace: str = field(default_factory=lambda: "chaos-" + uuid.uuid4().hex[:8])
    log_dir: str | None = None
    metrics: bool = True  # each worker serves /metrics (searched for the canary key)
    #: Redis ACL users to create (name -> ACL SETUSER rules, password included as ``>pw``), and
    #: which of them the workers and the producer log in as (None: the default user).
    acl_users: Mapping[str, Sequence[str]] = field(default_factory=dict)
    worker_user: str | None = None
    producer_user: str | None = None


@dataclass
class WorkerCrash:
    slot: int
    pid: int
    returncode: int | None
    tail: str


@dataclass
class _WorkerSlot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    log_file: Any = None
    starts: int = 0
    metrics_port: int | None = None
    expected_exit: bool = False


class Rig:
    """Redis, the simulator, workers, an optional proxy, a producer and a sampler."""

    def __init__(self, config: RigConfig) -> None:
        self.config = config
        self.keys = Keys(config.namespace)
        self.redis = EmbeddedRedis(persistence=config.persistence, extra_args=config.redis_args)
        self.proxy: FaultProxy | None = None
        self.processes = Processes()  # the simulator and every worker process ever started
        self.sim_proc: subprocess.Popen[bytes] | None = None
        self.sim_url = ""
        self.sim_token = secrets.token_hex(16)  # for the simulator's /control
        self.slots: list[_WorkerSlot] = []
        self.crashes: list[WorkerCrash] = []
        self.slow_shutdowns: list[int] = []  # pids that ignored SIGTERM for the whole grace period
        self.events: list[tuple[float, str]] = []
        self.samples: list[FleetSample] = []
        self.slot_snapshots: list[tuple[float, float, dict[str, float]]] = []  # (run s, Redis ms, slots)
        self.submitted: dict[str, str] = {}  # task id -> task key
        self.started = time.monotonic()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.log_dir = Path(config.log_dir) if config.log_dir else Path()
        self.queue: AsyncCaptchaQueue | None = None
        self.raw: aioredis.Redis | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._sampling = asyncio.Event()  # cleared to end the sampler
        self._finished_seen = 0

    # -- lifecycle --------------------------------------------------------------------------------
    async def __aenter__(self) -> Rig:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        keep = os.environ.get("CAPTCHA_CHAOS_LOG_DIR")
        if self.config.log_dir is None and keep:
            self.log_dir = Path(keep) / self.config.namespace
        elif self.config.log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="captcha-chaos-")
            self.log_dir = Path(self._tmp.name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.redis.start)
        assert self.redis.port is not None
        if self.config.redis_via_proxy:
            self.proxy = await FaultProxy("127.0.0.1", self.redis.port).start()
        self.sim_url = await asyncio.to_thread(self._start_simulator)
        if self.config.sim_control_at_start:
            await self.sim_control(**self.config.sim_control_at_start)
        self.raw = make_client(self.redis.url)
        for user, rules in self.config.acl_users.items():
            await self.raw.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
        if self.config.acl_users:
            await self.raw.execute_command("ACL", "LOG", "RESET")  # type: ignore[no-untyped-call]
        self.queue = AsyncCaptchaQueue.from_url(
            self._login(self.redis.url, self.config.producer_user),
            namespace=self.config.namespace,
            result_ttl_s=self.config.result_ttl_s,
        )
        self.slots = [_WorkerSlot(i) for i in range(self.config.workers)]
        for slot in self.slots:
            self.start_worker(slot.index)
        if not await self.wait_until(self._all_registered, 30.0):
            raise CaptchaQueueError(f"the workers did not register: {self.log_tail(self.slots[0])}")
        self.started = time.monotonic()

    async def _all_registered(self) -> bool:
        assert self.raw is not None
        return int(await self.raw.zcard(self.keys.workers)) >= len(self.slots)

    async def aclose(self) -> None:
        if self._sampler is not None:
            # A cancel that lands inside a redis-py call can be swallowed there (seen: the sampler
            # went on looping and this await hung the run), so the loop also checks a flag, and the
            # wait is bounded.
            self._sampling.clear()
            await stop_task(self._sampler)
            self._sampler = None
        await asyncio.to_thread(self._stop_processes)
        if self.queue is not None:
            with contextlib.suppress(Exception):
                await self.queue.aclose()
            self.queue = None
        if self.raw is not None:
            with contextlib.suppress(Exception):
                await self.raw.aclose()
            self.raw = None
        if self.proxy is not None:
            await self.proxy.aclose()
            self.proxy = None
        await asyncio.to_thread(self.redis.stop)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _stop_processes(self) -> None:
        for slot in self.slots:
            slot.expected_exit = True
        self.slow_shutdowns += self.processes.stop_all(grace_s=8.0)
        for slot in self.slots:
            if slot.log_file is not None:
                slot.log_file.close()
                slot.log_file = None
        self.sim_proc = None

    # -- the simulator ----------------------------------------------------------------------------
    def _start_simulator(self) -> str:
        args = [
            "simulator",
            "--port",
            "0",
            "--time-scale",
            str(self.config.time_scale),
            "--threads",
            str(self.config.solver_limit),
            "--seed",
            "7",
            *self.config.simulator_args,
        ]
        with open(self.log_dir / "simulator.log", "wb") as log:
            self.sim_proc = self.processes.spawn_python(
                ["-m", "captcha_queue", *args],
                {**os.environ, "CAPTCHA_QUEUE_SIMULATOR_TOKEN": self.sim_token},
                capture=True,
                stderr=log,
            )
        assert self.sim_proc.stdout is not None
        line = self.sim_proc.stdout.readline().decode().strip()
        if not line.startswith("http"):
            raise CaptchaQueueError(f"the simulator did not start (it printed {line!r})")
        return line.rstrip("/")

    async def sim_stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.sim_url}/stats") as resp:
            data: dict[str, Any] = msgspec.json.decode(await resp.read())
        return data

    async def sim_control(self, **settings: Any) -> dict[str, Any]:
        """Change the simulator at run time (``POST /control``): fault rates, over-capacity, keys."""
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.sim_url}/control",
                json=settings,
                headers={"Authorization": f"Bearer {self.sim_token}"},
            ) as resp,
        ):
            resp.raise_for_status()
            data: dict[str, Any] = msgspec.json.decode(await resp.read())
        return data

    # -- workers ----------------------------------------------------------------------------------
    @property
    def worker_redis_url(self) -> str:
        url = self.proxy.redis_url(password=self.redis.password) if self.proxy is not None else self.redis.url
        return self._login(url, self.config.worker_user)

    def _login(self, url: str, user: str | None) -> str:
        """``url`` with the ACL user's name and password (from its ``>password`` rule)."""
        if user is None:
            return url
        password = next(r[1:] for r in self.config.acl_users[user] if r.startswith(">"))
        address = url.split("://", 1)[1].rsplit("@", 1)[-1]  # without the server's own password
        return f"redis://{user}:{password}@{address}"

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["REDIS_URL"] = self.worker_redis_url
        env["CAPTCHAAI_KEY"] = self.config.api_key
        env["CAPTCHAAI_URL"] = self.sim_url
        env["CAPTCHA_QUEUE_NAMESPACE"] = self.config.namespace
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def worker_argv(self, slot: _WorkerSlot) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "captcha_queue",
            "worker",
            "--processes",
            "1",
            "--concurrency",
            str(self.config.concurrency),
            "--lease-s",
            str(self.config.lease_s),
            *([] if self.config.limit_from_account else ["--solver-limit", str(self.config.solver_limit)]),
            "--time-scale",
            str(self.config.time_scale),
            "--log-format",
            "json",
            *self.config.worker_args,
        ]
        if slot.metrics_port is not None:
            argv += ["--metrics-port", str(slot.metrics_port)]
        return argv

    def start_worker(self, index: int) -> subprocess.Popen[bytes]:
        slot = self.slots[index]
        self._reap(slot)
        if slot.log_file is not None:
            slot.log_file.close()
        slot.starts += 1
        slot.log_path = self.log_dir / f"worker-{index}-{slot.starts}.log"
        slot.log_file = open(slot.log_path, "wb")  # noqa: SIM115 - closed when the slot stops
        if self.config.metrics and slot.metrics_port is None:
            slot.metrics_port = free_port()
        slot.expected_exit = False
        slot.proc = self.processes.spawn(
            self.worker_argv(slot), self.worker_env(), stdout=slot.log_file, stderr=subprocess.STDOUT
        )
        return slot.proc

    def kill_worker(self, index: int, sig: int = signal.SIGKILL) -> int:
        slot = self.slots[index]
        assert slot.proc is not None
        self._reap(slot)
        pid = slot.proc.pid
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            slot.expected_exit = True
        self.processes.kill(slot.proc, sig)
        self.note(f"signal {sig} to worker {index} (pid {pid})")
        return pid

    async def wait_worker_exit(self, index: int, timeout_s: float = 10.0) -> int | None:
        proc = self.slots[index].proc
        assert proc is not None
        try:
            return await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def _reap(self, slot: _WorkerSlot) -> None:
        """Record a crash if the slot's process exited without the scenario asking it to."""
        proc = slot.proc
        if proc is None or proc.poll() is None or slot.expected_exit:
            return
        slot.expected_exit = True
        self.crashes.append(WorkerCrash(slot.index, proc.pid, proc.returncode, self.log_tail(slot)))

    def check_crashes(self) -> list[WorkerCrash]:
        for slot in self.slots:
            self._reap(slot)
        return self.crashes

    def log_tail(self, slot: _WorkerSlot, lines: int = 15) -> str:
        if slot.log_path is None or not slot.log_path.exists():
            return ""
        text = slot.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def metrics_ports(self) -> list[int]:
        return [s.metrics_port for s in self.slots if s.metrics_port is not None]

    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    # -- the workload -----------------------------------------------------------------------------
    async def submit(
        self,
        count: int,
        *,
        tag: str = "t",
        method: str = "userrecaptcha",
        max_attempts: int = 3,
        batch: int = 500,
        priority: str = "normal",
        extra: Mapping[str, str | int | float] | None = None,
    ) -> list[str]:
        """Submit ``count`` tasks, each with its own page URL (the simulator's task key)."""
        assert self.queue is not None
        ids: list[str] = []
        base = len(self.submitted)
        for start in range(0, count, batch):
            specs: list[TaskSpec] = []
            keys: list[str] = []
            for n in range(start, min(count, start + batch)):
                key = f"https://chaos.example/{self.config.namespace}/{tag}/{base + n}"
                params: dict[str, str | int | float] = {"pageurl": key, **(extra or {})}
                if method == "userrecaptcha":
                    params.setdefault("googlekey", "6Le-chaos-sitekey")
                elif method == "turnstile":
                    params.setdefault("sitekey", "0x4AAAAAAAChaos")
                specs.append(
                    TaskSpec(method=method, params=params, max_attempts=max_attempts, priority=priority)  # type: ignore[arg-type]
                )
                keys.append(key)
            batch_ids = await self.queue.submit_many(specs)
            ids += batch_ids
            self.submitted.update(zip(batch_ids, keys, strict=True))
        return ids

    def note(self, event: str) -> None:
        self.events.append((time.monotonic() - self.started, event))

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    # -- watching ---------------------------------------------------------------------------------
    def start_sampler(self, interval_s: float = 0.1) -> None:
        self._sampling.set()
        self._sampler = asyncio.create_task(self._sample(interval_s), name="chaos-sampler")

    async def _sample(self, interval_s: float) -> None:
        assert self.raw is not None
        slots_key = self.keys.slots(ACCOUNT)
        while self._sampling.is_set():
            try:
                async with self.raw.pipeline(transaction=False) as pipe:
                    pipe.zrange(slots_key, 0, -1, withscores=True)
                    pipe.hlen(self.keys.results)
                    pipe.time()
                    held, finished, (seconds, micros) = await pipe.execute()
            except Exception:  # Redis may be down on purpose; the gap shows in the samples
                await asyncio.sleep(interval_s)
                continue
            t_s = self.elapsed_s()
            snapshot = {_s(holder): float(score) for holder, score in held}
            self._finished_seen = max(self._finished_seen, int(finished))
            pending = max(0, len(self.submitted) - int(finished) - len(snapshot))
            self.samples.append(FleetSample(t_s, len(snapshot), pending))
            self.slot_snapshots.append((t_s, int(seconds) * 1000 + int(micros) / 1000, snapshot))
            await asyncio.sleep(interval_s)

    async def finished_count(self) -> int:
        assert self.raw is not None
        return int(await self.raw.hlen(self.keys.results))

    async def wait_all_final(self, timeout_s: float, *, poll_s: float = 0.2) -> bool:
        """Wait (polling with a deadline: Redis may go away mid-run) until every task is final."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await self.finished_count() >= len(self.submitted):
                    return True
            self.check_crashes()
            await asyncio.sleep(poll_s)
        return False

    async def wait_until(self, predicate: Any, timeout_s: float, *, poll_s: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await predicate():
                    return True
            await asyncio.sleep(poll_s)
        return False

    async def diagnose(self) -> dict[str, Any]:
        """Where unfinished work sits (for a run that timed out): queue stats, workers, slots."""
        assert self.queue is not None
        assert self.raw is not None
        found: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            found["stats"] = msgspec.to_builtins(await self.queue.stats())
        with contextlib.suppress(Exception):
            info = await self.raw.hgetall(self.keys.worker_info)
            found["workers"] = [msgspec.json.decode(v) for v in info.values()]
        with contextlib.suppress(Exception):
            found["slots_held"] = int(await self.raw.zcard(self.keys.slots(ACCOUNT)))
        with contextlib.suppress(Exception):
            # (member, score) pairs: redis-py types a zrange reply as one union for every option.
            slots: Any = await self.raw.zrange(self.keys.slots(ACCOUNT), 0, 19, withscores=True)
            found["slots"] = {_s(member): int(score) for member, score in slots}  # ghosts start with '#'
            found["slot_limit"] = {
                _s(k): _s(v) for k, v in (await self.raw.hgetall(self.keys.slot_limit(ACCOUNT))).items()
            }
            found["paused"] = {_s(k): _s(v) for k, v in (await self.raw.hgetall(self.keys.paused)).items()}
            for ref in await self.raw.smembers(self.keys.paused_accounts):
                stored = await self.raw.hgetall(self.keys.account_paused(_s(ref)))
                found[f"paused account {_s(ref)}"] = {_s(k): _s(v) for k, v in stored.items()}
        with contextlib.suppress(Exception):
            finished = {_s(k) for k in await self.raw.hkeys(self.keys.results)}
            waiting = [t for t in self.submitted if t not in finished][:10]
            states = await self.raw.hmget(self.keys.state, waiting) if waiting else []
            pairs = zip(waiting, states, strict=True)
            found["unfinished"] = {t: _s(v) if v is not None else None for t, v in pairs}
        with contextlib.suppress(Exception):
            sim = await self.sim_stats()
            found["simulator_in_flight"] = sim.get("in_flight")
        found["alive"] = [s.proc.poll() is None for s in self.slots if s.proc is not None]
        return found

    async def finals(self) -> dict[str, FinalState]:
        assert self.raw is not None
        # Lenient, as the queue reads them: entries written by the fuzzer may not be UTF-8.
        results_raw = await self.raw.hgetall(self.keys.results)
        dead_raw = await self.raw.hgetall(self.keys.dead)
        results = {_s(k): decode_lenient(_result_decoder, v) for k, v in results_raw.items()}
        dead = {_s(k): decode_lenient(_dead_decoder, v) for k, v in dead_raw.items()}
        return final_states(results, dead)


async def stop_task(task: asyncio.Task[Any], timeout_s: float = 5.0) -> None:
    """Cancel a helper task and wait for it, bounded: a cancel that lands inside a redis-py call can
    be swallowed there, and an unbounded await would then hang the whole run."""
    task.cancel()
    await asyncio.wait([task], timeout=timeout_s)


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
