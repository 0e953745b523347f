"""One contract suite for every Solver backend: InstantSolver, and every provider profile on the
simulator in that provider's profile (CaptchaAISolver for in.php, JsonApiSolver for the JSON API)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from captcha_queue.errors import ConfigError, SolverError, TaskRejected
from captcha_queue.models import AccountInfo, Solution
from captcha_queue.protocol.methods import KNOWN_METHODS, normalize, spec_for
from captcha_queue.simulator import SimulatorConfig, run_simulator
from captcha_queue.simulator.samples import sample_params
from captcha_queue.solvers import CaptchaAISolver, InstantSolver, Solver, create_solver

KEY = "c" * 32
#: The simulator profile serving each provider (2captcha's serves both of its APIs).
SIM_PROFILE = {
    "captchaai": "captchaai",
    "2captcha": "2captcha",
    "2captcha-v2": "2captcha",
    "capsolver": "capsolver",
    "anticaptcha": "anticaptcha",
    "generic-inphp": "generic-inphp",
}
#: The code each provider answers for an unknown task id, and for a malformed one.
UNKNOWN_ID = {
    "2captcha-v2": ("ERROR_NO_SUCH_CAPCHA_ID", "ERROR_NO_SUCH_CAPCHA_ID"),
    "anticaptcha": ("ERROR_NO_SUCH_CAPCHA_ID", "ERROR_NO_SUCH_CAPCHA_ID"),
    "capsolver": ("ERROR_TASKID_INVALID", "ERROR_TASKID_INVALID"),
}


@pytest.fixture(params=["instant", *SIM_PROFILE])
async def solver(request: pytest.FixtureRequest) -> AsyncIterator[Solver]:
    if request.param == "instant":
        async with InstantSolver(account="bench") as instant:
            yield instant
        return
    async with run_simulator(
        SimulatorConfig(profile=SIM_PROFILE[request.param], time_scale=0.001, seed=5)
    ) as sim:
        made = create_solver(
            request.param,
            api_key=KEY,
            base_url=sim.base_url,
            account="bench",
            time_scale=0.001,
            thread_limit=50,
        )
        async with made as client:
            yield client


def _unknown_id_codes(solver: Solver) -> tuple[str, str]:
    return UNKNOWN_ID.get(solver.provider, ("ERROR_WRONG_CAPTCHA_ID", "ERROR_WRONG_ID_FORMAT"))


async def answer(
    solver: Solver, remote_id: str, method: str, params: dict[str, str | int | float]
) -> Solution:
    first_s, interval_s = solver.poll_schedule(method, params)
    await asyncio.sleep(first_s)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        solution = await solver.poll(remote_id, method, params)
        if solution is not None:
            return solution
        await asyncio.sleep(max(interval_s, 0.005))
    raise AssertionError("no answer")


@pytest.mark.parametrize("method", KNOWN_METHODS)
async def test_submit_then_poll(solver: Solver, method: str) -> None:
    params = sample_params(method)
    if not solver.supports(method, params):
        # a task type the provider lacks is one clear error, before any request
        with pytest.raises(TaskRejected) as info:
            await solver.submit(method, params)
        assert info.value.code == "ERROR_TASK_NOT_SUPPORTED"
        assert solver.counters["submits"] == 0
        return
    remote_id = await solver.submit(method, params)
    assert isinstance(remote_id, str)
    assert remote_id.isdigit()
    solution = await answer(solver, remote_id, method, params)
    spec = spec_for(*normalize(method, params))
    assert solution.text
    assert (solution.data is not None) == (spec.answer_kind == "json")
    assert (solution.user_agent is not None) == spec.returns_user_agent


async def test_poll_many_answers_every_id_and_isolates_errors(solver: Solver) -> None:
    params = sample_params("turnstile")
    ids = [await solver.submit("turnstile", params) for _ in range(3)]
    await asyncio.sleep(solver.poll_schedule("turnstile", params)[0] + 0.05)
    outcomes = await solver.poll_many([*((i, "turnstile", params) for i in ids), ("5", "turnstile", {})])
    assert set(outcomes) == {*ids, "5"}
    assert isinstance(outcomes["5"], TaskRejected)
    assert outcomes["5"].code == _unknown_id_codes(solver)[0]
    assert await solver.poll_many([]) == {}


async def test_unknown_ids(solver: Solver) -> None:
    unknown, malformed = _unknown_id_codes(solver)
    with pytest.raises(TaskRejected) as info:
        await solver.poll("4", "turnstile")
    assert info.value.code == unknown
    with pytest.raises(TaskRejected) as info:
        await solver.poll("x1", "turnstile")
    assert info.value.code == malformed


async def test_invalid_task_is_a_task_rejected(solver: Solver) -> None:
    with pytest.raises(TaskRejected) as info:
        await solver.submit("turnstile", {"sitekey": "x"})
    assert info.value.code == "INVALID_TASK"


async def test_report_and_account(solver: Solver) -> None:
    remote_id = await solver.submit("image", sample_params("image"))
    await solver.report(remote_id, True)
    await solver.report("123", False)
    info = await solver.account_info()
    assert isinstance(info, AccountInfo)
    assert solver.account == "bench"
    assert solver.counters["submits"] == 1
    assert "bench" in repr(solver)
    assert solver.provider in repr(solver)


async def test_closing(solver: Solver) -> None:
    await solver.aclose()
    await solver.aclose()
    with pytest.raises(RuntimeError):
        await solver.submit("image", sample_params("image"))


async def test_errors_carry_codes(solver: Solver) -> None:
    outcome = (await solver.poll_many([("77", "image", {})]))["77"]
    assert isinstance(outcome, SolverError)
    assert outcome.code


def test_create_solver() -> None:
    assert isinstance(create_solver("instant"), InstantSolver)
    made = create_solver("captchaai", api_key=KEY, base_url="http://127.0.0.1:9", account="a", time_scale=0.5)
    assert isinstance(made, CaptchaAISolver)
    assert (made.account, made.time_scale, made.base_url) == ("a", 0.5, "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="API key"):
        create_solver("captchaai")
    with pytest.raises(ConfigError, match="unknown solver"):
        create_solver("nope")


async def test_instant_is_fast() -> None:
    async with InstantSolver() as instant:
        started = time.perf_counter()
        for _ in range(2000):
            remote_id = await instant.submit("image", {"body": "aGVsbG8="})
            assert await instant.poll(remote_id, "image") is not None
        assert time.perf_counter() - started < 2.0
        assert instant.poll_schedule("recaptcha_v2") == (0.0, 0.0)
        assert (await instant.account_info()).threads is None
