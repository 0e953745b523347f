"""The official 2captcha Node.js client (@2captcha/captcha-solver, pinned in tests/node/package-lock.json)
against the simulator on loopback: proof that the harness in tests/node_client.py drives a real client
nobody here wrote (submit, poll to a solution, balance, reports, errors) before the gateway tests use it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from captcha_queue.protocol.bodies import json_params
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.simulator.samples import png_base64

from .node_client import NodeClients, node_clients

#: The first test of a session may run ``npm ci`` (a few seconds with the registry; none afterwards).
pytestmark = pytest.mark.timeout(120)

KEY = "n" * 32
OTHER_KEY = "m" * 32  # well-formed, not an account of this simulator
RC = {"pageurl": "https://example.com/login", "googlekey": "6Le-site-key"}
TURNSTILE = {"pageurl": "https://example.com/login", "sitekey": "0x4AAAAAAAA-site-key"}


@pytest.fixture
def node() -> NodeClients:
    return node_clients()


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(keys=(KEY,), balance=7.25, time_scale=0.001, seed=5)
    async with run_simulator(config) as running:
        yield running


async def res_php(sim: RunningSimulator, **params: str) -> dict[str, object]:
    """The simulator's own answer for a task, over raw HTTP (not through the client)."""
    async with aiohttp.ClientSession() as http:
        query = {"key": KEY, "json": "1", **params}
        async with http.get(f"{sim.base_url}/res.php", params=query) as resp:
            document = json.loads(await resp.text())
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize(("method", "params"), [("recaptcha", RC), ("cloudflareTurnstile", TURNSTILE)])
async def test_submits_and_polls_to_the_simulators_solution(
    node: NodeClients, sim: RunningSimulator, method: str, params: dict[str, str]
) -> None:
    result = await node.arun(sim.base_url, KEY, "solve", method, json.dumps(params))
    assert result.ok, result
    task_id = result.document["id"]
    assert task_id.isdigit()
    # The client's answer is the one the service holds for the id the client was given.
    assert await res_php(sim, action="get", id=task_id) == {"status": 1, "request": result.document["answer"]}
    stats = sim.stats()
    assert (stats["submits"], stats["solved"], sim.account(KEY)["submits"]) == (1, 1, 1)


async def test_balance(node: NodeClients, sim: RunningSimulator) -> None:
    result = await node.arun(sim.base_url, KEY, "balance")
    assert result.ok, result
    assert result.document["balance"] == 7.25


async def test_reports_a_solved_task(node: NodeClients, sim: RunningSimulator) -> None:
    solved = await node.arun(sim.base_url, KEY, "solve", "recaptcha", json.dumps(RC))
    assert solved.ok, solved
    bad = await node.arun(sim.base_url, KEY, "report-bad", solved.document["id"])
    assert bad.ok, bad
    assert bad.document["answer"] == "OK_REPORT_RECORDED"
    assert sim.stats()["reports"]["bad"] == 1


async def test_an_unknown_key_is_the_clients_error(node: NodeClients, sim: RunningSimulator) -> None:
    submit = await node.arun(sim.base_url, OTHER_KEY, "solve", "recaptcha", json.dumps(RC))
    assert (submit.returncode, submit.error) == (1, "ERROR_KEY_DOES_NOT_EXIST")
    balance = await node.arun(sim.base_url, "short-key", "balance")
    assert (balance.returncode, balance.error) == (1, "ERROR_WRONG_USER_KEY")
    assert sim.stats()["submits"] == 0
    # The key is in the child's environment only: never on its command line, never in what it printed.
    assert OTHER_KEY not in " ".join(node.argv(sim.base_url, "balance"))
    assert OTHER_KEY not in json.dumps(submit.document) + submit.stderr


