"""Operator commands against a real Redis: stats, workers, pause/resume, dlq, listen."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TypeVar

import msgspec
import pytest
import redis
from click.testing import CliRunner, Result

from captcha_queue.cli import cli
from captcha_queue.models import Claim, Solution
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.keys import Keys

from .helpers import CliEnv, ProcessManager, claim_all, on_queue

T = TypeVar("T")
TURNSTILE = ["turnstile", "sitekey=0x4AAAAAAAA", "pageurl=https://example.com/login"]


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    """Unlike the conftest's, this one decodes replies: these tests compare stored hashes to str."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def invoke(args: list[str], env: CliEnv, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env, input=input)


def submit(cli_env: CliEnv, *extra: str) -> str:
    result = invoke(["submit", *TURNSTILE, *extra], cli_env)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


# -- stats --------------------------------------------------------------------------------------------


def test_stats_table_and_json(redis_url: str, namespace: str, cli_env: CliEnv) -> None:
    for _ in range(3):
        submit(cli_env, "--priority", "high")
    submit(cli_env, "--priority", "low")

    async def finish_one(q: AsyncCaptchaQueue) -> None:
        (claim,) = await claim_all(q, 1)
        await q.complete(claim, Solution(text="ok"))

    on_queue(redis_url, namespace, finish_one)

    doc = json.loads(invoke(["stats", "--json"], cli_env).stdout)
    assert doc["queued"] == {"high": 2, "normal": 0, "low": 1}
    assert doc["queued_total"] == 3
    assert doc["completed"] == 1
    assert doc["in_flight"] == 0
    assert doc["paused"] is None
    assert doc["pause"] is None

    table = invoke(["stats"], cli_env)
    assert table.exit_code == 0
    assert namespace in table.stdout
    for row in ("queued high", "queued low", "delayed", "in flight", "done", "dead letters", "solver slots"):
        assert row in table.stdout


def test_stats_watch_refreshes(cli_env: CliEnv) -> None:
    submit(cli_env)
    lines = invoke(["stats", "--watch", "--count", "3", "--interval", "0.05", "--json"], cli_env)
    assert lines.exit_code == 0
    docs = [json.loads(line) for line in lines.stdout.splitlines()]
    assert len(docs) == 3
    assert all(d["queued"]["normal"] == 1 for d in docs)
    live = invoke(["stats", "--watch", "--count", "2", "--interval", "0.05"], cli_env)
    assert live.exit_code == 0
    assert "queued normal" in live.stdout


# -- pause / resume -------------------------------------------------------------------------------------


def test_pause_stops_claims_and_resume_lets_them_go(
    redis_url: str, namespace: str, cli_env: CliEnv, sync_redis: redis.Redis
) -> None:
    task_id = submit(cli_env)
    paused = invoke(["pause", "--reason", "maintenance window"], cli_env)
    assert paused.exit_code == 0
    assert "maintenance window" in paused.stdout

    keys = Keys(namespace)
    stored = sync_redis.hgetall(keys.paused)
    assert stored["reason"] == "maintenance window"
    assert stored["code"] == "OPERATOR"
    assert int(stored["since_ms"]) > 0
    assert "until_ms" not in stored

    doc = json.loads(invoke(["stats", "--json"], cli_env).stdout)
    assert doc["paused"] == "maintenance window"
    assert doc["pause"]["code"] == "OPERATOR"
    assert "maintenance window" in invoke(["stats"], cli_env).stdout

    async def claim_now(q: AsyncCaptchaQueue) -> list[Claim]:
        return await q.claim("test-worker", 5, lease_s=30.0, block_s=0.1)

    assert on_queue(redis_url, namespace, claim_now) == []

    resumed = invoke(["resume"], cli_env)
    assert resumed.exit_code == 0
    assert "was paused: maintenance window" in resumed.stdout
    assert not sync_redis.exists(keys.paused)
    assert [c.task.id for c in on_queue(redis_url, namespace, claim_now)] == [task_id]
    assert "was not paused" in invoke(["resume"], cli_env).stdout


def test_pause_for_a_while_sets_an_end(namespace: str, cli_env: CliEnv, sync_redis: redis.Redis) -> None:
    assert invoke(["pause", "--for", "60"], cli_env).exit_code == 0
    stored = sync_redis.hgetall(Keys(namespace).paused)
    assert int(stored["until_ms"]) - int(stored["since_ms"]) == 60_000
    assert 0 < sync_redis.pttl(Keys(namespace).paused) <= 60_000


