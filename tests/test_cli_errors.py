"""The command line's failures: one readable line on stderr, a non-zero exit, a traceback only with --debug.

Both through click's runner (fast, in process) and as real ``python -m captcha_queue`` subprocesses
(what a user sees, exit codes included).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from captcha_queue.cli import cli
from captcha_queue.cli.app import FiniteFloat
from captcha_queue.cli.config import Settings
from captcha_queue.errors import ConfigError
from captcha_queue.protocol.methods import KNOWN_METHODS
from captcha_queue.store.server import redact_url

from .helpers import free_port

CANARY_KEY = "c4n4ry0123456789abcdef0123456789"
CLEAN_ENV: dict[str, str | None] = {
    "REDIS_URL": None,
    "CAPTCHAAI_KEY": None,
    "CAPTCHAAI_URL": None,
    "CAPTCHA_QUEUE_NAMESPACE": None,
}


def invoke(args: list[str], env: Mapping[str, str | None] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, args, env={**CLEAN_ENV, **(env or {})}, input=input)


def one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def run_cli(args: list[str], env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    for name, value in {**CLEAN_ENV, **(env or {})}.items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    return subprocess.run(
        [sys.executable, "-m", "captcha_queue", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# -- configuration --------------------------------------------------------------------------------------


def test_settings_read_env_and_flags_win() -> None:
    env = {
        "REDIS_URL": "redis://127.0.0.1:6390/1",
        "CAPTCHA_QUEUE_NAMESPACE": "prod",
        "CAPTCHAAI_KEY": "k" * 32,
    }
    settings = Settings.load(env, namespace="staging")
    assert settings.redis_url == "redis://127.0.0.1:6390/1"
    assert settings.namespace == "staging"
    assert settings.captchaai_url == "https://ocr.captchaai.com"
    assert settings.require_key() == "k" * 32
    defaults = Settings.load({})
    assert defaults.redis_url == "redis://127.0.0.1:6379/0"
    assert defaults.namespace == "captcha"
    assert defaults.captchaai_key is None


def test_settings_never_show_the_key_or_the_redis_password() -> None:
    settings = Settings.load({"CAPTCHAAI_KEY": CANARY_KEY, "REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0"})
    for shown in (repr(settings), str(settings), str(settings.redacted())):
        assert CANARY_KEY not in shown
        assert "hunter2" not in shown
    assert settings.redacted()["captchaai_key"] == "set"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL must start with redis://"),
        ({"CAPTCHA_QUEUE_NAMESPACE": "has space"}, "CAPTCHA_QUEUE_NAMESPACE: namespace 'has space'"),
        ({"CAPTCHAAI_URL": "ftp://example.com"}, "CAPTCHAAI_URL must be an http:// or https:// URL"),
        ({"CAPTCHAAI_KEY": "abc def"}, "CAPTCHAAI_KEY contains whitespace"),
    ],
)
def test_bad_settings_fail_loudly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env)
    result = invoke(["stats"], env)
    assert result.exit_code == 1
    assert message in one_error_line(result)
    assert "abc def" not in result.output


def test_missing_key_is_one_line() -> None:
    result = invoke(["account"])
    assert result.exit_code == 1
    assert one_error_line(result) == "error: CAPTCHAAI_KEY is not set"


def test_key_file_is_read_and_an_empty_one_refused(tmp_path: Path) -> None:
    empty = tmp_path / "key"
    empty.write_text("\n")
    result = invoke(["--captchaai-key-file", str(empty), "account"])
    assert result.exit_code == 1
    assert one_error_line(result) == f"error: the key file {empty} is empty"


# -- Redis unreachable ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["stats"],
        ["submit", "turnstile", "sitekey=0x4AAAAAAA", "pageurl=https://example.com"],
        ["result", "some-id"],
        ["wait", "some-id", "--timeout", "1"],
        ["cancel", "some-id"],
        ["workers"],
        ["pause"],
        ["resume"],
        ["dlq", "list"],
        ["listen"],
    ],
)
def test_unreachable_redis_is_one_line_naming_the_url(args: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = invoke(args, {"REDIS_URL": url})
    assert result.exit_code == 1, result.output
    assert one_error_line(result).startswith(f"error: cannot reach Redis at {url}: ")


def test_unreachable_redis_hides_the_password() -> None:
    port = free_port()
    result = invoke(["--redis-url", f"redis://:hunter2@127.0.0.1:{port}/0", "stats"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith(f"error: cannot reach Redis at redis://:***@127.0.0.1:{port}/0: ")
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    ("template", "shown"),
    [
        ("redis://127.0.0.1:{port}/0?password=hunter2", "redis://127.0.0.1:{port}/0?password=***"),
        ("redis://cq-worker:hunter2@127.0.0.1:{port}/0", "redis://cq-worker:***@127.0.0.1:{port}/0"),
        ("redis://hunter2@127.0.0.1:{port}/0", "redis://***@127.0.0.1:{port}/0"),
        (
            "rediss://127.0.0.1:{port}/0?ssl_keyfile=/etc/hunter2.key&ssl_password=hunter2",
            "rediss://127.0.0.1:{port}/0?ssl_keyfile=***&ssl_password=***",
        ),
    ],
)
def test_unreachable_redis_hides_every_credential_form(template: str, shown: str) -> None:
    port = free_port()
    for args in (["--redis-url", template.format(port=port), "stats"], ["stats"]):
        result = invoke(args, {"REDIS_URL": template.format(port=port)})
        assert result.exit_code == 1
        assert "hunter2" not in result.output
        if template.startswith("redis://"):  # rediss:// fails earlier, on the missing key file
            assert one_error_line(result).startswith(
                f"error: cannot reach Redis at {shown.format(port=port)}: "
            )


def test_debug_shows_the_traceback() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = invoke(["--debug", "stats"], {"REDIS_URL": url})
    assert result.exit_code != 0
    assert result.exception is not None
    assert type(result.exception).__name__ == "RedisUnavailable"


# -- submissions refused before Redis -----------------------------------------------------------------


def test_unknown_method_lists_the_known_ones() -> None:
    result = invoke(["submit", "nosuchcaptcha", "a=b"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "unknown method 'nosuchcaptcha'" in line
    for method in KNOWN_METHODS:
        assert method in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "turnstile", "sitekey=x"], "needs param 'pageurl'"),
        (["submit", "turnstile", "sitekey"], "parameters are key=value"),
        (["submit", "turnstile", "sitekey=a", "sitekey=b"], "given twice"),
        (["submit", "image", "body=@/nonexistent/captcha.png"], "cannot read /nonexistent/captcha.png"),
        (
            ["submit", "turnstile", "key=abc", "sitekey=a", "pageurl=https://e.com"],
            "'key' is set by the solver",
        ),
    ],
)
def test_bad_submissions_are_refused_with_one_line(args: list[str], message: str) -> None:
    result = invoke(args, {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.exit_code == 1
    assert message in one_error_line(result)


def test_usage_errors_exit_2() -> None:
    assert invoke(["submit"]).exit_code == 2
    assert invoke(["submit", "image", "--priority", "urgent"]).exit_code == 2
    assert invoke(["dlq", "requeue"]).exit_code == 2
    assert invoke(["wait"]).exit_code == 2


def test_every_command_has_help() -> None:
    top = invoke(["--help"])
    assert top.exit_code == 0
    for command in ("submit", "result", "wait", "cancel", "stats", "workers", "account", "pause", "resume"):
        assert command in top.output
        assert invoke([command, "--help"]).exit_code == 0
    for sub in ("list", "show", "requeue", "purge"):
        assert invoke(["dlq", sub, "--help"]).exit_code == 0
    assert invoke(["listen", "--help"]).exit_code == 0


# -- as a user runs it ----------------------------------------------------------------------------------


def test_subprocess_errors_and_exit_codes() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    down = run_cli(["stats"], {"REDIS_URL": url})
    assert down.returncode == 1
    assert down.stderr.strip().splitlines() == [down.stderr.strip()]
    assert down.stderr.startswith(f"error: cannot reach Redis at {url}: ")
    assert "Traceback" not in down.stderr

    no_key = run_cli(["account"])
    assert (no_key.returncode, no_key.stderr.strip()) == (1, "error: CAPTCHAAI_KEY is not set")

    unknown = run_cli(["submit", "nosuchcaptcha"], {"CAPTCHAAI_KEY": CANARY_KEY})
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: unknown method 'nosuchcaptcha'; known methods: ")
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert CANARY_KEY not in unknown.stderr + unknown.stdout

    debug = run_cli(["--debug", "stats"], {"REDIS_URL": url})
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr


def test_connection_flags_after_the_subcommand_win() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = invoke(["--redis-url", "redis://127.0.0.1:1/0", "stats", "--redis-url", url, "-n", "other"])
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"error: cannot reach Redis at {url}: ")
    bad = invoke(["stats", "--namespace", "bad name"])
    assert "CAPTCHA_QUEUE_NAMESPACE: namespace 'bad name'" in one_error_line(bad)


def test_a_refusing_redis_is_one_line(redis_url: str) -> None:
    wrong_db = redis_url.rsplit("/", 1)[0] + "/999"
    result = invoke(["stats"], {"REDIS_URL": wrong_db})
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith(f"error: Redis at {redact_url(wrong_db)} refused the connection: ")
    assert "DB index is out of range" in line


# -- bad input: one line, exit 2, before anything runs ---------------------------------------------------


def _float_options() -> list[tuple[list[str], click.Option]]:
    """Every float option of every command, with the command's path under the root."""
    found: list[tuple[list[str], click.Option]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, click.types.FloatParamType):
                found.append((path, param))
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    walk(cli, [])
    return found


