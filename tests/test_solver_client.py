"""CaptchaAISolver against the simulator (in process, real HTTP on 127.0.0.1): every method, every
code, every fault kind, the over-capacity modes, batched polls, reports and the account."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest

from captcha_queue.errors import (
    AccountError,
    ConfigError,
    SolverBusy,
    SolverError,
    TaskRejected,
    TransientError,
    Unsolvable,
)
from captcha_queue.models import Solution
from captcha_queue.protocol.methods import KNOWN_METHODS, ParamValue, normalize, spec_for
from captcha_queue.simulator import FaultPlan, RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.simulator.samples import png_base64, sample_params
from captcha_queue.solvers import CaptchaAISolver, Solver
from captcha_queue.solvers.codes import CODES
from captcha_queue.solvers.profiles import PROFILES

KEY = "k" * 32
SCALE = 0.001


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(time_scale=SCALE, seed=7)) as running:
        yield running


@pytest.fixture
async def solver(sim: RunningSimulator) -> AsyncIterator[CaptchaAISolver]:
    async with CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE, request_timeout_s=5.0) as client:
        yield client


async def solve(
    solver: Solver, method: str, params: Mapping[str, ParamValue], *, deadline_s: float = 10.0
) -> Solution:
    """Submit, then poll on the method's (time-scaled) schedule until answered."""
    remote_id = await solver.submit(method, params)
    first_s, interval_s = solver.poll_schedule(method, params)
    await asyncio.sleep(first_s)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        solution = await solver.poll(remote_id, method, params)
        if solution is not None:
            return solution
        await asyncio.sleep(max(interval_s, 0.005))
    raise AssertionError(f"task {remote_id} was not answered in {deadline_s} s")