def test_account_pauses_show_who_and_resume_one_account_or_all(
    redis_url: str, namespace: str, cli_env: CliEnv, sync_redis: redis.Redis
) -> None:
    from captcha_queue.errors import AccountError
    from captcha_queue.models import AccountInfo
    from captcha_queue.solvers.base import key_fingerprint
    from captcha_queue.worker.breaker import AccountBreaker

    keys = Keys(namespace)
    secret = "0123456789abcdef0123456789abcdef"

    async def never(*_: object) -> AccountInfo:
        raise AssertionError("no probe here")

    async def trip(q: AsyncCaptchaQueue, name: str, key: str, worker: str) -> None:
        breaker = AccountBreaker(
            q, never, account=name, key_fingerprint=key_fingerprint(key), worker_id=worker
        )
        await breaker.trip(AccountError("ERROR_KEY_DOES_NOT_EXIST", "the key is unknown"))

    on_queue(redis_url, namespace, lambda q: trip(q, "main", secret, "vm:1:bad"))
    on_queue(redis_url, namespace, lambda q: trip(q, "other", "f" * 32, "vm:2:bad"))
    fingerprint = key_fingerprint(secret)

    table = invoke(["stats"], cli_env)
    assert table.exit_code == 0, table.output
    assert f"paused account main/{fingerprint}" in table.stdout
    assert "by worker vm:1:bad" in table.stdout
    assert "ERROR_KEY_DOES_NOT_EXIST" in table.stdout
    assert secret not in table.stdout
    doc = json.loads(invoke(["stats", "--json"], cli_env).stdout)
    assert doc["paused"] is None  # the namespace is not paused: only these accounts are
    assert [(p["account"], p["key"], p["worker"]) for p in doc["account_pauses"]] == [
        ("main", fingerprint, "vm:1:bad"),
        ("other", key_fingerprint("f" * 32), "vm:2:bad"),
    ]

    assert "was not paused" in invoke(["resume", "--account", "nobody"], cli_env).stdout
    one = invoke(["resume", "--account", fingerprint], cli_env)
    assert one.exit_code == 0, one.output
    assert f"resumed account main/{fingerprint} (was paused by worker vm:1:bad" in one.stdout
    assert not sync_redis.exists(keys.account_paused(f"main/{fingerprint}"))
    assert sync_redis.exists(keys.account_paused(f"other/{key_fingerprint('f' * 32)}"))

    assert invoke(["pause", "--reason", "maintenance"], cli_env).exit_code == 0
    everything = invoke(["resume"], cli_env)
    assert "was paused: maintenance" in everything.stdout
    assert "resumed account other/" in everything.stdout
    assert not sync_redis.exists(keys.paused)
    assert sync_redis.smembers(keys.paused_accounts) == set()
    assert json.loads(invoke(["stats", "--json"], cli_env).stdout)["account_pauses"] == []


# -- workers -----------------------------------------------------------------------------------------------


def test_workers_lists_live_registrations(namespace: str, cli_env: CliEnv, sync_redis: redis.Redis) -> None:
    keys = Keys(namespace)
    assert invoke(["workers"], cli_env).stdout.strip() == "no live workers"
    seconds, micros = sync_redis.time()
    now_ms = seconds * 1000 + micros // 1000
    sync_redis.zadd(keys.workers, {"host-a:100:aa": now_ms + 30_000, "host-b:200:bb": now_ms - 60_000})
    info = {"host": "host-a", "pid": 100, "started_at": time.time() - 90, "version": "0.1.0", "in_flight": 7}
    sync_redis.hset(keys.worker_info, "host-a:100:aa", msgspec.json.encode({"id": "host-a:100:aa", **info}))
    sync_redis.hset(keys.worker_info, "host-b:200:bb", "not json")

    live = json.loads(invoke(["workers", "--json"], cli_env).stdout)
    assert [w["id"] for w in live] == ["host-a:100:aa"]
    assert live[0]["alive"] is True
    assert live[0]["info"]["in_flight"] == 7
    every = json.loads(invoke(["workers", "--all", "--json"], cli_env).stdout)
    assert [(w["id"], w["alive"]) for w in every] == [("host-a:100:aa", True), ("host-b:200:bb", False)]
    assert every[1]["info"] == {"raw": "not json"}

    table = invoke(["workers", "--all"], cli_env).stdout
    assert "host-a:100:aa" in table
    assert "lapsed" in table


# -- dead letters -----------------------------------------------------------------------------------------


def make_dead_letters(redis_url: str, namespace: str, cli_env: CliEnv, n: int) -> list[str]:
    ids = [submit(cli_env, "--max-attempts", "1") for _ in range(n)]

    async def fail_all(q: AsyncCaptchaQueue) -> None:
        for claim in await claim_all(q, n):
            await q.fail(claim, "ERROR_CAPTCHA_UNSOLVABLE", "gave up", retry_in_s=1.0)

    on_queue(redis_url, namespace, fail_all)
    return ids


