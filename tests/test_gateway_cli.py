"""``captcha-queue gateway``: the keys commands, the settings' checks, TLS files and the binding warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from captcha_queue.cli import cli
from captcha_queue.errors import InvalidArgument
from captcha_queue.gateway import GatewaySettings, insecure_binding
from captcha_queue.store.keys import GatewayKeys

from .helpers import CliEnv


def invoke(args: list[str], env: CliEnv) -> Result:
    return CliRunner().invoke(cli, args, env=env)


def test_keys_create_list_revoke(cli_env: CliEnv, namespace: str, sync_redis: redis.Redis) -> None:
    created = invoke(["gateway", "keys", "create", "--max-in-flight", "5", "--label", "scrapers"], cli_env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert len(key) == 32
    assert key.isalnum()
    records = [json.loads(line) for line in invoke(["gateway", "keys", "list"], cli_env).stdout.splitlines()]
    [mine] = [r for r in records if r["namespace"] == namespace]
    assert mine["max_in_flight"] == 5
    assert mine["label"] == "scrapers"
    assert key not in json.dumps(records)  # shown once, at creation: never listed
    stored = sync_redis.hgetall(GatewayKeys().clients)
    assert all(key not in str(field) + str(value) for field, value in stored.items())
    revoked = invoke(["gateway", "keys", "revoke", mine["id"]], cli_env)
    assert revoked.exit_code == 0, revoked.output
    again = invoke(["gateway", "keys", "revoke", mine["id"]], cli_env)
    assert again.exit_code == 1
    assert again.stderr.strip().startswith("error: no key has the id")


def test_keys_create_refuses_bad_values_with_one_line(cli_env: CliEnv) -> None:
    result = invoke(["gateway", "keys", "create", "--rate-per-s", "nan"], cli_env)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    result = invoke(["gateway", "keys", "create", "--key-namespace", "bad name"], cli_env)
    assert result.exit_code == 2


def test_tls_needs_both_files_and_readable_ones(cli_env: CliEnv, tmp_path: Path) -> None:
    half = invoke(["gateway", "--port", "0", "--tls-cert", str(tmp_path / "c.pem")], cli_env)
    assert half.exit_code == 1
    assert "go together" in half.stderr
    missing = invoke(
        [
            "gateway",
            "--port",
            "0",
            "--tls-cert",
            str(tmp_path / "c.pem"),
            "--tls-key",
            str(tmp_path / "k.pem"),
        ],
        cli_env,
    )
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: cannot use --tls-cert")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_binding_elsewhere_without_tls_is_warned_about() -> None:
    assert insecure_binding(GatewaySettings()) is None
    assert insecure_binding(GatewaySettings(host="::1")) is None
    warning = insecure_binding(GatewaySettings(host="192.0.2.10"))
    assert warning is not None
    assert "without TLS" in warning
    assert insecure_binding(GatewaySettings(host="192.0.2.10", tls_cert="c", tls_key="k")) is None


@pytest.mark.parametrize(
    "changes",
    [{"host": "http://x"}, {"port": 70000}, {"key_cache_s": float("nan")}, {"max_params": 1}],
)
def test_settings_refuse_bad_values(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        GatewaySettings(**changes)  # type: ignore[arg-type]