async def wait_done(sim: RunningSimulator, *, in_flight: int = 0, deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while sim.stats()["in_flight"] != in_flight:
        assert time.monotonic() < end, sim.stats()
        await asyncio.sleep(0.005)


# -- every method -------------------------------------------------------------------------------------


#: The methods CaptchaAI solves (the others are refused before any request: test_solver_contract.py).
CAPTCHAAI_METHODS = [
    m for m in KNOWN_METHODS if PROFILES["captchaai"].supports(spec_for(m, sample_params(m)).name)
]


@pytest.mark.parametrize("method", CAPTCHAAI_METHODS)
async def test_every_method_solves(sim: RunningSimulator, solver: CaptchaAISolver, method: str) -> None:
    params = sample_params(method, task_key=f"task-{method}")
    solution = await solve(solver, method, params)
    spec = spec_for(*normalize(method, params))
    assert solution.text
    if spec.answer_kind == "json":
        assert isinstance(solution.data, list | dict)
    else:
        assert solution.data is None
    assert (solution.user_agent is not None) == spec.returns_user_agent
    stats = sim.stats()
    assert stats["submits_by_task"] == {f"task-{method}": 1}
    assert stats["methods"] == {spec.name: 1}


async def test_image_text_follows_numeric_and_length(solver: CaptchaAISolver) -> None:
    solution = await solve(solver, "image", {"body": png_base64(), "numeric": 1, "minLen": 5, "maxLen": 5})
    assert solution.text.isdigit()
    assert len(solution.text) == 5


async def test_cloudflare_answer_in_request_is_read_too() -> None:
    config = SimulatorConfig(time_scale=SCALE, cf_answer_field="request")
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
        solution = await solve(client, "cloudflare_challenge", sample_params("cloudflare_challenge"))
        assert solution.text.startswith("sim")
        assert solution.user_agent


async def test_json_answers_sent_as_text_are_parsed(sim: RunningSimulator, solver: CaptchaAISolver) -> None:
    sim.control({"json_answers_as_text": True})
    solution = await solve(solver, "geetest_v4", sample_params("geetest_v4"))
    assert isinstance(solution.data, dict)
    assert "lot_number" in solution.data


@pytest.mark.parametrize("id_format", ["int", "string", "mixed"])
async def test_ids_are_strings_whatever_the_wire_type(id_format: str) -> None:
    config = SimulatorConfig(time_scale=SCALE, id_format=id_format)  # type: ignore[arg-type]
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
        remote_id = await client.submit("recaptcha_v2", sample_params("recaptcha_v2"))
        assert isinstance(remote_id, str)
        assert remote_id.isdigit()


# -- every code ---------------------------------------------------------------------------------------

_SERVICE_CODES = sorted(
    code
    for code, info in CODES.items()
    if info.policy != "not_ready"
    and code not in {"HTTP_429", "HTTP_5XX", "HTTP_ERROR", "HTML_PAGE", "BAD_RESPONSE", "TIMEOUT"}
    and code not in {"CONNECTION_ERROR", "INVALID_TASK", "OK_REPORT_RECORDED"}
)


@pytest.mark.parametrize("code", _SERVICE_CODES)
async def test_every_code_at_submit(sim: RunningSimulator, solver: CaptchaAISolver, code: str) -> None:
    with pytest.raises(SolverError) as info:
        await solver.submit("turnstile", {**sample_params("turnstile"), "x_sim_error": code})
    assert info.value.code == code
    assert type(info.value) is CODES[code].error_class
    assert sim.stats()["codes"][code] == 1


@pytest.mark.parametrize("code", _SERVICE_CODES)
async def test_every_code_at_poll(sim: RunningSimulator, solver: CaptchaAISolver, code: str) -> None:
    params = {**sample_params("image"), "x_sim_result": code}
    remote_id = await solver.submit("image", params)
    await wait_done(sim)
    with pytest.raises(SolverError) as info:
        await solver.poll(remote_id, "image", params)
    assert info.value.code == code
    assert type(info.value) is CODES[code].error_class


async def test_forced_errors_through_control(sim: RunningSimulator, solver: CaptchaAISolver) -> None:
    sim.control({"next_errors": {"in": ["MAX_USER_TURN"], "res": ["ERROR_SERVER_ERROR"]}})
    with pytest.raises(SolverBusy):
        await solver.submit("turnstile", sample_params("turnstile"))
    remote_id = await solver.submit("turnstile", sample_params("turnstile"))
    with pytest.raises(TransientError):
        await solver.poll(remote_id, "turnstile")
    await wait_done(sim)
    assert await solver.poll(remote_id, "turnstile") is not None


@pytest.mark.parametrize(
    ("method", "changes", "code"),
    [
        ("turnstile", {"pageurl": "ftp://example.test/"}, "ERROR_PAGEURL"),
        ("cloudflare_challenge", {"proxy": "not a proxy"}, "ERROR_BAD_PROXY"),
        ("image", {"body": "bm90IGFuIGltYWdl" * 20}, "ERROR_IMAGE_TYPE_NOT_SUPPORTED"),
        ("image", {"body": "aGVsbG8="}, "ERROR_ZERO_CAPTCHA_FILESIZE"),
        ("image", {"body": "%%% not base64 %%%"}, "ERROR_UPLOAD"),
        ("image", {"body": png_base64(1200, 10)}, "ERROR_IMAGE_DIMENSIONS_TOO_LARGE"),
        ("image", {"body": png_base64(400, 400)}, "ERROR_TOO_BIG_CAPTCHA_FILESIZE"),
        ("post", {"file": "aGVsbG8="}, "ERROR_ZERO_CAPTCHA_FILESIZE"),
    ],
)
async def test_input_rejected_by_the_service(method: str, changes: dict[str, str], code: str) -> None:
    config = SimulatorConfig(time_scale=SCALE, max_image_bytes=100_000)
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
        with pytest.raises(TaskRejected) as info:
            await client.submit(method, {**sample_params(method), **changes})
        assert info.value.code == code
        assert sim.stats()["submits"] == 0


async def test_local_validation_refuses_before_sending(
    sim: RunningSimulator, solver: CaptchaAISolver
) -> None:
    with pytest.raises(TaskRejected) as info:
        await solver.submit("turnstile", {"sitekey": "x"})
    assert info.value.code == "INVALID_TASK"
    assert "pageurl" in str(info.value)
    assert sim.stats()["submit_requests"] == 0


async def test_unknown_and_malformed_ids(solver: CaptchaAISolver) -> None:
    with pytest.raises(TaskRejected) as info:
        await solver.poll("1234567890", "turnstile")
    assert info.value.code == "ERROR_WRONG_CAPTCHA_ID"
    with pytest.raises(TaskRejected) as info:
        await solver.poll("abc", "turnstile")
    assert info.value.code == "ERROR_WRONG_ID_FORMAT"


async def test_unsolvable_rate() -> None:
    config = SimulatorConfig(time_scale=SCALE, unsolvable_rate=1.0)
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
        with pytest.raises(Unsolvable):
            await solve(client, "image", sample_params("image"))
        assert sim.stats()["unsolvable"] == 1


async def test_another_accounts_task_is_unknown(sim: RunningSimulator, solver: CaptchaAISolver) -> None:
    remote_id = await solver.submit("turnstile", sample_params("turnstile"))
    async with CaptchaAISolver("o" * 32, sim.base_url, time_scale=SCALE) as other:
        with pytest.raises(TaskRejected, match="unknown or expired"):
            await other.poll(remote_id, "turnstile")


# -- the account --------------------------------------------------------------------------------------


async def test_account_info(sim: RunningSimulator, solver: CaptchaAISolver) -> None:
    sim.control({"threads": 7})
    await solver.submit("recaptcha_v2", {**sample_params("recaptcha_v2"), "x_sim_solve_s": 30})
    info = await solver.account_info()
    assert (info.threads, info.working_threads, info.balance) == (7, 1, 10.0)


async def test_wrong_key_length(sim: RunningSimulator) -> None:
    async with CaptchaAISolver("short", sim.base_url, validate_key=False) as client:
        with pytest.raises(AccountError) as info:
            await client.account_info()
    assert info.value.code == "ERROR_WRONG_USER_KEY"
    assert info.value.pause_s is None


async def test_unknown_key_and_ip_ban() -> None:
    config = SimulatorConfig(time_scale=SCALE, keys=(KEY,), ip_ban_after=3, ip_ban_s=300)
    async with run_simulator(config) as sim:
        async with CaptchaAISolver("u" * 32, sim.base_url, time_scale=SCALE) as stranger:
            for _ in range(3):
                with pytest.raises(AccountError) as info:
                    await stranger.submit("turnstile", sample_params("turnstile"))
                assert info.value.code == "ERROR_KEY_DOES_NOT_EXIST"
        async with CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
            with pytest.raises(AccountError) as info:
                await client.submit("turnstile", sample_params("turnstile"))
            assert info.value.code == "IP_BANNED"
            assert info.value.pause_s == pytest.approx(0.3)  # 5 minutes, time-scaled
            end = time.monotonic() + 5
            while True:  # the ban lifts by itself after ip_ban_s (scaled)
                try:
                    await client.submit("turnstile", sample_params("turnstile"))
                    break
                except AccountError:
                    assert time.monotonic() < end
                    await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"state": "bad"}, "ERROR_KEY_DOES_NOT_EXIST"),
        ({"ip_allowed": False}, "ERROR_IP_NOT_ALLOWED"),
        ({"threads": 0}, "ERROR_KEY_DOES_NOT_EXIST"),
    ],
)
async def test_account_switched_at_run_time(
    sim: RunningSimulator, solver: CaptchaAISolver, changes: dict[str, object], code: str
) -> None:
    await solver.submit("turnstile", sample_params("turnstile"))
    sim.control({"accounts": {KEY: changes}})
    with pytest.raises(AccountError) as info:
        await solver.submit("turnstile", sample_params("turnstile"))
    assert info.value.code == code