def test_dlq_list_show_requeue_purge(redis_url: str, namespace: str, cli_env: CliEnv) -> None:
    assert invoke(["dlq", "list"], cli_env).stdout.strip() == "no dead letters"
    ids = make_dead_letters(redis_url, namespace, cli_env, 3)

    listed = json.loads(invoke(["dlq", "list", "--json"], cli_env).stdout)
    assert sorted(d["id"] for d in listed) == sorted(ids)
    table = invoke(["dlq", "list"], cli_env).stdout
    assert all(task_id in table for task_id in ids)

    shown = invoke(["dlq", "show", ids[0], "--json"], cli_env)
    assert shown.exit_code == 0
    letter = json.loads(shown.stdout)
    assert letter["id"] == ids[0]
    assert letter["task"]["method"] == "turnstile"
    text = invoke(["dlq", "show", ids[0]], cli_env)
    assert "ERROR_CAPTCHA_UNSOLVABLE" in text.stdout
    missing = invoke(["dlq", "show", "no-such-task"], cli_env)
    assert (missing.exit_code, missing.stderr.strip()) == (1, "error: no dead letter no-such-task")

    one = invoke(["dlq", "requeue", ids[0]], cli_env)
    assert (one.exit_code, one.stdout.strip()) == (0, f"requeued {ids[0]}")
    assert invoke(["dlq", "requeue", ids[0]], cli_env).exit_code == 1
    rest = invoke(["dlq", "requeue", "--all"], cli_env)
    assert rest.stdout.strip() == "requeued 2 task(s)"
    assert json.loads(invoke(["stats", "--json"], cli_env).stdout)["queued"]["normal"] == 3

    make_dead_letters(redis_url, namespace, cli_env, 3)
    refused = invoke(["dlq", "purge"], cli_env, input="n\n")
    assert refused.exit_code == 1
    assert len(json.loads(invoke(["dlq", "list", "--json"], cli_env).stdout)) == 3
    purged = invoke(["dlq", "purge", "--yes"], cli_env)
    assert (purged.exit_code, purged.stdout.strip()) == (0, "purged 3 dead letter(s)")
    assert json.loads(invoke(["dlq", "list", "--json"], cli_env).stdout) == []


# -- listen -------------------------------------------------------------------------------------------------


def test_listen_replays_from_the_start_of_the_stream(redis_url: str, namespace: str, cli_env: CliEnv) -> None:
    ids = [submit(cli_env) for _ in range(2)]

    async def finish(q: AsyncCaptchaQueue) -> None:
        for claim in await claim_all(q, 2):
            await q.complete(claim, Solution(text=f"answer-{claim.task.id}"))

    on_queue(redis_url, namespace, finish)
    as_json = invoke(["listen", "--from", "0", "--count", "2", "--json"], cli_env)
    assert as_json.exit_code == 0
    docs = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert sorted(d["id"] for d in docs) == sorted(ids)
    assert all(d["status"] == "success" for d in docs)
    text = invoke(["listen", "--from", "0", "--count", "2"], cli_env)
    assert all(task_id in text.stdout for task_id in ids)
    assert "success" in text.stdout


def test_listen_prints_completions_as_they_happen(
    redis_url: str, namespace: str, cli_env: CliEnv, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    first = submit(cli_env)
    second = submit(cli_env)

    async def finish(q: AsyncCaptchaQueue, task_id: str) -> None:
        claims = await claim_all(q, 1)
        assert claims[0].task.id == task_id
        await q.complete(claims[0], Solution(text="x"))

    on_queue(redis_url, namespace, lambda q: finish(q, first))
    proc = processes.spawn(
        [sys.executable, "-m", "captcha_queue", "listen", "--from", "0", "--count", "2", "--json"],
        subprocess_env,
    )
    assert proc.stdout is not None
    # The first line proves the listener is running and caught up; the second arrives live.
    assert json.loads(proc.stdout.readline())["id"] == first
    on_queue(redis_url, namespace, lambda q: finish(q, second))
    assert json.loads(proc.stdout.readline())["id"] == second
    assert proc.wait(timeout=30) == 0


def test_connection_flags_on_the_subcommand(redis_url: str, namespace: str) -> None:
    env: CliEnv = {"REDIS_URL": None, "CAPTCHA_QUEUE_NAMESPACE": None}
    submitted = invoke(["submit", *TURNSTILE, "--redis-url", redis_url, "-n", namespace], env)
    assert submitted.exit_code == 0, submitted.output
    stats = invoke(["stats", "--json", "--redis-url", redis_url, "--namespace", namespace], env)
    doc = json.loads(stats.stdout)
    assert doc["queued"]["normal"] == 1


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_stats_watch_with_a_nan_interval_is_refused_at_once(subprocess_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "captcha_queue", "stats", "--watch", "--interval", "nan"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: Invalid value for '--interval': 'nan' is not a finite number. "
        "(see 'captcha-queue stats --help')"
    ]


@pytest.mark.timeout(30)
def test_listen_from_a_malformed_id_exits_at_once_instead_of_looping(subprocess_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "captcha_queue", "listen", "--from", "bogus"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2
    assert "Invalid stream ID" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: Invalid value for '--from': from_id 'bogus' is not an event id "
        "(like 1795915811595-0; 0: the oldest kept) (see 'captcha-queue listen --help')"
    ]
