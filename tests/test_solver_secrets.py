"""The API key never shows: not in logs, exception text (chained causes included), reprs or /stats.

A canary key goes through every error path the client has; everything observable is collected and
searched for it.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import pytest
from aiohttp import web

from captcha_queue.errors import ConfigError, SolverError
from captcha_queue.simulator import FAULT_KINDS, FaultPlan, RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.simulator.samples import sample_params
from captcha_queue.solvers import CaptchaAISolver, JsonApiSolver, create_solver
from captcha_queue.solvers.codes import CODES

CANARY = "CANARYkey0123456789CANARYkey0123"  # 32 characters: the shape of a real key


def exception_text(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    cause: BaseException | None = exc
    while cause is not None:
        parts += [str(cause), repr(cause), repr(getattr(cause, "args", ""))]
        cause = cause.__cause__ or cause.__context__
    return "\n".join(parts)


class Collector:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def expect_error(self, call: Callable[[], Awaitable[object]]) -> SolverError:
        try:
            await call()
        except SolverError as exc:
            self.texts.append(exception_text(exc))
            return exc
        raise AssertionError("the call succeeded")

    def assert_clean(self, caplog: pytest.LogCaptureFixture) -> None:
        everything = "\n".join([*self.texts, caplog.text, *(r.getMessage() for r in caplog.records)])
        assert CANARY not in everything
        assert CANARY.lower() not in everything.lower()


@pytest.fixture
def collector(caplog: pytest.LogCaptureFixture) -> Collector:
    caplog.set_level(logging.DEBUG)
    return Collector()


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(time_scale=0.001, seed=1)) as running:
        yield running


async def test_canary_through_every_fault(
    sim: RunningSimulator, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    async with CaptchaAISolver(CANARY, sim.base_url, time_scale=0.001, request_timeout_s=0.3) as client:
        assert CANARY not in repr(client)
        assert CANARY not in str(vars(client).get("counters"))
        remote_id = await client.submit("turnstile", {**sample_params("turnstile"), "x_sim_solve_s": 60})
        for kind in FAULT_KINDS:
            if kind in ("plaintext", "slow"):
                continue  # these answer normally
            sim.control({"faults": {kind: 1.0}})
            await collector.expect_error(client.account_info)
            await collector.expect_error(lambda: client.submit("turnstile", sample_params("turnstile")))
            await collector.expect_error(lambda: client.poll(remote_id, "turnstile"))
            outcome = (await client.poll_many([(remote_id, "turnstile", {})]))[remote_id]
            assert isinstance(outcome, SolverError)
            collector.texts.append(exception_text(outcome))
        sim.control({"faults": {}})
        for code in sorted(CODES):
            params = {**sample_params("turnstile"), "x_sim_error": code}
            await collector.expect_error(partial(client.submit, "turnstile", params))
        await collector.expect_error(lambda: client.poll("not-a-number", "turnstile"))
    stats = json.dumps(sim.stats()) + json.dumps(sim.control({}))
    assert CANARY not in stats
    collector.assert_clean(caplog)


async def test_canary_when_unreachable(collector: Collector, caplog: pytest.LogCaptureFixture) -> None:
    async with run_simulator(SimulatorConfig()) as sim:
        url = sim.base_url
    async with CaptchaAISolver(CANARY, url, request_timeout_s=1.0) as client:
        await collector.expect_error(lambda: client.submit("turnstile", sample_params("turnstile")))
        await collector.expect_error(client.account_info)
    collector.assert_clean(caplog)


async def test_canary_echoed_by_a_hostile_server(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that echoes the request (form and multipart) back in every answer shape."""

    async def echo(request: web.Request) -> web.Response:
        form = await request.post()
        # A multipart part may arrive as bytes: echo every value as str() renders it.
        text = " ".join(f"{k}={v!s}" for k, v in form.items())
        mode = request.match_info["mode"]
        if mode == "html":
            return web.Response(
                status=500, text=f"<html><title>{text}</title></html>", content_type="text/html"
            )
        if mode == "json":
            return web.json_response({"status": 0, "request": "ERROR_SERVER_ERROR", "error_text": text})
        if mode == "code":
            return web.Response(text=f"ERROR_{form.get('key')!s}")
        if mode == "redirect":
            raise web.HTTPFound(f"/elsewhere?key={form.get('key')!s}")
        return web.Response(text=f"garbage {text}")

    app = web.Application()
    app.router.add_post("/{mode}/in.php", echo)
    app.router.add_post("/{mode}/res.php", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for mode in ("html", "json", "code", "redirect", "garbage"):
            base = f"http://127.0.0.1:{port}/{mode}"
            async with CaptchaAISolver(CANARY, base, time_scale=0.001) as client:
                await collector.expect_error(client.account_info)
                await collector.expect_error(partial(client.submit, "turnstile", sample_params("turnstile")))
                await collector.expect_error(partial(client.submit, "post", sample_params("post")))
                await collector.expect_error(partial(client.poll, "123", "turnstile"))
    finally:
        await runner.cleanup()
    collector.assert_clean(caplog)


async def test_canary_as_a_malformed_key(
    sim: RunningSimulator, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    short = CANARY[:31]
    with pytest.raises(ConfigError) as info:
        CaptchaAISolver(short)
    collector.texts.append(exception_text(info.value))
    async with CaptchaAISolver(short, sim.base_url, validate_key=False) as client:
        error = await collector.expect_error(client.account_info)
        assert error.code == "ERROR_WRONG_USER_KEY"
        assert short not in repr(client)
    with pytest.raises(ConfigError) as info:
        CaptchaAISolver(CANARY, f"http://127.0.0.1:1/{CANARY}")
    collector.texts.append(exception_text(info.value))
    assert short not in "\n".join(collector.texts)
    collector.assert_clean(caplog)


async def test_task_params_cannot_carry_a_key(sim: RunningSimulator) -> None:
    async with CaptchaAISolver(CANARY, sim.base_url) as client:
        with pytest.raises(SolverError) as info:
            await client.submit("turnstile", {**sample_params("turnstile"), "key": "x" * 32})
    assert info.value.code == "INVALID_TASK"


def test_fault_plan_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan({"meteor": 0.5})


@pytest.mark.parametrize("profile", ["anticaptcha", "capsolver", "2captcha"])
async def test_canary_through_every_fault_on_the_json_api(
    profile: str, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    provider = "2captcha-v2" if profile == "2captcha" else profile
    async with run_simulator(SimulatorConfig(profile=profile, time_scale=0.001, seed=1)) as sim:
        client = create_solver(
            provider,
            api_key=CANARY,
            base_url=sim.base_url,
            thread_limit=5,
            time_scale=0.001,
            request_timeout_s=0.3,
        )
        async with client:
            assert CANARY not in repr(client)
            remote_id = await client.submit("turnstile", {**sample_params("turnstile"), "x_sim_solve_s": 60})
            for kind in FAULT_KINDS:
                if kind in ("plaintext", "slow"):
                    continue  # these answer normally
                sim.control({"faults": {kind: 1.0}})
                await collector.expect_error(client.account_info)
                await collector.expect_error(lambda: client.submit("turnstile", sample_params("turnstile")))
                await collector.expect_error(lambda: client.poll(remote_id, "turnstile"))
            sim.control({"faults": {}, "accounts": {CANARY: {"balance": 0}}})
            await collector.expect_error(lambda: client.submit("turnstile", sample_params("turnstile")))
            await collector.expect_error(lambda: client.poll("12345", "turnstile"))
        stats = json.dumps(sim.stats()) + json.dumps(sim.control({}))
    assert CANARY not in stats
    collector.assert_clean(caplog)


async def test_canary_echoed_by_a_hostile_json_server(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """A JSON API server that echoes the request body (the clientKey) back in every answer shape."""

    async def echo(request: web.Request) -> web.Response:
        text = await request.text()
        mode = request.match_info["mode"]
        if mode == "html":
            return web.Response(
                status=502, text=f"<html><title>{text}</title></html>", content_type="text/html"
            )
        if mode == "error":
            return web.json_response(
                {"errorId": 1, "errorCode": "ERROR_X", "errorDescription": text}, status=400
            )
        if mode == "code":
            body = json.loads(text)
            return web.json_response({"errorId": 1, "errorCode": f"ERROR_{body['clientKey']}"})
        return web.Response(text=f"garbage {text}")

    app = web.Application()
    app.router.add_post("/{mode}/{method}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for mode in ("html", "error", "code", "garbage"):
            base = f"http://127.0.0.1:{port}/{mode}"
            async with JsonApiSolver(CANARY, base, profile="anticaptcha", thread_limit=5) as client:
                await collector.expect_error(client.account_info)
                await collector.expect_error(partial(client.submit, "turnstile", sample_params("turnstile")))
                await collector.expect_error(partial(client.poll, "123", "turnstile"))
    finally:
        await runner.cleanup()
    collector.assert_clean(caplog)