# Required arguments per command, so that only the float option can be wrong.
_ARGS = {"submit": ["turnstile", "sitekey=x", "pageurl=https://e.com"], "wait": ["some-id"]}


def test_every_float_option_refuses_nan_and_infinity() -> None:
    options = _float_options()
    assert len(options) >= 20  # submit, wait, stats, pause, worker, simulator, demo
    for path, option in options:
        assert isinstance(option.type, FiniteFloat), f"{' '.join(path)} {option.opts[0]} takes NaN"
    url = f"redis://127.0.0.1:{free_port()}/0"
    for path, option in options:
        for bad in ("nan", "inf", "-inf", "NaN"):
            args = [*path, *_ARGS.get(path[0], []), option.opts[0], bad]
            result = invoke(args, {"REDIS_URL": url})
            assert result.exit_code == 2, (args, result.output)
            line = one_error_line(result)
            assert f"Invalid value for '{option.opts[0]}'" in line, line
            assert "is not a finite number" in line, line


def test_finite_float_keeps_its_range_and_its_help() -> None:
    assert FiniteFloat(min=0, min_open=True).convert("0.5", None, None) == 0.5
    with pytest.raises(click.BadParameter, match="not in the range"):
        FiniteFloat(min=0, min_open=True).convert("0", None, None)
    timeout = invoke(["submit", "--help"])
    assert "FLOAT" in timeout.stdout
    assert "x>0" in timeout.stdout