# -- over capacity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "code"), [("no_slot", "ERROR_NO_SLOT_AVAILABLE"), ("zero_balance", "ERROR_ZERO_BALANCE")]
)
async def test_rejecting_over_capacity_modes(mode: str, code: str) -> None:
    config = SimulatorConfig(time_scale=SCALE, threads=2, over_capacity=mode)  # type: ignore[arg-type]
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
        slow = {**sample_params("recaptcha_v2"), "x_sim_solve_s": 30}
        await client.submit("recaptcha_v2", slow)
        await client.submit("recaptcha_v2", slow)
        with pytest.raises(SolverBusy) as info:
            await client.submit("recaptcha_v2", slow)
        assert info.value.code == code
        assert info.value.retry_after_s is not None
        account = sim.account(KEY)
        assert (account["max_in_flight"], account["rejected_over_capacity"]) == (2, 1)


async def test_zero_balance_with_no_threads_is_an_account_error(
    sim: RunningSimulator, solver: CaptchaAISolver
) -> None:
    await solver.account_info()  # creates the account
    sim.control({"accounts": {KEY: {"threads": 0}}, "next_errors": {"in": ["ERROR_ZERO_BALANCE"]}})
    with pytest.raises(AccountError) as info:
        await solver.submit("turnstile", sample_params("turnstile"))
    assert info.value.code == "ERROR_ZERO_BALANCE"
    assert "no threads" in str(info.value)


async def test_queue_mode_accepts_and_solves_later() -> None:
    config = SimulatorConfig(time_scale=SCALE, threads=2, over_capacity="queue")
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
        params = {**sample_params("image"), "x_sim_solve_s": 0.05}
        ids = [await client.submit("image", params) for _ in range(5)]
        account = sim.account(KEY)
        assert (account["in_flight"], account["working_threads"], account["queued"]) == (5, 2, 3)
        await wait_done(sim)
        account = sim.account(KEY)
        assert (account["max_in_flight"], account["max_working"], account["solved"]) == (5, 2, 5)
        outcomes = await client.poll_many([(i, "image", params) for i in ids])
        assert all(isinstance(o, Solution) for o in outcomes.values())