async def test_an_unsolvable_task_is_the_clients_error(node: NodeClients, sim: RunningSimulator) -> None:
    sim.control({"unsolvable_rate": 1.0})
    result = await node.arun(sim.base_url, KEY, "solve", "recaptcha", json.dumps(RC))
    assert (result.returncode, result.error) == (1, "ERROR_CAPTCHA_UNSOLVABLE")


async def test_the_script_refuses_bad_usage(node: NodeClients, sim: RunningSimulator) -> None:
    no_method = await node.arun(sim.base_url, KEY, "solve", "noSuchMethod", "{}")
    assert (no_method.returncode, no_method.error) == (2, "USAGE")
    bad_json = await node.arun(sim.base_url, KEY, "solve", "recaptcha", "{")
    assert (bad_json.returncode, bad_json.error) == (2, "USAGE")
    assert sim.stats()["submits"] == 0


# -- Anti-Captcha's official client, over the simulator's JSON API -------------------------------------


@pytest.fixture
async def anti_sim() -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(profile="anticaptcha", keys=(KEY,), balance=4.5, time_scale=0.001, seed=5)
    async with run_simulator(config) as running:
        yield running


async def test_the_anticaptcha_client_over_the_json_api(
    node: NodeClients, anti_sim: RunningSimulator
) -> None:
    args = json.dumps([RC["pageurl"], RC["googlekey"]])
    solved = await node.arun(
        anti_sim.base_url,
        KEY,
        "solve",
        "solveRecaptchaV2Proxyless",
        args,
        client="anticaptcha",
        report="correct",
    )
    assert solved.ok, solved
    assert solved.document["id"].isdigit()
    assert solved.document["answer"].startswith("sim")
    assert (
        solved.document["report"] is True
    )  # the client answers true for {"errorId": 0, "status": "success"}
    assert anti_sim.stats()["reports"]["good"] == 1
    balance = await node.arun(anti_sim.base_url, KEY, "balance", client="anticaptcha")
    assert balance.ok, balance
    assert 0 < balance.document["balance"] < 4.5  # the solve was paid for
    unknown = await node.arun(anti_sim.base_url, OTHER_KEY, "balance", client="anticaptcha")
    assert (unknown.returncode, unknown.error) == (1, "ERROR_KEY_DOES_NOT_EXIST")
    assert anti_sim.stats()["submits"] == 1


# -- the image methods POST JSON bodies -----------------------------------------------------------------


async def test_the_image_methods_json_body_is_read_like_a_form(node: NodeClients) -> None:
    """imageCaptcha POSTs ``{"key": ..., "method": "base64", "body": ...}`` as application/json: the
    2captcha simulator reads it as the service does (before protocol/bodies.py: ERROR_WRONG_USER_KEY)."""
    config = SimulatorConfig(profile="2captcha", keys=(KEY,), time_scale=0.001, seed=5)
    async with run_simulator(config) as sim:
        solved = await node.arun(
            sim.base_url, KEY, "solve", "imageCaptcha", json.dumps({"body": png_base64()})
        )
        assert solved.ok, solved
        assert await res_php(sim, action="get", id=solved.document["id"]) == {
            "status": 1,
            "request": solved.document["answer"],
        }
        assert sim.stats()["methods"] == {"image": 1}


def test_json_params() -> None:
    body = {"key": KEY, "json": 1, "min_score": 0.3, "phrase": True, "cap": False, "x": None, "o": {"a": [1]}}
    assert json_params(json.dumps(body).encode()) == {
        "key": KEY,
        "json": "1",
        "min_score": "0.3",
        "phrase": "1",
        "cap": "0",
        "o": '{"a":[1]}',
    }
    refusals = {
        b"[1]": "not a JSON object",
        b'"text"': "not a JSON object",
        b"{": "Expecting",
        b'{"a": NaN}': "NaN is not a number",
        b'{"a": 1e999}': "a is not a finite number",
        b"\xff": "can't decode|Expecting",
    }
    for bad, why in refusals.items():
        with pytest.raises(ValueError, match=why):
            json_params(bad)