@pytest.mark.parametrize("bad", ["bogus", "1-2-3", "$", "18446744073709551616"])
def test_listen_from_a_malformed_id_is_one_line_and_exit_2(bad: str) -> None:
    # Redis is down: the id is refused before any connection is tried.
    result = invoke(["listen", "--from", bad], {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith("error: Invalid value for '--from': ")
    assert "is not an event id" in line


@pytest.mark.parametrize(
    "args",
    [
        ["stats", "--account", "a:limit"],
        ["stats", "--account", "a b"],
        ["worker", "--account", "a:b", "--solver", "instant"],
    ],
)
def test_a_bad_account_name_is_one_line_and_exit_2(args: list[str]) -> None:
    result = invoke(args, {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith("error: Invalid value for '--account': account ")
    assert "letters, digits, '_', '.', '-'" in line


BAD_TEXT = os.fsdecode(b"\xff")  # what Python makes of a non-UTF-8 argv byte: '\udcff'


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["result", BAD_TEXT], "'ID'"),
        (["cancel", "ok-id", BAD_TEXT], "'ID...'"),
        (["wait", BAD_TEXT, "--timeout", "1"], "'ID...'"),
        (["dlq", "show", BAD_TEXT], "'ID'"),
        (["dlq", "requeue", BAD_TEXT], "'[ID]...'"),
        (["submit", BAD_TEXT], "'METHOD'"),
        (["submit", "turnstile", f"sitekey={BAD_TEXT}", "pageurl=https://e.com"], "'KEY=VALUE...'"),
        (
            ["submit", *["turnstile", "sitekey=x", "pageurl=https://e.com"], "--idempotency-key", BAD_TEXT],
            "'--idempotency-key'",
        ),
        (["pause", "--reason", BAD_TEXT], "'--reason'"),
        (["stats", "--account", BAD_TEXT], "'--account'"),
        (["listen", "--from", BAD_TEXT], "'--from'"),
        (["stats", "--redis-url", f"redis://{BAD_TEXT}"], "'--redis-url'"),
        (["--redis-url", f"redis://{BAD_TEXT}", "stats"], "'--redis-url'"),
        (["--captchaai-url", f"http://{BAD_TEXT}", "account"], "'--captchaai-url'"),
    ],
)
def test_non_utf8_arguments_are_one_line_and_exit_2(args: list[str], where: str) -> None:
    result = invoke(args, {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith(f"error: Invalid value for {where}: "), line
    assert "\\udcff" in line  # shown escaped, never written raw


@pytest.mark.parametrize(("command", "metavar"), [("result", "ID"), ("cancel", "ID...")])
def test_subprocess_non_utf8_id_is_one_line_and_exit_2(redis_url: str, command: str, metavar: str) -> None:
    done = run_cli([command, BAD_TEXT], {"REDIS_URL": redis_url})  # argv carries the byte 0xff
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: Invalid value for '{metavar}': '\\udcff' is not valid UTF-8 "
        f"(see 'captcha-queue {command} --help')"
    ]


def test_usage_errors_are_one_line_too() -> None:
    for args in (
        ["submit"],
        ["nosuchcommand"],
        ["submit", "image", "--priority", "urgent"],
        ["dlq", "requeue"],
    ):
        result = invoke(args)
        assert result.exit_code == 2
        assert one_error_line(result).endswith("--help')")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "No such option '--bogus'"),
        (["--redis-url"], "'--redis-url' requires an argument"),
        (["--namespace"], "'--namespace' requires an argument"),
    ],
)
def test_a_bad_root_option_is_one_line(args: list[str], message: str) -> None:
    """The root command's own options are parsed before its invoke(): their usage errors were
    click's three-line usage block."""
    proc = run_cli(args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert message in lines[0]
    assert "(see 'captcha-queue --help')" in lines[0]
