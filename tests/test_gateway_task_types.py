"""createTask / getTaskResult through the gateway for the task types the workers solve beyond
reCAPTCHA and images: hCaptcha, FunCaptcha, AWS WAF, DataDome, Turnstile, GeeTest v4, coordinates,
in each provider's spelling. The gateway is a real HTTP server on a real Redis; the test finishes tasks
through the queue's worker API as a worker would, then checks the ``solution`` object field by field
against what that provider returns for that type. The last tests drive official clients (Anti-Captcha's
and CapSolver's SDKs, unchanged) against the gateway (CapSolver's SDK 1.0.1 refuses AWS WAF types
itself, before any request)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from captcha_queue import AsyncCaptchaQueue, Solution
from captcha_queue.gateway import RunningGateway

from .gateway_helpers import new_key, png_b64, serve
from .helpers import claim_all
from .test_official_clients import run_client

PAGE = "https://example.com/login"
PROXY_FIELDS = {
    "proxyType": "http",
    "proxyAddress": "203.0.113.7",
    "proxyPort": 3128,
    "proxyLogin": "user",
    "proxyPassword": "pass",
}
UA = "Mozilla/5.0 (solver)"
COOKIE = "datadome=4ZXwCBlyHx; Max-Age=31536000; Domain=.example.com; Path=/; Secure; SameSite=Lax"
AWS_2CAPTCHA = {"captcha_voucher": "eyJ0eXAi", "existing_token": "f8ab5749-b916"}


@pytest.fixture
async def gateway(redis_client: aioredis.Redis, redis_url: str) -> AsyncIterator[RunningGateway]:
    async with serve(redis_client, redis_url) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def key(redis_client: aioredis.Redis, namespace: str) -> str:
    return await new_key(redis_client, namespace)


async def call(http: aiohttp.ClientSession, url: str, body: object) -> dict[str, Any]:
    async with http.post(url, json=body) as resp:
        assert resp.status == 200
        document: dict[str, Any] = await resp.json()
        return document


#: (task, our method, params the queued task must hold, the worker's Solution, the solution answered)
CASES: dict[str, tuple[dict[str, Any], str, dict[str, str], Solution, dict[str, Any]]] = {
    "hcaptcha-2captcha": (
        {"type": "HCaptchaTaskProxyless", "websiteURL": PAGE, "websiteKey": "hc-site", "isInvisible": True},
        "hcaptcha",
        {"sitekey": "hc-site", "pageurl": PAGE, "invisible": "1"},
        Solution("P1_eyJ0", user_agent=UA),
        {"gRecaptchaResponse": "P1_eyJ0", "token": "P1_eyJ0", "userAgent": UA},
    ),
    "hcaptcha-proxied": (
        {"type": "HCaptchaTask", "websiteURL": PAGE, "websiteKey": "hc-site", **PROXY_FIELDS},
        "hcaptcha",
        {"sitekey": "hc-site", "proxy": "user:pass@203.0.113.7:3128", "proxytype": "HTTP"},
        Solution("P1_eyJ1"),
        {"gRecaptchaResponse": "P1_eyJ1", "token": "P1_eyJ1"},
    ),
    "funcaptcha-anticaptcha": (
        {
            "type": "FunCaptchaTaskProxyless",
            "websiteURL": PAGE,
            "websitePublicKey": "69A21A01-CC7B",
            "funcaptchaApiJSSubdomain": "client-api.arkoselabs.com",
            "data": '{"blob":"x1"}',
        },
        "funcaptcha",
        {"publickey": "69A21A01-CC7B", "surl": "client-api.arkoselabs.com", "data": '{"blob":"x1"}'},
        Solution("3084f4a302b176cd7.96368058"),
        {"token": "3084f4a302b176cd7.96368058"},
    ),
    "funcaptcha-capsolver": (
        {"type": "FunCaptchaTaskProxyLess", "websiteURL": PAGE, "websitePublicKey": "PK-2"},
        "funcaptcha",
        {"publickey": "PK-2", "pageurl": PAGE},
        Solution("tok-2"),
        {"token": "tok-2"},
    ),
    "aws-waf-2captcha": (
        {
            "type": "AmazonTaskProxyless",
            "websiteURL": PAGE,
            "websiteKey": "AQIDAHjcYu",
            "iv": "CgAHbCe2GgAAAAAj",
            "context": "9BUgmlm48F92WUoqv97a49ZuEJJ50TCk9MVr3C7WMtQ0X6flVbufM4n8mjFLmbLVAPgaQ1Jydeaja94",
            "challengeScript": "https://41bcdd4fb3cb.610cd090.us-east-1.token.awswaf.com/challenge.js",
        },
        "amazon_waf",
        {
            "sitekey": "AQIDAHjcYu",
            "iv": "CgAHbCe2GgAAAAAj",
            "challenge_script": "https://41bcdd4fb3cb.610cd090.us-east-1.token.awswaf.com/challenge.js",
        },
        Solution(json.dumps(AWS_2CAPTCHA), data=AWS_2CAPTCHA),
        AWS_2CAPTCHA,
    ),
    "aws-waf-capsolver": (
        {
            "type": "AntiAwsWafTaskProxyLess",
            "websiteURL": PAGE,
            "awsKey": "AQID",
            "awsIv": "CgAH",
            "awsContext": "9BUg",
        },
        "amazon_waf",
        {"sitekey": "AQID", "iv": "CgAH", "context": "9BUg"},
        Solution('{"cookie":"aws-waf-token=1"}', data={"cookie": "aws-waf-token=1"}),
        {"cookie": "aws-waf-token=1"},
    ),
    "datadome-2captcha": (
        {
            "type": "DataDomeSliderTask",
            "websiteURL": PAGE,
            "captchaUrl": "https://geo.captcha-delivery.com/captcha/?initialCid=AHrlqAAA",
            "userAgent": UA,
            **PROXY_FIELDS,
        },
        "datadome",
        {
            "captcha_url": "https://geo.captcha-delivery.com/captcha/?initialCid=AHrlqAAA",
            "userAgent": UA,
            "proxy": "user:pass@203.0.113.7:3128",
            "proxytype": "HTTP",
        },
        Solution(COOKIE),
        {"cookie": COOKIE},
    ),
    "datadome-capsolver": (
        {
            "type": "DatadomeSliderTask",
            "websiteURL": PAGE,
            "captchaUrl": "https://geo.captcha-delivery.com/captcha/?initialCid=B",
            "userAgent": UA,
            "proxy": "socks5:203.0.113.7:1080:user:pass",
        },
        "datadome",
        {"proxy": "user:pass@203.0.113.7:1080", "proxytype": "SOCKS5"},
        Solution("datadome=B1"),
        {"cookie": "datadome=B1"},
    ),
    "turnstile-2captcha": (
        {
            "type": "TurnstileTaskProxyless",
            "websiteURL": PAGE,
            "websiteKey": "0x4AAAAAAA",
            "action": "login",
            "data": "cd-1",
        },
        "turnstile",
        {"sitekey": "0x4AAAAAAA", "action": "login", "data": "cd-1"},
        Solution("0.zrSnRHO7h0", user_agent=UA),
        {"token": "0.zrSnRHO7h0", "userAgent": UA},
    ),
    "turnstile-anticaptcha": (
        {"type": "TurnstileTask", "websiteURL": PAGE, "websiteKey": "0x4B", "cData": "cd-2", **PROXY_FIELDS},
        "turnstile",
        {"sitekey": "0x4B", "data": "cd-2", "proxy": "user:pass@203.0.113.7:3128"},
        Solution("0.tok"),
        {"token": "0.tok"},
    ),
    "turnstile-capsolver": (
        {
            "type": "AntiTurnstileTaskProxyLess",
            "websiteURL": PAGE,
            "websiteKey": "0x4C",
            "metadata": {"action": "signup", "cdata": "cd-3"},
        },
        "turnstile",
        {"sitekey": "0x4C", "action": "signup", "data": "cd-3"},
        Solution("0.tok3"),
        {"token": "0.tok3"},
    ),
    "geetest-v4-2captcha": (
        {
            "type": "GeeTestTaskProxyless",
            "websiteURL": PAGE,
            "version": 4,
            "initParameters": {"captcha_id": "e392e1d7"},
        },
        "geetest",
        {"gt": "e392e1d7", "version": "4"},
        Solution(
            '{"captcha_id":"e392e1d7","lot_number":"7bb9"}',
            data={"captcha_id": "e392e1d7", "lot_number": "7bb9"},
        ),
        {"captcha_id": "e392e1d7", "lot_number": "7bb9"},
    ),
    "coordinates-anticaptcha": (
        {"type": "ImageToCoordinatesTask", "body": png_b64(), "comment": "click the cats", "mode": "points"},
        "base64",
        {"coordinatescaptcha": "1", "textinstructions": "click the cats"},
        Solution('[{"x":39,"y":59}]', data=[{"x": 39, "y": 59}]),
        {"coordinates": [[39, 59]]},
    ),
    "coordinates-2captcha": (
        {"type": "CoordinatesTask", "body": png_b64(), "comment": "click the cats"},
        "base64",
        {"coordinatescaptcha": "1"},
        Solution('[{"x":39,"y":59}]', data=[{"x": 39, "y": 59}]),
        {"coordinates": [{"x": 39, "y": 59}]},
    ),
    "rotate-2captcha": (
        {"type": "RotateTask", "body": png_b64(), "angle": 15},
        "rotatecaptcha",
        {"angle": "15"},
        Solution("180"),
        {"rotate": 180},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_task_type_is_queued_as_our_method_and_answered_in_its_providers_shape(
    case: str, gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    task, method, params, solution, answered = CASES[case]
    created = await call(http, f"{gateway.base_url}/createTask", {"clientKey": key, "task": task})
    assert created["errorId"] == 0, created
    assert isinstance(created["taskId"], int)
    poll = {"clientKey": key, "taskId": created["taskId"]}
    assert await call(http, f"{gateway.base_url}/getTaskResult", poll) == {
        "errorId": 0,
        "status": "processing",
    }
    [claim] = await claim_all(queue, 1)
    assert claim.task.method == method
    assert params.items() <= claim.task.params.items()
    await queue.complete(claim, solution)
    ready = await call(http, f"{gateway.base_url}/getTaskResult", poll)
    assert ready["status"] == "ready"
    assert ready["solution"] == answered


async def test_a_type_the_workers_solve_without_the_fields_it_needs_writes_nothing(
    gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    no_proxy = {
        "type": "DataDomeSliderTask",
        "websiteURL": PAGE,
        "captchaUrl": "https://c.example",
        "userAgent": UA,
    }
    answer = await call(http, f"{gateway.base_url}/createTask", {"clientKey": key, "task": no_proxy})
    assert answer["errorId"] != 0
    assert answer["errorCode"] == "ERROR_BAD_PARAMETERS"
    no_key = {"type": "AmazonTaskProxyless", "websiteURL": PAGE, "iv": "a", "context": "b"}
    answer = await call(http, f"{gateway.base_url}/createTask", {"clientKey": key, "task": no_key})
    assert answer["errorCode"] == "ERROR_BAD_PARAMETERS"
    assert await queue.client.hlen(queue.keys.tasks) == 0


# -- official clients, unchanged, against the gateway --------------------------------------------


async def _finish_while(
    client: asyncio.Task[dict[str, Any]], queue: AsyncCaptchaQueue, answers: dict[str, Solution]
) -> list[str]:
    """Finish each task the client queues (by method) until the client is done; the methods seen."""
    seen: list[str] = []
    while not client.done():
        for claim in await queue.claim("test-worker", 4, lease_s=30.0, block_s=0.2):
            seen.append(claim.task.method)
            await queue.complete(claim, answers[claim.task.method])
    return seen


async def test_anticaptchaofficial_solves_hcaptcha_funcaptcha_turnstile_through_the_gateway(
    gateway: RunningGateway, key: str, queue: AsyncCaptchaQueue
) -> None:
    pytest.importorskip("anticaptchaofficial")
    script = f"""
        import json
        import requests
        from anticaptchaofficial import antinetworking
        from anticaptchaofficial.hcaptchaproxyless import hCaptchaProxyless
        from anticaptchaofficial.funcaptchaproxyless import funcaptchaProxyless
        from anticaptchaofficial.turnstileproxyless import turnstileProxyless

        class ToGateway(requests.adapters.HTTPAdapter):
            def send(self, request, **kwargs):
                request.url = request.url.replace("https://api.anti-captcha.com", {gateway.base_url!r}, 1)
                return super().send(request, **kwargs)

        antinetworking.session.mount("https://api.anti-captcha.com/", ToGateway())
        found = {{}}
        for name, solver in (("hcaptcha", hCaptchaProxyless()), ("funcaptcha", funcaptchaProxyless()),
                             ("turnstile", turnstileProxyless())):
            solver.set_key({key!r})
            solver.set_website_url({PAGE!r})
            solver.set_website_key("site-key-1")
            found[name] = [solver.solve_and_return_solution(), solver.user_agent, solver.err_string]
        print(json.dumps(found))
    """
    answers = {
        "hcaptcha": Solution("P1_hc", user_agent=UA),
        "funcaptcha": Solution("fc-token"),
        "turnstile": Solution("0.ts", user_agent=UA),
    }
    client = asyncio.create_task(run_client(script))
    seen = await _finish_while(client, queue, answers)
    result = await client
    assert sorted(seen) == ["funcaptcha", "hcaptcha", "turnstile"]
    assert result["hcaptcha"][:2] == ["P1_hc", UA]
    assert result["funcaptcha"][0] == "fc-token"
    assert result["turnstile"][:2] == ["0.ts", UA]


async def test_the_capsolver_sdk_solves_datadome_and_funcaptcha_through_the_gateway(
    gateway: RunningGateway, key: str, queue: AsyncCaptchaQueue
) -> None:
    pytest.importorskip("capsolver")
    script = f"""
        import json
        import capsolver
        capsolver.api_base = {gateway.base_url!r}
        capsolver.api_key = {key!r}
        datadome = capsolver.solve({{
            "type": "DataDomeSliderTask", "websiteURL": {PAGE!r},
            "captchaUrl": "https://geo.captcha-delivery.com/captcha/?initialCid=C",
            "userAgent": {UA!r}, "proxy": "http:203.0.113.7:3128:user:pass",
        }})
        funcaptcha = capsolver.solve({{
            "type": "FunCaptchaTaskProxyLess", "websiteURL": {PAGE!r}, "websitePublicKey": "PK",
        }})
        print(json.dumps({{"datadome": datadome, "funcaptcha": funcaptcha}}))
    """
    answers = {"datadome": Solution("datadome=C1"), "funcaptcha": Solution("fc-2")}
    client = asyncio.create_task(run_client(script, env={"CAPSOLVER_API_BASE": gateway.base_url}))
    seen = await _finish_while(client, queue, answers)
    result = await client
    assert seen == ["datadome", "funcaptcha"]
    assert result == {"datadome": {"cookie": "datadome=C1"}, "funcaptcha": {"token": "fc-2"}}


# -- the whole chain: client -> gateway -> queue -> JsonApiSolver -> the provider (simulator) -------

CHAIN_KEY = "0123456789abcdef0123456789abcdef"
#: solver profile -> simulator profile, per dialect
CHAIN = {
    "anticaptcha": ("anticaptcha", "anticaptcha"),
    "2captcha": ("2captcha-v2", "2captcha"),
    "capsolver": ("capsolver", "capsolver"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dialect", list(CHAIN))
async def test_every_type_answers_the_client_what_the_provider_answered_the_worker(
    dialect: str, gateway: RunningGateway, http: aiohttp.ClientSession, key: str, queue: AsyncCaptchaQueue
) -> None:
    """For every task type of a provider: a client's createTask through the gateway, a worker's
    JsonApiSolver solving it at the provider (the simulator in that profile), and the client's
    getTaskResult holds every field the provider's own getTaskResult answered, with the same values."""
    from captcha_queue.protocol.tasktypes import DIALECTS
    from captcha_queue.simulator import SimulatorConfig, run_simulator
    from captcha_queue.solvers import JsonApiSolver

    from .test_task_types import payload

    solver_profile, sim_profile = CHAIN[dialect]
    table = DIALECTS[dialect]  # type: ignore[index]
    config = SimulatorConfig(profile=sim_profile, time_scale=0.002, balance=1000.0, keys=(CHAIN_KEY,))
    async with (
        run_simulator(config) as sim,
        JsonApiSolver(
            CHAIN_KEY, sim.base_url, profile=solver_profile, thread_limit=10, time_scale=0.002
        ) as solver,
    ):
        for row in table.types.values():
            name = row.proxyless or row.proxied
            assert name is not None
            sent = payload(table, row, name)
            created = await call(http, f"{gateway.base_url}/createTask", {"clientKey": key, "task": sent})
            assert created["errorId"] == 0, (name, created)
            [claim] = await claim_all(queue, 1)
            remote_id = await solver.submit(claim.task.method, claim.task.params)
            solution = None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10.0
            while solution is None and loop.time() < deadline:
                solution = await solver.poll(remote_id, claim.task.method, claim.task.params)
                if solution is None:
                    await asyncio.sleep(0.01)  # the provider's solve time (scaled): nothing to wait on
            assert solution is not None, name
            await queue.complete(claim, solution)
            wire_id: int | str = remote_id if dialect == "capsolver" else int(remote_id)
            provider = await call(
                http, f"{sim.base_url}/getTaskResult", {"clientKey": CHAIN_KEY, "taskId": wire_id}
            )
            assert provider["status"] == "ready", (name, provider)
            poll = {"clientKey": key, "taskId": created["taskId"]}
            answered = (await call(http, f"{gateway.base_url}/getTaskResult", poll))["solution"]
            expected = provider["solution"]
            assert {k: answered.get(k) for k in expected} == expected, (dialect, row.variant, name)
