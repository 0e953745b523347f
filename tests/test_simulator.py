"""The simulator over raw HTTP (aiohttp client, no solver code): the protocol as the spec describes it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from captcha_queue.protocol.methods import normalize
from captcha_queue.simulator import (
    DEFAULT_LATENCY,
    FaultPlan,
    LatencyModel,
    RunningSimulator,
    SimulatorConfig,
    account_label,
    run_simulator,
)
from captcha_queue.simulator.samples import png_base64, png_bytes, sample_params

KEY = "s" * 32


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(time_scale=0.001, seed=11)) as running:
        yield running


async def call(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    endpoint: str,
    params: dict[str, Any],
    *,
    how: str = "form",
    key: str | None = KEY,
) -> tuple[int, str]:
    """One request, sent as a GET query, a POST form or a POST multipart."""
    fields = {k: str(v) for k, v in params.items()}
    if key is not None:
        fields["key"] = key
    url = f"{sim.base_url}/{endpoint}"
    if how == "get":
        request = http.get(url, params=fields)
    elif how == "multipart":
        form = aiohttp.FormData()
        for name, value in fields.items():
            form.add_field(name, value)
        request = http.post(url, data=form)
    else:
        request = http.post(url, data=fields)
    async with request as resp:
        return resp.status, await resp.text()


async def submit_json(http: aiohttp.ClientSession, sim: RunningSimulator, method: str, **extra: Any) -> Any:
    """Submit a sample task of ``method`` (a friendly name is sent as its wire method and params)."""
    wire, params = normalize(method, sample_params(method))
    _, body = await call(http, sim, "in.php", {"method": wire, "json": 1, **params, **extra})
    answer = json.loads(body)
    assert answer["status"] == 1, answer
    return answer


async def until(condition: Any, deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.005)


# -- encodings and formats ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["get", "form", "multipart"])
async def test_every_encoding_in_both_formats(
    http: aiohttp.ClientSession, sim: RunningSimulator, how: str
) -> None:
    params = {"method": "turnstile", **sample_params("turnstile"), "x_sim_solve_s": 0}
    status, plain = await call(http, sim, "in.php", params, how=how)
    assert status == 200
    assert plain.startswith("OK|")
    task_id = plain[3:]
    assert task_id.isdigit()
    status, body = await call(http, sim, "in.php", {**params, "json": 1}, how=how)
    assert json.loads(body)["status"] == 1
    await until(lambda: sim.stats()["in_flight"] == 0)
    _, plain = await call(http, sim, "res.php", {"action": "get", "id": task_id}, how=how)
    assert plain.startswith("OK|sim")
    _, body = await call(http, sim, "res.php", {"action": "get", "id": task_id, "json": 1}, how=how)
    assert json.loads(body)["request"].startswith("sim")


async def test_query_and_body_merge_with_the_body_winning(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    url = f"{sim.base_url}/in.php?method=turnstile&json=1&pageurl=ftp://wrong"
    fields = {"key": KEY, "sitekey": "abc", "pageurl": "https://example.test/"}
    async with http.post(url, data=fields) as resp:
        assert json.loads(await resp.text())["status"] == 1


async def test_ids_as_json_integers_for_userrecaptcha(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    assert isinstance((await submit_json(http, sim, "userrecaptcha"))["request"], int)
    assert isinstance((await submit_json(http, sim, "turnstile"))["request"], str)


async def test_json_default_is_configurable(http: aiohttp.ClientSession) -> None:
    async with run_simulator(SimulatorConfig(json_default=True)) as sim:
        _, body = await call(http, sim, "res.php", {"action": "getbalance"})
        assert json.loads(body) == {"status": 1, "request": "10.000"}


# -- keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "code"), [(None, "ERROR_WRONG_USER_KEY"), ("short", "ERROR_WRONG_USER_KEY")])
async def test_malformed_keys(
    http: aiohttp.ClientSession, sim: RunningSimulator, key: str | None, code: str
) -> None:
    for endpoint, params in (("in.php", {"method": "turnstile"}), ("res.php", {"action": "getbalance"})):
        _, body = await call(http, sim, endpoint, params, key=key)
        assert body == code


async def test_configured_keys_and_the_ip_ban(http: aiohttp.ClientSession) -> None:
    config = SimulatorConfig(keys=(KEY,), names={KEY: "main"}, ip_ban_after=3, ip_ban_s=300, time_scale=0.001)
    async with run_simulator(config) as sim:
        _, body = await call(http, sim, "res.php", {"action": "getbalance"})
        assert body == "10.000"
        for _ in range(3):
            _, body = await call(http, sim, "res.php", {"action": "getbalance"}, key="u" * 32)
            assert body == "ERROR_KEY_DOES_NOT_EXIST"
        _, body = await call(http, sim, "res.php", {"action": "getbalance"})
        assert body == "IP_BANNED"  # even the good key, from this IP
        assert sim.stats()["banned_ips"] == 1
        assert list(sim.stats()["accounts"]) == ["main"]
        sim.control({"unban": True})
        _, body = await call(http, sim, "res.php", {"action": "getbalance"})
        assert body == "10.000"


def test_account_labels_hide_the_key() -> None:
    label = account_label(KEY)
    assert label.startswith("acct-")
    assert KEY not in label
    assert account_label(KEY) == label


# -- in.php validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "drop", "code"),
    [
        ("userrecaptcha", "pageurl", "ERROR_PAGEURL"),
        ("userrecaptcha", "googlekey", "ERROR_GOOGLEKEY"),
        ("turnstile", "sitekey", "ERROR_BAD_PARAMETERS"),
        ("cloudflare_challenge", "proxy", "ERROR_BAD_PARAMETERS"),
        ("cloudflare_challenge", "proxytype", "ERROR_BAD_PARAMETERS"),
        ("captchafox", "proxy", "ERROR_BAD_PARAMETERS"),
        ("geetest", "challenge", "ERROR_BAD_PARAMETERS"),
        ("lemin", "div_id", "ERROR_BAD_PARAMETERS"),
        ("base64", "body", "ERROR_ZERO_CAPTCHA_FILESIZE"),
        ("bls", "instructions", "ERROR_BAD_PARAMETERS"),
        ("friendly_captcha", "pageurl", "ERROR_PAGEURL"),
    ],
)
async def test_required_params(
    http: aiohttp.ClientSession, sim: RunningSimulator, method: str, drop: str, code: str
) -> None:
    params = {"method": method, "json": 1, **sample_params(method)}
    del params[drop]
    _, body = await call(http, sim, "in.php", params)
    assert json.loads(body) == {"status": 0, "request": code}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"method": "hcaptcha", "sitekey": "x", "pageurl": "https://a.test/"}, "ERROR_BAD_PARAMETERS"),
        ({"sitekey": "x"}, "ERROR_BAD_PARAMETERS"),
        ({"method": "turnstile", "sitekey": "x", "pageurl": "example.test"}, "ERROR_PAGEURL"),
        (
            {**sample_params("cloudflare_challenge"), "method": "cloudflare_challenge", "proxy": "::"},
            "ERROR_BAD_PROXY",
        ),
        ({**sample_params("captchafox"), "method": "captchafox", "proxytype": "FTP"}, "ERROR_BAD_PARAMETERS"),
        ({"method": "base64", "body": png_base64(10, 2000)}, "ERROR_IMAGE_DIMENSIONS_TOO_LARGE"),
        ({"method": "base64", "body": "R0lGODlh" + "A" * 200}, None),  # a GIF header is an image type
        ({"method": "base64", "body": "AAAA" * 50}, "ERROR_IMAGE_TYPE_NOT_SUPPORTED"),
    ],
)
async def test_value_checks(
    http: aiohttp.ClientSession, sim: RunningSimulator, params: dict[str, Any], code: str | None
) -> None:
    _, body = await call(http, sim, "in.php", {**params, "json": 1})
    answer = json.loads(body)
    if code is None:
        assert answer["status"] == 1
    else:
        assert answer == {"status": 0, "request": code}


async def test_bad_base64_is_plain_text_even_with_json(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    _, body = await call(http, sim, "in.php", {"method": "base64", "body": "***", "json": 1})
    assert body == "ERROR_UPLOAD"


async def test_image_sizes(http: aiohttp.ClientSession) -> None:
    async with run_simulator(SimulatorConfig(min_image_bytes=100, max_image_bytes=2000)) as sim:
        _, small = await call(http, sim, "in.php", {"method": "base64", "body": png_base64(1, 1)})
        _, large = await call(http, sim, "in.php", {"method": "base64", "body": png_base64(60, 60)})
        _, fine = await call(http, sim, "in.php", {"method": "base64", "body": png_base64(20, 10)})
    assert (small, large) == ("ERROR_ZERO_CAPTCHA_FILESIZE", "ERROR_TOO_BIG_CAPTCHA_FILESIZE")
    assert fine.startswith("OK|")


@pytest.mark.parametrize(
    ("filename", "code"),
    [
        ("captcha.png", None),
        ("captcha.JPG", None),
        ("captcha.bmp", "ERROR_WRONG_FILE_EXTENSION"),
        ("noext", "ERROR_WRONG_FILE_EXTENSION"),
    ],
)
async def test_file_uploads(
    http: aiohttp.ClientSession, sim: RunningSimulator, filename: str, code: str | None
) -> None:
    form = aiohttp.FormData()
    for name, value in {"key": KEY, "method": "post", "json": "1"}.items():
        form.add_field(name, value)
    form.add_field("file", png_bytes(), filename=filename, content_type="image/png")
    async with http.post(f"{sim.base_url}/in.php", data=form) as resp:
        answer = json.loads(await resp.text())
    if code is None:
        assert answer["status"] == 1
    else:
        assert answer == {"status": 0, "request": code}


async def test_post_without_a_file(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    _, body = await call(http, sim, "in.php", {"method": "post", "file": png_base64()}, how="multipart")
    assert body == "ERROR_ZERO_CAPTCHA_FILESIZE"  # a text field is not a file


@pytest.mark.parametrize(
    ("method", "params", "variant"),
    [
        ("base64", {"body": png_base64(), "minLen": 3, "caseSensitive": 1, "user_agent": "UA"}, "image"),
        ("base64", {"body": png_base64(), "textinstructions": "cars", "grid_size": "3x3"}, "grid"),
        ("base64", {"body": png_base64(), "instructions": "cars", "img_type": "recaptcha"}, "grid"),
        ("post", {"recaptcha": 1, "textinstructions": "cars"}, "grid"),  # the 2captcha style, with a file
        ("bls", {"body": png_base64(), "instructions": "cars"}, "bls"),
        (
            "lemin",
            {"captcha_id": "c", "div_id": "d", "pageurl": "https://a.test/", "api_server": "x"},
            "lemin",
        ),
        ("geetest", {"gt": "g", "pageurl": "https://a.test/", "version": 4}, "geetest_v4"),
        (
            "userrecaptcha",
            {"googlekey": "g", "pageurl": "https://a.test/", "version": "v3", "enterprise": 1},
            "recaptcha_v3_enterprise",
        ),
    ],
)
async def test_aliases_and_variants_are_accepted(
    http: aiohttp.ClientSession, sim: RunningSimulator, method: str, params: dict[str, Any], variant: str
) -> None:
    form = aiohttp.FormData()
    for name, value in {"key": KEY, "method": method, "json": 1, **params}.items():
        form.add_field(name, str(value))
    if method == "post":
        form.add_field("file", png_bytes(), filename="c.png", content_type="image/png")
    async with http.post(f"{sim.base_url}/in.php", data=form) as resp:
        assert json.loads(await resp.text())["status"] == 1
    assert sim.stats()["methods"] == {variant: 1}


# -- res.php ------------------------------------------------------------------------------------------


async def test_res_actions(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    task_id = (await submit_json(http, sim, "turnstile", x_sim_solve_s=60))["request"]
    assert (await call(http, sim, "res.php", {"id": task_id}))[1] == "ERROR_EMPTY_ACTION"
    assert (await call(http, sim, "res.php", {"action": "nope"}))[1] == "ERROR_BAD_PARAMETERS"
    assert (await call(http, sim, "res.php", {"action": "get"}))[1] == "ERROR_WRONG_ID_FORMAT"
    assert (await call(http, sim, "res.php", {"action": "get", "id": "12x"}))[1] == "ERROR_WRONG_ID_FORMAT"
    assert (await call(http, sim, "res.php", {"action": "get", "id": "1"}))[1] == "ERROR_WRONG_CAPTCHA_ID"
    assert (await call(http, sim, "res.php", {"action": "get", "id": task_id}))[1] == "CAPCHA_NOT_READY"
    _, body = await call(http, sim, "res.php", {"action": "get", "id": task_id, "json": 1})
    assert json.loads(body) == {"status": 0, "request": "CAPCHA_NOT_READY"}
    _, body = await call(http, sim, "res.php", {"action": "threadsinfo", "json": 1})
    assert json.loads(body) == {"status": 1, "threads": 50, "working_threads": 1}
    assert (await call(http, sim, "res.php", {"action": "getbalance"}))[1] == "10.000"
    assert (await call(http, sim, "res.php", {"action": "reportbad", "id": task_id}))[
        1
    ] == "OK_REPORT_RECORDED"
    assert (await call(http, sim, "res.php", {"action": "reportgood", "id": task_id}))[
        1
    ] == "ERROR_DUPLICATE_REPORT"
    _, body = await call(http, sim, "res.php", {"action": "reportgood", "id": task_id, "json": 1})
    assert json.loads(body) == {"status": 0, "request": "ERROR_DUPLICATE_REPORT"}


async def test_answer_shapes(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    ids = {
        method: (await submit_json(http, sim, method, x_sim_solve_s=0))["request"]
        for method in ("recaptcha_v2_enterprise", "captchafox", "grid", "geetest_v4", "cloudflare_challenge")
    }
    await until(lambda: sim.stats()["in_flight"] == 0)

    async def get(method: str, fmt: int) -> Any:
        _, body = await call(http, sim, "res.php", {"action": "get", "id": ids[method], "json": fmt})
        return json.loads(body) if fmt else body

    enterprise = await get("recaptcha_v2_enterprise", 1)
    assert set(enterprise) == {"status", "request", "result", "user_agent"}
    assert enterprise["result"].startswith("sim")
    assert set(await get("captchafox", 1)) == {"status", "request", "user_agent"}
    assert isinstance((await get("grid", 1))["request"], list)
    assert set((await get("geetest_v4", 1))["request"]) == {
        "captcha_id",
        "lot_number",
        "pass_token",
        "gen_time",
        "captcha_output",
    }
    assert "result" in await get("cloudflare_challenge", 1)
    assert (await get("grid", 0)).startswith("OK|[")
    assert (await get("recaptcha_v2_enterprise", 0)).startswith("OK|sim")


async def test_multi_id_polls(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    done = (await submit_json(http, sim, "turnstile", x_sim_solve_s=0))["request"]
    pending = (await submit_json(http, sim, "turnstile", x_sim_solve_s=60))["request"]
    await until(lambda: sim.stats()["in_flight"] == 1)
    _, body = await call(http, sim, "res.php", {"action": "get", "ids": f"{done},{pending},99,x"})
    answer, not_ready, unknown, malformed = body.split("|")
    assert answer.startswith("sim")
    assert (not_ready, unknown, malformed) == (
        "CAPCHA_NOT_READY",
        "ERROR_WRONG_CAPTCHA_ID",
        "ERROR_WRONG_ID_FORMAT",
    )
    _, body = await call(http, sim, "res.php", {"action": "get", "ids": f"{done},{pending}", "json": 1})
    assert json.loads(body)["request"].endswith("|CAPCHA_NOT_READY")
    assert sim.stats()["polls"] == 6


async def test_results_expire(http: aiohttp.ClientSession) -> None:
    async with run_simulator(SimulatorConfig(time_scale=0.001, result_ttl_real_s=0.1)) as sim:
        task_id = (await submit_json(http, sim, "turnstile", x_sim_solve_s=0))["request"]
        await until(lambda: sim.stats()["in_flight"] == 0)
        await until(lambda: int(task_id) not in sim.simulator.tasks, deadline_s=3.0)
        assert (await call(http, sim, "res.php", {"action": "get", "id": task_id}))[
            1
        ] == "ERROR_WRONG_CAPTCHA_ID"


async def test_strict_poll_interval(http: aiohttp.ClientSession) -> None:
    async with run_simulator(SimulatorConfig(min_poll_interval_s=5)) as sim:
        task_id = (await submit_json(http, sim, "turnstile"))["request"]
        assert (await call(http, sim, "res.php", {"action": "get", "id": task_id}))[1] == "CAPCHA_NOT_READY"
        assert (await call(http, sim, "res.php", {"action": "get", "id": task_id}))[
            1
        ] == "ERROR_TOO_MUCH_REQUESTS"


# -- stats and control --------------------------------------------------------------------------------


async def test_stats_and_reset(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    await submit_json(http, sim, "turnstile", x_task="t-1", x_sim_solve_s=60)
    await submit_json(http, sim, "turnstile", x_task="t-1", x_sim_solve_s=60)
    await submit_json(http, sim, "image", x_sim_solve_s=0)  # no task key: totals only
    await until(lambda: sim.stats()["in_flight"] == 2)
    async with http.get(f"{sim.base_url}/stats") as resp:
        stats = await resp.json()
    assert stats["submits"] == 3
    assert stats["submits_by_task"] == {"t-1": 2}
    assert stats["duplicate_submits"] == {"t-1": 2}
    assert stats["max_in_flight"] >= 2
    account = stats["accounts"][account_label(KEY)]
    assert account["max_in_flight"] >= 2
    async with http.post(f"{sim.base_url}/stats/reset", headers=control_auth(sim)) as resp:
        stats = await resp.json()
    assert (stats["submits"], stats["submits_by_task"], stats["codes"]) == (0, {}, {})
    assert stats["max_in_flight"] == stats["in_flight"] == 2  # the maxima restart from what is in flight
    assert stats["peak"]["in_flight"] == 2
    assert [t["key"] for t in stats["peak"]["tasks"]] == ["t-1", "t-1"]


async def test_stats_name_what_was_in_flight_at_the_maximum(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    """The chaos checker names the solves behind a maximum over the fleet limit from this."""
    await submit_json(http, sim, "turnstile", x_task="slow", x_sim_solve_s=60)
    await submit_json(http, sim, "turnstile", x_task="quick", x_sim_solve_s=0.05)
    await until(lambda: sim.stats()["in_flight"] == 1)  # "quick" done: the peak (2) stays recorded
    await submit_json(http, sim, "turnstile", x_task="later", x_sim_solve_s=60)
    stats = sim.stats()
    assert stats["max_in_flight"] == 2
    peak = stats["peak"]
    assert peak["in_flight"] == 2
    assert sorted(t["key"] for t in peak["tasks"]) == ["quick", "slow"]
    assert all(t["accepted_s_ago"] >= 0 for t in peak["tasks"])


def control_auth(sim: RunningSimulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.control_token}"}


async def test_control_endpoint(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    async with http.post(
        f"{sim.base_url}/control",
        json={"threads": 3, "fault_rate": 0.5, "fault_kinds": ["reset"]},
        headers=control_auth(sim),
    ) as resp:
        settings = await resp.json()
    assert settings["threads"] == 3
    assert settings["faults"] == {"reset": 0.5}
    async with http.get(f"{sim.base_url}/control", headers=control_auth(sim)) as resp:
        assert (await resp.json())["threads"] == 3
    for bad in (
        {"nope": 1},
        {"over_capacity": "explode"},
        {"accounts": {"acct-00000000": {"threads": 1}}},
        [1],
    ):
        async with http.post(f"{sim.base_url}/control", json=bad, headers=control_auth(sim)) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()
    assert sim.control({})["threads"] == 3  # a refused change changed nothing
    async with http.get(f"{sim.base_url}/health") as resp:
        assert await resp.text() == "ok"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic x", "Bearer "])
async def test_control_and_stats_reset_refuse_a_missing_or_wrong_token(
    http: aiohttp.ClientSession, sim: RunningSimulator, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    await submit_json(http, sim, "turnstile", x_sim_solve_s=60)
    before = sim.control({})
    submits = sim.stats()["submits"]
    assert submits == 1
    async with http.post(f"{sim.base_url}/control", json={"threads": 0}, headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert "control token" in (await resp.json())["error"]
    async with http.get(f"{sim.base_url}/control", headers=headers) as resp:
        assert resp.status == 401
    async with http.post(f"{sim.base_url}/stats/reset", headers=headers) as resp:
        assert resp.status == 401
    assert sim.control({}) == before  # nothing changed
    assert sim.stats()["submits"] == submits  # nothing reset
    # GET /stats and the protocol stay open.
    async with http.get(f"{sim.base_url}/stats") as resp:
        assert resp.status == 200


async def test_a_configured_control_token_is_the_one_accepted(http: aiohttp.ClientSession) -> None:
    async with run_simulator(SimulatorConfig(control_token="given-token")) as sim:
        assert sim.control_token == "given-token"
        headers = {"Authorization": "Bearer given-token"}
        async with http.post(f"{sim.base_url}/control", json={"threads": 2}, headers=headers) as resp:
            assert resp.status == 200
        assert sim.control({})["threads"] == 2
    async with run_simulator() as a, run_simulator() as b:
        assert a.control_token != b.control_token  # random per simulator when not given
        assert len(a.control_token) >= 32


async def test_fault_rates_apply_only_to_the_protocol(http: aiohttp.ClientSession) -> None:
    async with run_simulator(SimulatorConfig(faults=FaultPlan({"http_500": 1.0}))) as sim:
        status, _ = await call(http, sim, "res.php", {"action": "getbalance"})
        assert status in (500, 503)
        async with http.get(f"{sim.base_url}/stats") as resp:
            assert resp.status == 200


# -- solve times --------------------------------------------------------------------------------------


def test_latency_models() -> None:
    rng = random.Random(1)
    for name, model in DEFAULT_LATENCY.items():
        samples = [model.sample(rng) for _ in range(200)]
        assert model.min_s <= min(samples) <= max(samples) <= model.max_s, name
    assert DEFAULT_LATENCY["image"].max_s <= 3.0
    assert DEFAULT_LATENCY["recaptcha_v2"].median_s > DEFAULT_LATENCY["turnstile"].median_s
    assert LatencyModel.parse("5") == LatencyModel(5.0)
    assert LatencyModel.parse("35:15:80") == LatencyModel(35.0, min_s=15.0, max_s=80.0)
    with pytest.raises(ValueError, match="median"):
        LatencyModel.parse("1:2")


async def test_solve_times_follow_the_variant(http: aiohttp.ClientSession) -> None:
    async with run_simulator(SimulatorConfig(time_scale=0.002, seed=2)) as sim:
        for method in ("image", "recaptcha_v2", "cloudflare_challenge"):
            await submit_json(http, sim, method)
        tasks = {t.spec.name: t.solve_s for t in sim.simulator.tasks.values()}
    assert tasks["image"] < 0.01 < tasks["recaptcha_v2"] < tasks["cloudflare_challenge"] <= 0.18


async def test_latency_override_and_unsolvable_rate_are_seeded(http: aiohttp.ClientSession) -> None:
    outcomes = []
    for _ in range(2):
        config = SimulatorConfig(seed=9, latency={"*": LatencyModel(0.0)}, unsolvable_rate=0.5)
        async with run_simulator(config) as sim:
            for _ in range(20):
                await submit_json(http, sim, "turnstile")
            await until(lambda sim=sim: sim.stats()["in_flight"] == 0)
            outcomes.append((sim.stats()["solved"], sim.stats()["unsolvable"]))
    assert outcomes[0] == outcomes[1]
    assert 0 < outcomes[0][1] < 20


# -- pingback -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["get_query", "post_form"])
async def test_pingback(http: aiohttp.ClientSession, mode: str) -> None:
    received: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        fields = (
            dict(request.query)
            if request.method == "GET"
            else {k: str(v) for k, v in (await request.post()).items()}
        )
        fields["http_method"] = request.method
        await received.put(fields)
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        config = SimulatorConfig(time_scale=0.001, pingback_mode=mode)  # type: ignore[arg-type]
        async with run_simulator(config) as sim:
            ok_id = (await submit_json(http, sim, "turnstile", pingback=hook_url))["request"]
            bad_id = (
                await submit_json(
                    http, sim, "image", pingback=hook_url, x_sim_result="ERROR_CAPTCHA_UNSOLVABLE"
                )
            )["request"]
            await submit_json(http, sim, "image", pingback="http://example.com/hook")  # not loopback: refused
            got = [await asyncio.wait_for(received.get(), 5), await asyncio.wait_for(received.get(), 5)]
            await until(lambda: sim.stats()["pingbacks"].get("refused") == 1)
            assert sim.stats()["pingbacks"]["sent"] == 2
    finally:
        await runner.cleanup()
    by_id = {item["id"]: item for item in got}
    assert by_id[ok_id]["code"].startswith("sim")
    assert by_id[bad_id]["code"] == "ERROR_CAPTCHA_UNSOLVABLE"
    assert {item["http_method"] for item in got} == {"GET" if mode == "get_query" else "POST"}
