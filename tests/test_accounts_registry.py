"""The accounts registry: validated entries in Redis holding key references, never keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from captcha_queue.cli import cli
from captcha_queue.errors import ConfigError, InvalidArgument
from captcha_queue.models import AccountSpec
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.worker.accounts import resolve_key

from .helpers import CliEnv

SECRET = "0123456789abcdef0123456789abcdef"


async def test_add_list_remove(queue: AsyncCaptchaQueue) -> None:
    await queue.add_account(
        AccountSpec(name="cheap", provider="2captcha", limit=5, cost=0.5, key_env="TWO_KEY")
    )
    await queue.add_account(
        AccountSpec(
            name="main",
            provider="captchaai",
            base_url="https://ocr.captchaai.com/",
            priority=10,
            key_file="/run/secrets/solvers",
            key_entry="main",
            methods=("userrecaptcha", "turnstile", "turnstile"),
        )
    )
    await queue.add_account(AccountSpec(name="dear", provider="capsolver", limit=3, cost=2.0, key_env="CS"))
    listed = await queue.accounts()
    assert [a.name for a in listed] == ["main", "cheap", "dear"]  # priority, then cost
    main = listed[0]
    assert main.base_url == "https://ocr.captchaai.com"
    assert main.methods == ("userrecaptcha", "turnstile")
    assert main.limit is None  # CaptchaAI reports its threads
    assert main.key_source == "file:/run/secrets/solvers#main"
    assert await queue.account("cheap") == listed[1]
    with pytest.raises(InvalidArgument, match="exists already"):
        await queue.add_account(AccountSpec(name="cheap", provider="2captcha", limit=9, key_env="X"))
    replaced = await queue.add_account(
        AccountSpec(name="cheap", provider="2captcha", limit=9, key_env="X"), replace=True
    )
    assert (await queue.account("cheap")) == replaced
    assert await queue.remove_account("cheap") is True
    assert await queue.remove_account("cheap") is False
    assert [a.name for a in await queue.accounts()] == ["main", "dear"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (AccountSpec(name="a", provider="deathbycaptcha", key_env="K"), "provider"),
        (AccountSpec(name="a b", key_env="K"), "account"),
        (AccountSpec(name="a", provider="2captcha", key_env="K"), "limit"),  # no threadsinfo there
        (AccountSpec(name="a", limit=0, key_env="K"), "limit"),
        (AccountSpec(name="a", cost=float("nan"), key_env="K"), "cost"),
        (AccountSpec(name="a", cost=-1.0, key_env="K"), "cost"),
        (AccountSpec(name="a"), "key"),
        (AccountSpec(name="a", key_env="K", key_file="/f", key_entry="e"), "key"),
        (AccountSpec(name="a", key_env=SECRET), "key_env"),  # a key where its variable's name goes
        (AccountSpec(name="a", key_env="abcdef0123456789abcdef0123456789"), "key_env"),
        (AccountSpec(name="a", key_file="/f"), "key_file"),
        (AccountSpec(name="a", key_file="/f", key_entry=SECRET), "key_entry"),
        (AccountSpec(name="a", key_env="K", base_url="ftp://x"), "base_url"),
        (AccountSpec(name="a", key_env="K", base_url="http://solver.example.com"), "base_url"),
        (AccountSpec(name="a", key_env="K", base_url=f"https://u:{SECRET}@x.example"), "base_url"),
        (AccountSpec(name="a", key_env="K", base_url=f"https://x.example/?key={SECRET}"), "base_url"),
        (AccountSpec(name="a", provider="generic-inphp", limit=3, key_env="K"), "base_url"),
        (AccountSpec(name="a", key_env="K", methods=("nosuchmethod",)), "methods"),
        (AccountSpec(name="a", key_env="K", limit=5.5), "limit"),  # type: ignore[arg-type]
        (AccountSpec(name="a", key_env=3), "key_env"),  # type: ignore[arg-type]
        (AccountSpec(name="a", key_env="K", priority=True), "priority"),
    ],
)
async def test_a_bad_account_is_one_clear_error_and_writes_nothing(
    queue: AsyncCaptchaQueue, spec: AccountSpec, field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await queue.add_account(spec)
    assert caught.value.field == field
    assert SECRET not in str(caught.value)
    assert await queue.client.exists(queue.keys.accounts) == 0


def test_the_cli_stores_references_and_shows_no_secret(cli_env: CliEnv) -> None:
    env: CliEnv = {**cli_env, "MAIN_KEY": SECRET}
    runner = CliRunner()
    added = runner.invoke(
        cli,
        [
            "accounts",
            "add",
            "main",
            "--key-env",
            "MAIN_KEY",
            "--url",
            "http://127.0.0.1:9/",
            "--priority",
            "5",
        ],
        env=env,
    )
    assert added.exit_code == 0, added.output
    assert "key from env:MAIN_KEY" in added.output
    two = [
        "accounts",
        "add",
        "two",
        "--provider",
        "2captcha",
        "--limit",
        "4",
        "--key-file",
        "/s",
        "--key-entry",
        "t",
    ]
    assert runner.invoke(cli, two, env=env).exit_code == 0
    listed = runner.invoke(cli, ["accounts", "list"], env=env)
    assert listed.exit_code == 0
    assert "main" in listed.output
    assert "env:MAIN_KEY" in listed.output
    assert "file:/s#t" in listed.output
    as_json = runner.invoke(cli, ["accounts", "list", "--json"], env=env)
    docs = json.loads(as_json.output)
    assert [d["name"] for d in docs] == ["main", "two"]
    for output in (added.output, listed.output, as_json.output):
        assert SECRET not in output
    missing_limit = runner.invoke(
        cli, ["accounts", "add", "x", "--provider", "2captcha", "--key-env", "K"], env=env
    )
    assert missing_limit.exit_code == 1
    assert missing_limit.output.count("\n") == 1
    assert "limit" in missing_limit.output
    unknown = runner.invoke(cli, ["accounts", "add", "x", "--provider", "nope", "--key-env", "K"], env=env)
    assert unknown.exit_code == 2
    assert runner.invoke(cli, ["accounts", "remove", "two"], env=env).exit_code == 0
    gone = runner.invoke(cli, ["accounts", "remove", "two"], env=env)
    assert gone.exit_code == 1
    assert "no account two" in gone.output


def test_a_key_is_resolved_from_its_reference_and_errors_never_show_one(tmp_path: Path) -> None:
    secrets = tmp_path / "solvers.env"
    secrets.write_text(f"# solver keys\n\nother = nope\nmain = {SECRET}\n", encoding="utf-8")
    by_file = AccountSpec(name="main", key_file=str(secrets), key_entry="main")
    assert resolve_key(by_file) == SECRET
    assert resolve_key(AccountSpec(name="e", key_env="MY_KEY"), {"MY_KEY": f" {SECRET}\n"}) == SECRET
    failures: list[tuple[AccountSpec, dict[str, str], str]] = [
        (AccountSpec(name="e", key_env="MY_KEY"), {}, "environment variable MY_KEY is not set"),
        (AccountSpec(name="f", key_file=str(secrets), key_entry="absent"), {}, "has no entry absent"),
        (AccountSpec(name="g", key_file=str(tmp_path / "none"), key_entry="main"), {}, "cannot read"),
    ]
    for spec, env, message in failures:
        with pytest.raises(ConfigError, match=message) as caught:
            resolve_key(spec, env)
        assert SECRET not in str(caught.value)
        assert caught.value.__cause__ is None


def test_a_worker_for_accounts_nobody_registered_is_one_clear_error(cli_env: CliEnv) -> None:
    done = CliRunner().invoke(
        cli, ["worker", "--accounts", "ghost", "--processes", "1", "--startup-timeout-s", "2"], env=cli_env
    )
    assert done.exit_code == 1
    assert "no registered account ghost" in done.output
    assert len(done.output.strip().splitlines()) == 1
    bad = CliRunner().invoke(cli, ["worker", "--accounts", "a,,b", "--processes", "1"], env=cli_env)
    assert bad.exit_code != 0
    assert "accounts" in bad.output
