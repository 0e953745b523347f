"""Settings declared once (captcha_queue/options.py): the worker command's options, their environment
variables, the children's arguments, the checks and the docs tables all come from the dataclass fields."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import math
import signal
import time
from pathlib import Path
from types import ModuleType

import click
import pytest

from captcha_queue.cli import config as cli_config
from captcha_queue.cli.worker_cmd import _child_args, worker_cmd
from captcha_queue.errors import InvalidArgument
from captcha_queue.options import Setting, build, render_table, settings_of, to_argv
from captcha_queue.queue._producer import AsyncCaptchaQueue, QueueConfig
from captcha_queue.worker import LimiterConfig, WorkerConfig, WorkerSettings

from .helpers import ProcessManager

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
WORKER = settings_of(WorkerSettings)
QUEUE = settings_of(QueueConfig)


def _params() -> dict[str, click.Option]:
    return {p.name: p for p in worker_cmd.params if isinstance(p, click.Option) and p.name}


def test_every_worker_option_is_a_setting_and_its_default_is_the_settings_default() -> None:
    params = _params()
    cli_settings = [s for s in WORKER if s.option.cli]
    assert set(params) - {s.name for s in cli_settings} == {"supervised"}  # nothing written by hand
    connection = {"namespace", "redis_url", "solver_url"}  # resolved by Settings.load, as for every command
    for s in cli_settings:
        param = params[s.name]
        assert param.opts == [s.flag], s.name
        if s.name in connection:
            assert param.default is None, s.name
        else:
            assert param.default == s.default, s.name
            assert param.envvar == s.env, s.name
    assert WorkerSettings().namespace == cli_config.DEFAULT_NAMESPACE
    assert WorkerSettings().redis_url == cli_config.DEFAULT_REDIS_URL
    assert WorkerSettings().solver_url == cli_config.DEFAULT_CAPTCHAAI_URL
    assert {s.env for s in WORKER if s.name in connection | {"api_key"}} == {
        cli_config.ENV_NAMESPACE,
        cli_config.ENV_REDIS_URL,
        cli_config.ENV_CAPTCHAAI_URL,
        cli_config.ENV_CAPTCHAAI_KEY,
    }


def test_the_library_defaults_are_the_commands() -> None:
    """Before, WorkerConfig said 100 tasks in flight and the command 200."""
    assert WorkerConfig().concurrency == _params()["concurrency"].default == 200


def test_a_secret_is_never_an_option_nor_a_child_argument_nor_in_repr() -> None:
    secrets = [s for s in WORKER if s.option.secret]
    assert [s.name for s in secrets] == ["api_key"]
    assert not any(s.option.cli or s.option.child for s in secrets)
    key = "s3cr3t" + "k" * 26
    settings = WorkerSettings(api_key=key, redis_url="redis://:pw@127.0.0.1:1/0", processes=2)
    assert key not in repr(settings)
    args = _child_args(settings, 0)
    assert not any(key in arg or "pw@" in arg for arg in args)
    with pytest.raises(InvalidArgument) as info:
        WorkerSettings(api_key=7)  # type: ignore[arg-type]
    assert "***" in str(info.value)


def test_the_environment_sets_an_option_and_a_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTCHA_QUEUE_CONCURRENCY", "77")
    monkeypatch.setenv("CAPTCHA_QUEUE_LEASE_S", "12.5")
    params = worker_cmd.make_context("worker", ["--lease-s", "9"]).params
    assert (params["concurrency"], params["lease_s"]) == (77, 9.0)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0"])
def test_a_bad_environment_value_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CAPTCHA_QUEUE_TIME_SCALE", value)
    with pytest.raises(click.BadParameter) as info:
        worker_cmd.make_context("worker", [])
    assert info.value.param is not None
    assert info.value.param.name == "time_scale"


def _bad_values(s: Setting) -> list[object]:
    bad: list[object] = ["1"] if s.type is not str else [1]
    if s.type in (int, float):
        bad += [True, math.nan, math.inf, -math.inf]
        low, high = s.option.min, s.option.max
        if low is not None:
            bad.append(low if s.option.min_open else low - 1)
        if high is not None:
            bad.append(high + 1)
        if s.type is int:
            bad.append(2.5)
    if s.option.choices:
        bad.append("none of them")
    return bad


@pytest.mark.parametrize(
    ("cls", "s"),
    [(WorkerSettings, s) for s in WORKER if len(s.path) == 1]
    + [(LimiterConfig, s) for s in settings_of(LimiterConfig)]
    + [(QueueConfig, s) for s in QUEUE],
    ids=lambda x: x.name if isinstance(x, Setting) else x.__name__,
)
def test_every_setting_refuses_bad_values_with_a_typed_error_naming_it(cls: type, s: Setting) -> None:
    for bad in _bad_values(s):
        with pytest.raises(InvalidArgument) as info:
            cls(**{s.name: bad})
        assert info.value.field == s.name, bad
    assert getattr(cls(), s.name) == s.default


def test_a_nested_setting_is_one_flat_option() -> None:
    settings = build(WorkerSettings, {"orphan_hold_s": 12.0, "concurrency": 3}, processes=2)
    assert settings.limiter.orphan_hold_s == 12.0
    assert (settings.concurrency, settings.processes) == (3, 2)
    assert to_argv(settings)[to_argv(settings).index("--orphan-hold-s") + 1] == "12.0"
    assert WorkerConfig().limiter == LimiterConfig()


def _hooks() -> ModuleType:
    """tools/mkdocs_hooks.py, as mkdocs loads it (by path)."""
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "tools" / "mkdocs_hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_tables_list_every_setting() -> None:
    hooks = _hooks()
    worker_table = hooks.MARKERS["<!-- worker-options -->"]()
    assert worker_table == render_table(WorkerSettings)
    rows = worker_table.splitlines()[2:]
    assert len(rows) == len(WORKER)
    for s, row in zip(WORKER, rows, strict=True):
        assert (f"`{s.flag}`" if s.option.cli else "(environment only)") in row
        assert f"`{s.env}`" in row
    queue_rows = hooks.MARKERS["<!-- queue-options -->"]().splitlines()[2:]
    assert [row.split("|")[1].strip() for row in queue_rows] == [f"`{s.name}`" for s in QUEUE]
    assert "| `--concurrency` | `CAPTCHA_QUEUE_CONCURRENCY` | `200` | tasks |" in worker_table
    for page, marker in (("workers.md", "<!-- worker-options -->"), ("queue.md", "<!-- queue-options -->")):
        text = (DOCS / page).read_text(encoding="utf-8")
        assert marker in text
        assert marker not in hooks.on_page_markdown(text)


def test_the_queue_keywords_default_to_the_queue_config() -> None:
    keywords = inspect.signature(AsyncCaptchaQueue.__init__).parameters
    for s in QUEUE:
        if s.name in keywords:
            assert keywords[s.name].default == s.default, s.name


@pytest.mark.timeout(90)
async def test_run_worker_is_one_worker_process(
    redis_url: str, namespace: str, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    code = (
        "import sys; from captcha_queue.worker import WorkerSettings, run_worker; "
        f"sys.exit(run_worker(WorkerSettings(redis_url={redis_url!r}, namespace={namespace!r}, "
        "solver='instant', concurrency=5, grace_s=1.0, log_level='warning')))"
    )
    worker = processes.spawn_python(["-c", code], subprocess_env, capture=False)
    async with AsyncCaptchaQueue.from_url(redis_url, namespace=namespace) as q:
        task_id = await q.submit("turnstile", {"sitekey": "k", "pageurl": "https://a.test/"})
        result = await q.wait_result(task_id, timeout_s=60)
        assert result is not None
        assert result.ok
    worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while worker.poll() is None:
        assert time.monotonic() < deadline, "run_worker did not stop on SIGTERM"
        await asyncio.sleep(0.05)
    assert worker.returncode == 0