async def test_raising_threads_at_run_time_starts_queued_tasks() -> None:
    config = SimulatorConfig(time_scale=SCALE, threads=1, over_capacity="queue")
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
        params = {**sample_params("image"), "x_sim_solve_s": 30}
        for _ in range(3):
            await client.submit("image", params)
        sim.control({"threads": 3})
        assert sim.account(KEY)["working_threads"] == 3


# -- faults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cls", "codes"),
    [
        ("http_500", TransientError, {"HTTP_500", "HTTP_503"}),
        ("html_502", TransientError, {"HTTP_502"}),
        ("garbage", TransientError, {"BAD_RESPONSE"}),
        ("plaintext_error", TransientError, {"ERROR_SERVER_ERROR"}),
        ("http_429", SolverBusy, {"HTTP_429"}),
        ("reset", TransientError, {"CONNECTION_ERROR"}),
        ("hang", TransientError, {"TIMEOUT"}),
    ],
)
async def test_fault_kinds_that_fail(kind: str, cls: type[SolverError], codes: set[str]) -> None:
    config = SimulatorConfig(time_scale=SCALE, faults=FaultPlan({kind: 1.0}))
    async with (
        run_simulator(config) as sim,
        CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE, request_timeout_s=0.3) as client,
    ):
        for call in (client.account_info(), client.submit("turnstile", sample_params("turnstile"))):
            with pytest.raises(cls) as info:
                await call
            assert info.value.code in codes
        assert sim.stats()["submits"] == 0
        assert sim.stats()["faults"] == {kind: 2}


async def test_http_429_carries_the_retry_after_header() -> None:
    config = SimulatorConfig(time_scale=0.1, faults=FaultPlan({"http_429": 1.0}))
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=0.1) as client:
        with pytest.raises(SolverBusy) as info:
            await client.account_info()
        assert info.value.retry_after_s == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["plaintext", "slow"])
async def test_fault_kinds_that_still_answer(kind: str) -> None:
    config = SimulatorConfig(time_scale=SCALE, faults=FaultPlan({kind: 1.0}), slow_real_s=0.05)
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
        for method in ("recaptcha_v2", "grid", "image"):
            solution = await solve(client, method, sample_params(method))
            assert solution.text
        assert (await client.account_info()).threads == 50


async def test_lost_reply_creates_the_task_the_client_never_hears_of() -> None:
    config = SimulatorConfig(time_scale=SCALE, faults=FaultPlan({"lost_reply": 1.0}))
    async with run_simulator(config) as sim, CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client:
        params = sample_params("turnstile", task_key="task-1")
        for _ in range(2):
            with pytest.raises(TransientError) as info:
                await client.submit("turnstile", params)
            assert info.value.code == "CONNECTION_ERROR"
        stats = sim.stats()
        assert stats["submits"] == 2
        assert stats["duplicate_submits"] == {"task-1": 2}


async def test_connection_refused_is_transient() -> None:
    async with run_simulator(SimulatorConfig()) as sim:
        url = sim.base_url
    async with CaptchaAISolver(KEY, url, request_timeout_s=2.0) as client:
        with pytest.raises(TransientError) as info:
            await client.submit("turnstile", sample_params("turnstile"))
    assert info.value.code == "CONNECTION_ERROR"


async def test_fault_rate_is_seeded_and_partial() -> None:
    plan = FaultPlan.uniform(0.5, ["http_500", "garbage"])
    results: list[list[str]] = []
    for _ in range(2):
        config = SimulatorConfig(time_scale=SCALE, faults=plan, seed=3)
        async with (
            run_simulator(config) as sim,
            CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE) as client,
        ):
            seen = []
            for _ in range(30):
                try:
                    await client.account_info()
                    seen.append("ok")
                except TransientError as exc:
                    seen.append(exc.code)
            results.append(seen)
    assert results[0] == results[1]
    assert "ok" in results[0]
    assert len(set(results[0])) > 1


# -- polling many, reports, sessions -------------------------------------------------------------------


