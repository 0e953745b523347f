"""Official clients nobody here wrote talk to the simulator's profiles, unchanged apart from where they
send their requests: captchaai (base_url), 2captcha-python (server=, over TLS: it hard-codes https://;
its requests trust the test CA through REQUESTS_CA_BUNDLE), capsolver (its module attribute api_base),
anticaptchaofficial (it hard-codes https://api.anti-captcha.com: a requests transport adapter mounted on
the module's own session rewrites that prefix to the simulator, the client's code is untouched).

Each client runs in a subprocess (they are synchronous, requests-based) while the simulator serves on
this test's event loop; the subprocess prints one JSON line the test checks against the simulator's
/stats (solves, balance, refunds).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trustme

from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.simulator.samples import png_base64

pytest.importorskip("twocaptcha")
pytest.importorskip("anticaptchaofficial")
pytest.importorskip("capsolver")
pytest.importorskip("captchaai")

KEY = "0123456789abcdef0123456789abcdef"
SCALE = 0.01
SITEKEY = "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-"
PAGE = "https://example.test/login"


async def run_client(
    script: str, env: dict[str, str] | None = None, timeout_s: float = 45.0
) -> dict[str, Any]:
    """Run ``script`` in a subprocess (stopped by its pid if it outlives ``timeout_s``); its JSON line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**_base_env(), **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def _base_env() -> dict[str, str]:
    import os

    return {
        k: v for k, v in os.environ.items() if not k.startswith(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy"))
    }


def account(sim: RunningSimulator) -> dict[str, Any]:
    (only,) = sim.stats()["accounts"].values()
    return dict(only)


async def test_captchaai_sdk_against_the_captchaai_profile() -> None:
    async with run_simulator(SimulatorConfig(profile="captchaai", time_scale=SCALE, threads=7)) as sim:
        result = await run_client(
            f"""
            import json
            from captchaai import CaptchaAI
            client = CaptchaAI({KEY!r}, base_url={sim.base_url!r})
            solved = client.turnstile("0x4AAAAAAAC3DHQFLr1GavRN", {PAGE!r})
            threads = client.threads_info()
            print(json.dumps({{"threads": threads, "token": solved.solution, "id": solved.task_id}}))
            """
        )
        assert result["token"].startswith("sim")
        assert result["threads"]["threads"] == 7
        assert sim.stats()["solved"] == 1


async def test_2captcha_python_against_the_2captcha_profile_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    config = SimulatorConfig(profile="2captcha", time_scale=SCALE, balance=1.0, price=0.25)
    async with run_simulator(config, ssl_context=server_ctx) as sim:
        assert sim.base_url.startswith("https://")
        server = f"{sim.host}:{sim.port}"
        result = await run_client(
            f"""
            import json
            from twocaptcha import TwoCaptcha
            from twocaptcha.exceptions.api import ApiException
            solver = TwoCaptcha(
                {KEY!r}, server={server!r}, pollingInterval=1, defaultTimeout=30, recaptchaTimeout=30
            )
            solved = solver.recaptcha(sitekey={SITEKEY!r}, url={PAGE!r})
            balance_after_solve = solver.balance()
            solver.report(solved["captchaId"], False)
            balances = [balance_after_solve, solver.balance()]
            errors = []
            for _ in range(6):  # 1.0 pays for 4: the 5th submit finds no money
                try:
                    solver.recaptcha(sitekey={SITEKEY!r}, url={PAGE!r})
                except ApiException as exc:
                    errors.append(str(exc))
                    break
            print(json.dumps({{"code": solved["code"], "balances": balances, "errors": errors}}))
            """,
            env={"REQUESTS_CA_BUNDLE": str(ca_file)},
            timeout_s=60,
        )
        assert result["code"].startswith("sim")
        assert result["balances"] == [0.75, 1.0]  # charged, then refunded by the bad report
        assert result["errors"] == ["ERROR_ZERO_BALANCE"]
        assert account(sim)["refunds"] == 1
        assert sim.stats()["reports"] == {"bad": 1}


async def test_anticaptchaofficial_against_the_anticaptcha_profile() -> None:
    config = SimulatorConfig(profile="anticaptcha", time_scale=SCALE, balance=2.0, price=0.5)
    async with run_simulator(config) as sim:
        result = await run_client(
            f"""
            import json
            import requests
            from anticaptchaofficial import antinetworking
            from anticaptchaofficial.recaptchav2proxyless import recaptchaV2Proxyless
            from anticaptchaofficial.imagecaptcha import imagecaptcha

            class ToSimulator(requests.adapters.HTTPAdapter):
                def send(self, request, **kwargs):
                    request.url = request.url.replace("https://api.anti-captcha.com", {sim.base_url!r}, 1)
                    return super().send(request, **kwargs)

            antinetworking.session.mount("https://api.anti-captcha.com/", ToSimulator())
            solver = recaptchaV2Proxyless()
            solver.set_key({KEY!r})
            solver.set_website_url({PAGE!r})
            solver.set_website_key({SITEKEY!r})
            token = solver.solve_and_return_solution()
            balance = solver.get_balance()
            report = solver.report_incorrect_recaptcha()
            image = imagecaptcha()
            image.set_key({KEY!r})
            text = image.solve_and_return_solution(None, body={png_base64()!r})
            print(json.dumps({{"token": token, "balance": balance, "report": report, "text": text}}))
            """
        )
        assert result["token"].startswith("sim")
        assert result["balance"] == 1.5
        assert result["report"]["errorId"] == 0
        assert result["text"]
        assert account(sim)["refunds"] == 1
        assert account(sim)["submits"] == 2


async def test_capsolver_sdk_against_the_capsolver_profile() -> None:
    capsolver_key = "CAP-" + KEY
    config = SimulatorConfig(
        profile="capsolver", time_scale=SCALE, balance=1.0, price=0.1, keys=(capsolver_key,)
    )
    async with run_simulator(config) as sim:
        result = await run_client(
            f"""
            import json
            import capsolver
            capsolver.api_base = {sim.base_url!r}
            capsolver.api_key = {capsolver_key!r}
            task = {{"type": "ReCaptchaV2TaskProxyLess", "websiteURL": {PAGE!r}, "websiteKey": {SITEKEY!r}}}
            token = capsolver.solve(task)
            text = capsolver.solve({{"type": "ImageToTextTask", "body": {png_base64()!r}}})
            balance = capsolver.balance()
            capsolver.api_key = "CAP-" + "0" * 32
            answer = capsolver.balance()  # the SDK returns (not raises) its error for a refused key
            refused = type(answer).__name__ if isinstance(answer, Exception) else None
            found = {{"token": token, "text": text, "balance": balance["balance"], "refused": refused}}
            print(json.dumps(found))
            """,
            env={"CAPSOLVER_API_BASE": sim.base_url},
        )
        assert result["token"]["gRecaptchaResponse"].startswith("sim")
        assert result["text"]["text"]
        assert result["balance"] == pytest.approx(0.8)
        assert result["refused"] == "AuthenticationError"  # HTTP 401, ERROR_KEY_DENIED_ACCESS
        assert sim.stats()["submits"] == 2
