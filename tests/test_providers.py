"""Provider profiles: each service's error semantics, billing and refunds, against the simulator in
that service's profile (no network), and the worker's account breaker on a zero balance."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from click.testing import CliRunner

from captcha_queue.cli import cli
from captcha_queue.errors import (
    AccountError,
    ConfigError,
    InvalidArgument,
    SolverBusy,
    SolverError,
    TaskRejected,
    TransientError,
    Unsolvable,
)
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.simulator.samples import sample_params
from captcha_queue.solvers import (
    PROFILES,
    CaptchaAISolver,
    JsonApiSolver,
    Solver,
    create_solver,
    error_for,
)
from captcha_queue.solvers.http import coordinates_of
from captcha_queue.worker.config import WorkerSettings
from captcha_queue.worker.runtime import Worker, WorkerConfig

from .helpers import ProcessManager

KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"
SCALE = 0.01
#: Every paying provider and the simulator profile that serves it.
PAYING = {
    "2captcha": "2captcha",
    "2captcha-v2": "2captcha",
    "capsolver": "capsolver",
    "anticaptcha": "anticaptcha",
}


# -- the code tables, per provider ----------------------------------------------------------------

# (provider, code, error class, pauses the account until resumed)
CODE_TABLE = [
    # CaptchaAI bills by threads: its ERROR_ZERO_BALANCE is "no free thread", busy
    ("captchaai", "ERROR_ZERO_BALANCE", SolverBusy, False),
    ("captchaai", "ERROR_NO_SLOT_AVAILABLE", SolverBusy, False),
    ("captchaai", "ERROR_KEY_DOES_NOT_EXIST", AccountError, True),
    # everyone else: no money, the account stops until its balance is positive again
    ("2captcha", "ERROR_ZERO_BALANCE", AccountError, True),
    ("2captcha", "ERROR_NO_SLOT_AVAILABLE", SolverBusy, False),
    ("2captcha", "ERROR_KEY_DOES_NOT_EXIST", AccountError, True),
    ("2captcha", "ERROR_WRONG_USER_KEY", AccountError, True),
    ("2captcha", "ERROR_CAPTCHA_UNSOLVABLE", Unsolvable, False),
    ("generic-inphp", "ERROR_ZERO_BALANCE", AccountError, True),
    ("2captcha-v2", "ERROR_ZERO_BALANCE", AccountError, True),
    ("2captcha-v2", "ERROR_NO_SUCH_CAPCHA_ID", TaskRejected, False),
    ("2captcha-v2", "ERROR_TASK_NOT_SUPPORTED", TaskRejected, False),
    ("anticaptcha", "ERROR_ZERO_BALANCE", AccountError, True),
    ("anticaptcha", "ERROR_NO_SLOT_AVAILABLE", SolverBusy, False),
    ("anticaptcha", "ERROR_KEY_DOES_NOT_EXIST", AccountError, True),
    ("anticaptcha", "ERROR_IP_BLOCKED", AccountError, False),
    ("anticaptcha", "ERROR_CAPTCHA_UNSOLVABLE", Unsolvable, False),
    ("anticaptcha", "ERROR_RECAPTCHA_INVALID_SITEKEY", TaskRejected, False),
    ("capsolver", "ERROR_KEY_DENIED_ACCESS", AccountError, True),
    ("capsolver", "ERROR_ZERO_BALANCE", AccountError, True),
    ("capsolver", "ERROR_KEY_TEMP_BLOCKED", AccountError, False),
    ("capsolver", "ERROR_RATE_LIMIT", SolverBusy, False),
    ("capsolver", "ERROR_SERVICE_UNAVALIABLE", TransientError, False),
    ("capsolver", "ERROR_INVALID_TASK_DATA", TaskRejected, False),
    ("capsolver", "ERROR_TASKID_INVALID", TaskRejected, False),
    ("capsolver", "ERROR_CAPTCHA_SOLVE_FAILED", Unsolvable, False),
]


@pytest.mark.parametrize(("provider", "code", "error_class", "stops"), CODE_TABLE)
def test_each_provider_gives_each_code_its_meaning(
    provider: str, code: str, error_class: type[SolverError], stops: bool
) -> None:
    error = error_for(code, codes=PROFILES[provider].codes)
    assert type(error) is error_class
    assert error.code == code
    if isinstance(error, AccountError):
        assert (error.pause_s is None) == stops


def test_the_profiles_tell_how_the_thread_limit_is_found() -> None:
    assert [name for name, p in PROFILES.items() if not p.requires_limit] == ["captchaai"]
    assert PROFILES["generic-inphp"].base_url is None
    assert {p.protocol for p in PROFILES.values()} == {"inphp", "json"}


# -- bad input: one clear error ---------------------------------------------------------------------


def test_bad_provider_input_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown solver 'nope'; known: captchaai, 2captcha"):
        create_solver("nope", api_key=KEY)
    with pytest.raises(ConfigError, match=r"no thread limit.*--solver-limit"):
        create_solver("2captcha", api_key=KEY)
    with pytest.raises(ConfigError, match="no thread limit"):
        create_solver("capsolver", api_key="CAP-" + KEY)
    with pytest.raises(ConfigError, match="needs a base URL"):
        create_solver("generic-inphp", api_key=KEY, thread_limit=5)
    with pytest.raises(ConfigError, match="thread limit must be a whole number"):
        create_solver("anticaptcha", api_key=KEY, thread_limit=0)
    with pytest.raises(ConfigError, match="JSON API"):
        CaptchaAISolver(KEY, profile="capsolver", thread_limit=5)
    with pytest.raises(ConfigError, match=r"in\.php"):
        JsonApiSolver(KEY, profile="2captcha", thread_limit=5)
    with pytest.raises(ConfigError, match="unknown solver provider"):
        CaptchaAISolver(KEY, profile="nope")
    with pytest.raises(ValueError, match="unknown simulator profile"):
        SimulatorConfig(profile="nope")
    with pytest.raises(InvalidArgument, match="--solver-limit") as info:
        WorkerSettings(solver="2captcha", api_key=KEY)
    assert info.value.field == "solver_limit"
    assert WorkerSettings(solver="2captcha", api_key=KEY, solver_limit=3).provider_url is None
    assert WorkerSettings(solver="captchaai").provider_url == "https://ocr.captchaai.com"


async def test_a_task_type_the_provider_lacks_is_refused_before_any_request() -> None:
    async with run_simulator(SimulatorConfig(profile="capsolver", time_scale=SCALE)) as sim:
        async with create_solver("capsolver", api_key=KEY, base_url=sim.base_url, thread_limit=5) as solver:
            assert not solver.supports("hcaptcha")
            assert solver.supports("recaptcha_v2")
            with pytest.raises(TaskRejected, match="capsolver provider does not solve hcaptcha") as info:
                await solver.submit("hcaptcha", sample_params("hcaptcha"))
            assert info.value.code == "ERROR_TASK_NOT_SUPPORTED"
        assert sim.stats()["submit_requests"] == 0
        assert sim.stats()["requests"] == {}


# -- against the simulator, per profile ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def provider(
    name: str, *, key: str = KEY, balance: float = 10.0, keys: tuple[str, ...] | None = None, **config: object
) -> AsyncIterator[tuple[RunningSimulator, Solver]]:
    sim_config = SimulatorConfig(
        profile=PAYING.get(name, name),
        time_scale=SCALE,
        balance=balance,
        keys=keys,
        seed=3,
        **config,  # type: ignore[arg-type]
    )
    async with run_simulator(sim_config) as sim:
        solver = create_solver(name, api_key=key, base_url=sim.base_url, thread_limit=5, time_scale=SCALE)
        async with solver:
            yield sim, solver


async def solve(solver: Solver, method: str, params: dict[str, str | int | float]) -> tuple[str, str]:
    remote_id = await solver.submit(method, params)
    first_s, interval_s = solver.poll_schedule(method, params)
    await asyncio.sleep(first_s)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        solution = await solver.poll(remote_id, method, params)
        if solution is not None:
            return remote_id, solution.text
        await asyncio.sleep(interval_s)
    raise AssertionError("no answer")


@pytest.mark.parametrize("name", [*PAYING, "captchaai", "generic-inphp"])
async def test_a_wrong_key_is_an_account_error(name: str) -> None:
    async with provider(name, keys=(KEY,), key=OTHER_KEY) as (sim, solver):
        with pytest.raises(AccountError) as info:
            await solver.submit("recaptcha_v2", sample_params("recaptcha_v2"))
        assert info.value.pause_s is None  # until resumed: a key does not fix itself
        assert info.value.code == (
            "ERROR_KEY_DENIED_ACCESS" if name == "capsolver" else "ERROR_KEY_DOES_NOT_EXIST"
        )
        with pytest.raises(AccountError):
            await solver.account_info()
        assert OTHER_KEY not in str(info.value)
        assert sim.stats()["submits"] == 0


@pytest.mark.parametrize("name", list(PAYING))
async def test_funds_pay_per_solve_and_a_bad_report_refunds_once(name: str) -> None:
    async with provider(name, balance=1.0, price=0.25) as (sim, solver):
        assert (await solver.account_info()).balance == 1.0
        remote_id, text = await solve(solver, "recaptcha_v2", sample_params("recaptcha_v2"))
        assert text
        await solve(solver, "image", sample_params("image"))
        (account,) = sim.stats()["accounts"].values()
        assert (account["balance"], account["spent"]) == (0.5, 0.5)
        await solver.report(remote_id, False, "recaptcha_v2", sample_params("recaptcha_v2"))
        await solver.report(remote_id, False, "recaptcha_v2", sample_params("recaptcha_v2"))  # not twice
        (account,) = sim.stats()["accounts"].values()
        assert (account["balance"], account["refunds"], account["refunded"]) == (0.75, 1, 0.25)
        assert sim.stats()["refunds"] == 1
        assert sim.stats()["reports"] == {"bad": 1}
        assert (await solver.account_info()).balance == 0.75


@pytest.mark.parametrize("name", list(PAYING))
async def test_zero_balance_is_no_money_an_account_error_not_busy(name: str) -> None:
    async with provider(name, balance=0.3, price=0.25) as (sim, solver):
        await solve(solver, "turnstile", sample_params("turnstile"))
        with pytest.raises(AccountError) as info:
            await solver.submit("turnstile", sample_params("turnstile"))
        assert info.value.code == "ERROR_ZERO_BALANCE"
        assert info.value.pause_s is None
        assert sim.stats()["submits"] == 1
        sim.control({"accounts": {KEY: {"balance": 0}}})
        with pytest.raises(AccountError):  # the breaker's probe keeps the account paused
            await solver.account_info()


async def test_captchaai_zero_balance_stays_busy() -> None:
    async with provider("captchaai", threads=1) as (_, solver):
        await solver.submit("turnstile", {**sample_params("turnstile"), "x_sim_solve_s": 5})
        with pytest.raises(SolverBusy) as info:
            await solver.submit("turnstile", sample_params("turnstile"))
        assert info.value.code == "ERROR_ZERO_BALANCE"


async def test_2captcha_has_no_threadsinfo_the_limit_is_the_configured_one() -> None:
    async with provider("2captcha") as (sim, solver), aiohttp.ClientSession() as http:
        info = await solver.account_info()
        assert (info.threads, info.balance) == (5, 10.0)
        query = {"key": KEY, "action": "threadsinfo", "json": "1"}
        async with http.get(f"{sim.base_url}/res.php", params=query) as resp:
            assert await resp.json(content_type=None) == {"status": 0, "request": "ERROR_BAD_PARAMETERS"}
    async with (
        provider("captchaai") as (sim, _),
        aiohttp.ClientSession() as http,
        http.get(f"{sim.base_url}/res.php", params=query) as resp,
    ):
        assert (await resp.json(content_type=None))["threads"] == 50


def test_coordinates_answer_points_not_ocr_text() -> None:
    assert coordinates_of("coordinates:x=39,y=59;x=252,y=72") == [{"x": 39, "y": 59}, {"x": 252, "y": 72}]
    assert coordinates_of([{"x": "39", "y": "59"}]) == [{"x": 39, "y": 59}]
    assert coordinates_of([[39, 59]]) == [{"x": 39, "y": 59}]
    with pytest.raises(TransientError, match=r"no points|without x and y"):
        coordinates_of("abcd")


@pytest.mark.parametrize("name", ["2captcha", "2captcha-v2", "anticaptcha"])
async def test_a_coordinates_task_answers_points_on_every_provider_that_has_it(name: str) -> None:
    async with provider(name) as (_, solver):
        params = sample_params("coordinates")
        remote_id = await solver.submit("coordinates", params)
        await asyncio.sleep(0.1)
        solution = None
        for _ in range(100):
            solution = await solver.poll(remote_id, "coordinates", params)
            if solution is not None:
                break
            await asyncio.sleep(0.05)
        assert solution is not None
        assert isinstance(solution.data, list)
        assert solution.data
        assert all(set(p) == {"x", "y"} for p in solution.data)


# -- the worker: a zero balance pauses the account, no retry storm, nothing failed --------------------


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run(), name="worker")
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30.0)


async def wait_until(check: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("name", ["2captcha", "capsolver"])
async def test_zero_balance_pauses_the_account_with_no_retry_storm(
    queue: AsyncCaptchaQueue, name: str
) -> None:
    # Money for 3 tasks of 10: the 4th submit finds no money, the account pauses, the rest wait queued.
    async with provider(name, balance=0.75, price=0.25) as (sim, solver):
        config = WorkerConfig(
            concurrency=20,
            lease_s=3.0,
            claim_block_s=0.5,
            time_scale=SCALE,
            grace_s=5.0,
            solver_limit=2,
            probe_every_s=20.0,  # scaled: a probe every 0.2 s
        )
        worker = Worker(queue, solver, config)
        async with running(worker):
            page = "https://example.test/task/"
            ids = await queue.submit_many(
                [
                    {"method": "turnstile", "params": {**sample_params("turnstile"), "pageurl": f"{page}{i}"}}
                    for i in range(10)
                ]
            )
            await wait_until(lambda: worker.breaker.paused)
            (pause,) = (await queue.pause_state(solver.account_ref)).accounts
            assert pause.code == "ERROR_ZERO_BALANCE"
            await asyncio.sleep(0.5)  # several probe intervals: the probe asks the balance, not in.php
            stats = sim.stats()
            assert stats["submits"] == 3
            assert stats["submit_requests"] <= 4 + 1  # no retry storm: the paused account sends nothing
            queue_stats = await queue.stats()
            assert queue_stats.failed == 0
            sim.control({"accounts": {KEY: {"balance": 10.0}}})  # topped up: the probe resumes the account
            done = [await queue.wait_result(i, timeout_s=20) for i in ids]
            assert all(r is not None and r.status == "success" for r in done)
            assert max(r.attempts for r in done if r is not None) <= 2
        assert sim.stats()["submits"] == 10


# -- a real worker process per provider ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["2captcha", "capsolver", "anticaptcha"])
async def test_a_worker_process_solves_through_each_provider_within_its_limit(
    name: str, queue: AsyncCaptchaQueue, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    config = SimulatorConfig(profile=PAYING[name], time_scale=0.1, threads=50, seed=2)
    async with run_simulator(config) as sim:
        env = {**subprocess_env, "CAPTCHAAI_KEY": KEY, "CAPTCHAAI_URL": sim.base_url}
        argv = ["-m", "captcha_queue", "worker", "--processes", "1", "--solver", name, "--solver-limit", "3"]
        argv += ["--time-scale", "0.1", "--lease-s", "2", "--grace-s", "5", "--concurrency", "20"]
        worker = processes.spawn_python(argv, env, capture=False)
        page = "https://example.test/task/"
        ids = await queue.submit_many(
            [
                {"method": "turnstile", "params": {**sample_params("turnstile"), "pageurl": f"{page}{i}"}}
                for i in range(12)
            ]
        )
        done = [await queue.wait_result(i, timeout_s=40) for i in ids]
        assert all(r is not None and r.status == "success" for r in done), done
        stats = sim.stats()
        assert stats["submits"] == 12
        assert stats["max_in_flight"] <= 3  # the configured limit holds across the fleet
        assert not stats["duplicate_submits"]
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 20) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--solver", "2captcha"], "--solver 2captcha: 2captcha (in.php / res.php) tells no thread limit"),
        (["--solver", "capsolver"], "give the account's threads with --solver-limit N"),
        (
            ["--solver", "generic-inphp", "--solver-limit", "3"],
            "--solver generic-inphp has no default base URL",
        ),
        (["--solver", "nope"], "'nope' is not one of 'captchaai', '2captcha', '2captcha-v2'"),
    ],
)
def test_worker_cli_bad_provider_input_is_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        cli, ["worker", *args], env={"CAPTCHAAI_KEY": KEY, "REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2, result.stderr  # click's usage errors add one "see --help" line
    assert message in result.stderr
    assert "Traceback" not in result.stderr
