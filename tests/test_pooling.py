"""Pooling across providers: one namespace, accounts at three services, one ``worker --accounts all``.

A 2captcha-profile account whose money runs out mid-run (the cheapest: it gets work first), a CapSolver
account (the JSON API) and a CaptchaAI account (threadsinfo), each behind its own simulator: every task
succeeds with one attempt, the 2captcha account is paused with 2captcha's code and the others take its
work with no retry storm, each account stays within its fleet limit, and a refund claimed on tasks
solved by two providers reaches the simulator account that solved each one, once. A real worker
subprocess, real simulators, real Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from captcha_queue.cli import cli
from captcha_queue.models import AccountSpec, Result
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.simulator import RunningSimulator, SimulatorConfig, run_simulator
from captcha_queue.solvers.base import account_ref, key_fingerprint

from .gateway_helpers import new_key, serve
from .helpers import CliEnv, ProcessManager
from .test_worker_processes import eventually

SCALE = 0.05
KEYS = {"twocap": "a7" * 16, "capsolver": "CAP-" + "d4" * 16, "captchaai": "e5" * 16}
PRICE = 0.25
FUNDED_SOLVES = 10  # the 2captcha account's money pays for this many solves, then ERROR_ZERO_BALANCE
LIMIT = 3  # every account's fleet limit (captchaai's from threadsinfo: its simulator gives 3 threads)
BURST = 40

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def simulators() -> AsyncIterator[dict[str, RunningSimulator]]:
    configs = {
        "twocap": SimulatorConfig(
            profile="2captcha", price=PRICE, balance=PRICE * FUNDED_SOLVES, threads=50, seed=1
        ),
        "capsolver": SimulatorConfig(profile="capsolver", price=PRICE, balance=50.0, threads=50, seed=2),
        "captchaai": SimulatorConfig(profile="captchaai", threads=LIMIT, seed=3),
    }
    async with AsyncExitStack() as stack:
        sims: dict[str, RunningSimulator] = {}
        for name, config in configs.items():
            config.keys = (KEYS[name],)
            config.names = {KEYS[name]: name}
            config.time_scale = SCALE
            config.ip_ban_after = 100_000
            sims[name] = await stack.enter_async_context(run_simulator(config))
        yield sims


def turnstile(i: int) -> dict[str, Any]:
    return {"method": "turnstile", "params": {"sitekey": "0x4AAAA", "pageurl": f"https://e.test/pool/{i}"}}


async def register_pool(q: AsyncCaptchaQueue, sims: dict[str, RunningSimulator]) -> None:
    """The three accounts, routed by cost: 2captcha (cheapest), CapSolver, CaptchaAI."""
    await q.add_account(
        AccountSpec(
            name="twocap",
            provider="2captcha",
            base_url=sims["twocap"].base_url,
            limit=LIMIT,
            cost=0.5,
            key_env="TWOCAP_KEY",
        )
    )
    await q.add_account(
        AccountSpec(
            name="capsolver",
            provider="capsolver",
            base_url=sims["capsolver"].base_url,
            limit=LIMIT,
            cost=1.0,
            key_env="CAPSOLVER_KEY",
        )
    )
    await q.add_account(
        AccountSpec(
            name="captchaai",
            provider="captchaai",
            base_url=sims["captchaai"].base_url,
            cost=2.0,
            key_env="AI_KEY",
        )
    )


def pool_env(subprocess_env: dict[str, str]) -> dict[str, str]:
    return {
        **subprocess_env,
        "TWOCAP_KEY": KEYS["twocap"],
        "CAPSOLVER_KEY": KEYS["capsolver"],
        "AI_KEY": KEYS["captchaai"],
    }


def worker_argv(*extra: str) -> list[str]:
    return [
        *("-m", "captcha_queue", "worker", "--accounts", "all", "--processes", "1"),
        *("--concurrency", "20", "--lease-s", "2", "--time-scale", str(SCALE), "--grace-s", "2"),
        *("--log-level", "warning"),
        *extra,
    ]


async def test_pooling_across_providers(
    redis_url: str,
    namespace: str,
    subprocess_env: dict[str, str],
    processes: ProcessManager,
    simulators: dict[str, RunningSimulator],
) -> None:
    refs = {name: account_ref(name, key_fingerprint(key)) for name, key in KEYS.items()}
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        await register_pool(q, simulators)
        processes.spawn_python(worker_argv(), pool_env(subprocess_env), capture=False)

        # Routing by cost: one task at a time, the cheapest account (2captcha) has room for each.
        first: list[Result] = []
        for i in range(3):
            task = turnstile(i)
            result = await q.wait_result(await q.submit("turnstile", task["params"]), timeout_s=30.0)
            assert result is not None
            first.append(result)
        assert [r.account for r in first] == [refs["twocap"]] * 3
        assert [r.provider for r in first] == ["2captcha"] * 3

        # A burst: 2captcha's money runs out a few solves in, the two others take the rest.
        ids = await q.submit_many([turnstile(i) for i in range(3, 3 + BURST)])
        results = [r async for r in q.as_completed(ids, timeout_s=60.0)]
        assert len(results) == BURST
        assert all(r.ok for r in results), [r.error_code for r in results if not r.ok]
        assert all(r.attempts == 1 for r in results), [r.attempts for r in results]
        by_account = {name: sum(r.account == ref for r in [*first, *results]) for name, ref in refs.items()}
        assert by_account["twocap"] == FUNDED_SOLVES, by_account
        assert by_account["capsolver"] > 0, by_account
        assert by_account["captchaai"] > 0, by_account
        assert sum(by_account.values()) == 3 + BURST
        stats = await q.stats()
        assert (stats.failed, stats.dead) == (0, 0)

        # The 2captcha account is paused with 2captcha's code; the others are not.
        pauses = {p.account: p.code for p in (await q.pause_state()).accounts}
        assert pauses == {"twocap": "ERROR_ZERO_BALANCE"}, pauses

        # No retry storm: the refused submits are the ones in flight when the money ran out.
        sim_stats = {name: sim.stats() for name, sim in simulators.items()}
        assert sim_stats["twocap"]["codes"].get("ERROR_ZERO_BALANCE", 0) <= 2 * LIMIT, sim_stats["twocap"]
        assert sim_stats["twocap"]["submits"] == FUNDED_SOLVES
        for name in ("capsolver", "captchaai"):
            errors = {c: n for c, n in sim_stats[name]["codes"].items() if c.startswith("ERROR")}
            assert errors == {}, (name, errors)

        # The fleet limit held on each account, at its own service.
        for name, sim in simulators.items():
            account = sim.account(KEYS[name])
            assert 1 <= account["max_in_flight"] <= LIMIT, (name, account)
        assert simulators["twocap"].account(KEYS["twocap"])["balance"] == 0.0

        # Refunds on tasks solved by two providers reach the account that solved each, once.
        bad_twocap = next(r for r in [*first, *results] if r.account == refs["twocap"])
        bad_capsolver = next(r for r in results if r.account == refs["capsolver"])
        balances_before = {name: sim.account(KEYS[name])["balance"] for name, sim in simulators.items()}
        assert await q.report(bad_twocap.id, correct=False)
        assert await q.report(bad_capsolver.id, correct=False)
        assert not await q.report(bad_twocap.id, correct=False)  # once per task

        def refunded(name: str) -> tuple[int, int]:
            account = simulators[name].account(KEYS[name])
            return int(account["reports_bad"]), int(account["refunds"])

        async def both_refunded() -> bool:
            return refunded("twocap") == (1, 1) and refunded("capsolver") == (1, 1)

        # The 2captcha account is paused for its balance, not its key: its refund still goes out
        # (and gives it the money for one more solve).
        await eventually(both_refunded, timeout_s=20.0, what="a refund on each provider")
        assert refunded("captchaai") == (0, 0)
        balances = {name: sim.account(KEYS[name])["balance"] for name, sim in simulators.items()}
        assert balances == {
            "twocap": PRICE,  # refunded from 0: the money for one more solve
            "capsolver": balances_before["capsolver"] + PRICE,
            "captchaai": balances_before["captchaai"],  # not refunded: it solved neither task
        }
        assert simulators["capsolver"].stats()["reports"] == {"bad": 1}
        await asyncio.sleep(1.0)  # several report periods: nothing is sent twice
        assert refunded("twocap") == (1, 1)
        assert refunded("capsolver") == (1, 1)


async def test_gateway_getbalance_is_the_fleets_view(
    redis_url: str,
    namespace: str,
    subprocess_env: dict[str, str],
    cli_env: CliEnv,
    processes: ProcessManager,
    simulators: dict[str, RunningSimulator],
) -> None:
    """getbalance / getBalance answer what the workers last read from each account: the sum for a key
    that names no account, the account's own for a key that names one, the configured value while
    no live worker knows a balance (before they start, after they stop)."""
    fallback = 100.0

    def fleet_balance() -> float:
        return round(sum(float(sim.account(KEYS[name])["balance"]) for name, sim in simulators.items()), 6)

    async with (
        AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q,
        serve(q.client, redis_url, balance=fallback) as gateway,
        aiohttp.ClientSession() as http,
    ):
        await register_pool(q, simulators)
        pooled = await new_key(q.client, namespace)
        capsolver_only = await new_key(q.client, namespace, account="capsolver")
        nobody = await new_key(q.client, namespace, account="nobody")

        async def res_balance(key: str) -> str:
            url = f"{gateway.base_url}/res.php"
            async with http.get(url, params={"key": key, "action": "getbalance"}) as resp:
                assert resp.status == 200
                return await resp.text()

        async def json_balance(key: str) -> Any:
            async with http.post(f"{gateway.base_url}/getBalance", json={"clientKey": key}) as resp:
                assert resp.status == 200
                return json.loads(await resp.text())

        # No worker has read a balance yet: the configured value.
        assert await res_balance(pooled) == "100.000"
        assert await json_balance(pooled) == {"errorId": 0, "balance": fallback}

        # Workers ask at start (and every --balance-refresh-s, time-scaled: 0.1 s here).
        worker = processes.spawn_python(
            worker_argv("--balance-refresh-s", "2"), pool_env(subprocess_env), capture=False
        )
        start = fleet_balance()
        assert start == PRICE * FUNDED_SOLVES + 50.0 + 10.0  # captchaai's simulator default: 10

        async def answers(key: str, expected: float) -> bool:
            return await res_balance(key) == f"{expected:.3f}" and await json_balance(key) == {
                "errorId": 0,
                "balance": expected,
            }

        await eventually(lambda: answers(pooled, start), timeout_s=20.0, what="the sum of the balances")
        assert await answers(capsolver_only, 50.0)  # the key's own account
        assert await answers(nobody, fallback)  # an account no worker serves: the configured value

        # Solves spend money (the cheapest account, 2captcha, takes them): the next reads show it.
        ids = await q.submit_many([turnstile(i) for i in range(4)])
        assert all(r.ok for r in [r async for r in q.as_completed(ids, timeout_s=30.0)])
        spent = fleet_balance()
        assert spent == start - 4 * PRICE
        await eventually(lambda: answers(pooled, spent), timeout_s=20.0, what="the balance after solves")

        # The per-account table, live (--watch), shows the balances the workers read.
        shown = await asyncio.to_thread(
            CliRunner().invoke, cli, ["stats", "--watch", "--count", "1", "--interval", "0.05"], env=cli_env
        )
        assert shown.exit_code == 0, shown.output
        assert "accounts (routing order)" in shown.output
        for name in KEYS:
            assert name in shown.output
        assert "balance" in shown.output
        assert f"{PRICE * FUNDED_SOLVES - 4 * PRICE:g}" in shown.output
        watched = await asyncio.to_thread(
            CliRunner().invoke, cli, ["stats", "--watch", "--count", "1", "--json"], env=cli_env
        )
        assert watched.exit_code == 0, watched.output
        accounts = {a["name"]: a for a in json.loads(watched.stdout)["accounts"]}
        assert accounts["capsolver"]["balance"] == 50.0
        for key in KEYS.values():
            assert key not in shown.output
            assert key not in watched.output

        # The workers stop (and unregister): nothing known any more, the configured value again.
        assert processes.stop(worker)
        await eventually(lambda: answers(pooled, fallback), timeout_s=20.0, what="the fallback")


async def test_account_balances_take_each_accounts_latest_live_report(queue: AsyncCaptchaQueue) -> None:
    """The most recent reading per account among live workers; registrations that are not numbers
    (written by hand or by another version) are left out; a worker that unregisters no longer counts."""
    registrations: dict[str, dict[str, Any]] = {
        "w1": {"account": "a", "balance": 5.0, "balance_at": 100.0},
        "w2": {"account": "a", "balance": 7.5, "balance_at": 200.0},
        "w3": {"account": "b", "balance": True, "balance_at": 300.0},
        "w4": {"account": "c", "balance": "9", "balance_at": 300.0},
        "w5": {"account": "d", "balance": 1.0},
        "w6": {"account": "e", "balance": 0, "balance_at": 50},
        "w7": {"balance": 3.0, "balance_at": 50.0},
    }
    for worker_id, info in registrations.items():
        await queue.register_worker(worker_id, info, ttl_s=30.0)
    assert await queue.account_balances() == {"a": (7.5, 200.0), "e": (0.0, 50.0)}
    await queue.unregister_worker("w2")
    assert await queue.account_balances() == {"a": (5.0, 100.0), "e": (0.0, 50.0)}
