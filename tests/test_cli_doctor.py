"""``captcha-queue doctor`` and the warning ``stats`` prints, against private servers configured the
way an operator might get it wrong (eviction on, persistence off) and right."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest
import redis
from click.testing import CliRunner, Result

from captcha_queue.cli import cli
from captcha_queue.cli.doctor_cmd import _server
from captcha_queue.store.server import EmbeddedRedis, Persistence, redact_url


def invoke(args: list[str], url: str) -> Result:
    return CliRunner().invoke(cli, args, env={"REDIS_URL": url, "CAPTCHA_QUEUE_NAMESPACE": "doctor"})


def server(*extra: str, persistence: Persistence | None = None) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(persistence=persistence or Persistence(), extra_args=extra) as running:
        yield running


@pytest.fixture
def bare() -> Iterator[EmbeddedRedis]:
    """No AOF, no save points (what the test servers and the demo run with)."""
    yield from server()


@pytest.fixture
def durable() -> Iterator[EmbeddedRedis]:
    yield from server(persistence=Persistence(appendonly=True))


@pytest.fixture
def evicting() -> Iterator[EmbeddedRedis]:
    """RDB save points, but an eviction policy."""
    yield from server("--save", "3600 1", "--maxmemory-policy", "allkeys-lru")


def checks(result: Result) -> dict[str, dict[str, object]]:
    doc = json.loads(result.stdout)
    return {c["name"]: c for c in doc["checks"]}


def test_a_durable_noeviction_server_passes(durable: EmbeddedRedis) -> None:
    result = invoke(["doctor", "--json"], durable.url)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["redis_url"] == redact_url(durable.url)  # the server's password is never shown
    assert durable.password not in result.stdout
    found = checks(result)
    assert [found[name]["ok"] for name in ("server", "maxmemory-policy", "persistence")] == [True] * 3
    assert found["persistence"]["value"] == "AOF on"
    assert str(found["server"]["value"]).split()[0] in ("redis", "valkey")
    text = invoke(["doctor"], durable.url)
    assert text.exit_code == 0
    assert [line.split()[0] for line in text.stdout.splitlines()] == ["ok", "ok", "ok"]
    assert invoke(["stats"], durable.url).stderr == ""  # nothing to warn about


def test_persistence_off_is_a_problem(bare: EmbeddedRedis) -> None:
    result = invoke(["doctor", "--json"], bare.url)
    assert result.exit_code == 3
    assert json.loads(result.stdout)["ok"] is False
    found = checks(result)
    assert found["persistence"]["ok"] is False
    assert found["persistence"]["value"] == "off (no AOF, no RDB save points)"
    assert found["maxmemory-policy"]["ok"] is True
    text = invoke(["doctor"], bare.url)
    assert text.exit_code == 3
    assert "PROBLEM  persistence       off (no AOF, no RDB save points): a restart loses" in text.stdout


def test_an_eviction_policy_is_a_problem_and_save_points_count_as_persistence(
    evicting: EmbeddedRedis,
) -> None:
    result = invoke(["doctor", "--json"], evicting.url)
    assert result.exit_code == 3
    found = checks(result)
    assert found["maxmemory-policy"] == {
        "name": "maxmemory-policy",
        "ok": False,
        "value": "allkeys-lru",
        "advice": "at maxmemory Redis deletes keys, and queued tasks, leases and results with them; "
        "set maxmemory-policy noeviction",
    }
    assert found["persistence"]["ok"] is True
    assert found["persistence"]["value"] == "RDB save points 3600 1"


@pytest.mark.parametrize(
    "args", [["stats"], ["stats", "--json"], ["stats", "--watch", "--count", "2", "--json"]]
)
def test_stats_warns_once_on_stderr_and_keeps_stdout_clean(
    evicting: EmbeddedRedis, args: Sequence[str]
) -> None:
    result = invoke(list(args), evicting.url)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: Redis maxmemory-policy allkeys-lru: at maxmemory Redis deletes keys, and queued tasks, "
        "leases and results with them; set maxmemory-policy noeviction (see `captcha-queue doctor`)"
    ]
    if "--json" in args:
        assert all(json.loads(line)["queued_total"] == 0 for line in result.stdout.splitlines())


def test_stats_warns_when_persistence_is_off(bare: EmbeddedRedis) -> None:
    result = invoke(["stats"], bare.url)
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: Redis persistence off (no AOF, no RDB save points): ")


def test_a_user_refused_config_gets_unknown_not_a_problem(bare: EmbeddedRedis) -> None:
    admin = redis.Redis.from_url(bare.url)
    try:
        admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "&*", "+@all", "-config")  # type: ignore[no-untyped-call]
    finally:
        admin.close()
    url = f"redis://reader:pw@127.0.0.1:{bare.port}/0"
    result = invoke(["doctor", "--json"], url)
    assert result.exit_code == 0, result.output
    assert checks(result)["persistence"] == {
        "name": "persistence",
        "ok": None,
        "value": "AOF off, RDB save points unknown (CONFIG GET not run or refused)",
        "advice": "",
    }
    assert json.loads(result.stdout)["redis_url"] == f"redis://reader:***@127.0.0.1:{bare.port}/0"
    assert _acl_log_entries(bare) == 1  # doctor asked, once
    assert invoke(["stats"], url).stderr == ""  # nothing known to be wrong
    assert _acl_log_entries(bare) == 1  # stats, as a named user, did not ask


def _acl_log_entries(server: EmbeddedRedis) -> int:
    """Refusals in the server's ACL LOG (repeats of one refusal share an entry and count up)."""
    admin = redis.Redis.from_url(server.url)
    try:
        entries = admin.acl_log()
    finally:
        admin.close()
    return sum(int(str(entry["count"])) for entry in entries)


def test_doctor_on_an_unreachable_redis_is_one_line() -> None:
    with EmbeddedRedis() as gone:
        url = gone.url
    result = invoke(["doctor"], url)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach Redis at {redact_url(url)}: ")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("info", "ok"),
    [
        ({"redis_version": "7.0.15"}, True),
        ({"redis_version": "7.2.4"}, True),
        ({"redis_version": "6.2.14"}, False),
        ({"server_name": "valkey", "valkey_version": "7.2.5", "redis_version": "7.2.4"}, True),
        ({"server_name": "valkey", "valkey_version": "7.0.0"}, False),
    ],
)
def test_the_server_version_check(info: dict[str, object], ok: bool) -> None:
    check = _server(info)
    assert check.ok is ok
    assert ("too old" in check.advice) is not ok