@pytest.mark.parametrize("batch", [False, True])
async def test_poll_many(sim: RunningSimulator, batch: bool) -> None:
    async with CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE, batch_polls=batch) as client:
        fast = {**sample_params("grid"), "x_sim_solve_s": 0}
        slow = {**sample_params("recaptcha_v2"), "x_sim_solve_s": 30}
        enterprise = {**sample_params("recaptcha_v2_enterprise"), "x_sim_solve_s": 0}
        unsolvable = {
            **sample_params("image"),
            "x_sim_result": "ERROR_CAPTCHA_UNSOLVABLE",
            "x_sim_solve_s": 0,
        }
        items = [
            (await client.submit("grid", fast), "grid", fast),
            (await client.submit("recaptcha_v2", slow), "recaptcha_v2", slow),
            (
                await client.submit("recaptcha_v2_enterprise", enterprise),
                "recaptcha_v2_enterprise",
                enterprise,
            ),
            (await client.submit("image", unsolvable), "image", unsolvable),
            ("1234", "image", {}),
        ]
        await wait_done(sim, in_flight=1)
        sim.reset_stats()
        outcomes = await client.poll_many(items)
        grid, pending, token, failed, unknown = (outcomes[item[0]] for item in items)
        assert isinstance(grid, Solution)
        assert isinstance(grid.data, list)
        assert pending is None
        assert isinstance(token, Solution)
        assert token.user_agent
        assert isinstance(failed, Unsolvable)
        assert isinstance(unknown, TaskRejected)
        # batched: one request for the four one-line answers, one for the Enterprise token
        assert sim.stats()["poll_requests"] == (2 if batch else 5)
        assert sim.stats()["polls"] == 5


async def test_batch_polls_fall_back_when_the_service_lacks_them() -> None:
    config = SimulatorConfig(time_scale=SCALE, multi_get=False)
    async with (
        run_simulator(config) as sim,
        CaptchaAISolver(KEY, sim.base_url, time_scale=SCALE, batch_polls=True) as client,
    ):
        params = {**sample_params("turnstile"), "x_sim_solve_s": 0}
        ids = [await client.submit("turnstile", params) for _ in range(3)]
        await wait_done(sim)
        outcomes = await client.poll_many([(i, "turnstile", params) for i in ids])
        assert all(isinstance(o, Solution) for o in outcomes.values())


async def test_reports_are_best_effort(sim: RunningSimulator, solver: CaptchaAISolver) -> None:
    remote_id = await solver.submit("turnstile", {**sample_params("turnstile"), "x_sim_solve_s": 0})
    await solver.report(remote_id, False)
    await solver.report(remote_id, True)  # ERROR_DUPLICATE_REPORT: swallowed
    await solver.report("999", True)  # unknown id: swallowed
    assert sim.stats()["reports"] == {"bad": 1}
    assert sim.stats()["codes"]["ERROR_DUPLICATE_REPORT"] == 1


async def test_a_shared_session_is_not_closed(sim: RunningSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with CaptchaAISolver(KEY, sim.base_url, session) as client:
            await client.account_info()
        assert not session.closed
        async with CaptchaAISolver(KEY, sim.base_url, session) as again:
            await again.account_info()


async def test_a_closed_solver_refuses_calls(sim: RunningSimulator) -> None:
    client = CaptchaAISolver(KEY, sim.base_url)
    await client.account_info()
    await client.aclose()
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.account_info()


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="32 characters"):
        CaptchaAISolver("short")
    with pytest.raises(ConfigError, match="empty"):
        CaptchaAISolver("  ")
    with pytest.raises(ConfigError, match="base URL"):
        CaptchaAISolver(KEY, "ftp://example.test")
    with pytest.raises(ConfigError, match="must not contain"):
        CaptchaAISolver(KEY, f"http://127.0.0.1:1/{KEY}")


def test_poll_schedule_is_time_scaled() -> None:
    client = CaptchaAISolver(KEY, time_scale=0.5)
    assert client.poll_schedule("image") == (0.5, 2.5)
    assert client.poll_schedule("recaptcha_v3", sample_params("recaptcha_v3")) == (5.0, 2.5)
    assert client.poll_schedule("userrecaptcha", {"version": "v3"}) == (5.0, 2.5)
    assert client.poll_schedule("cloudflare_challenge") == (7.5, 2.5)
    assert client.poll_schedule(None) == (2.5, 2.5)


async def test_regsense_is_sent_under_both_names(sim: RunningSimulator, solver: CaptchaAISolver) -> None:
    # The docs say regsense, the vendor SDK caseSensitive: the client sends both, the service
    # takes whichever it knows.
    await solver.submit("image", {**sample_params("image"), "caseSensitive": 1})
    assert sim.stats()["submits"] == 1
