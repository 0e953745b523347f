"""Producer commands against a real Redis: submit, result, wait, cancel.

The test plays the worker through the queue's own worker API (claim, complete, fail), so every
result the CLI prints was written by the real scripts.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner, Result

from captcha_queue.cli import cli
from captcha_queue.models import Solution
from captcha_queue.queue._producer import AsyncCaptchaQueue

from .helpers import CliEnv, ProcessManager, claim_all, on_queue

T = TypeVar("T")
TURNSTILE = ["turnstile", "sitekey=0x4AAAAAAAA", "pageurl=https://example.com/login"]


def invoke(args: list[str], env: CliEnv) -> Result:
    return CliRunner().invoke(cli, args, env=env)


def test_submit_prints_the_id_and_queues_the_task(redis_url: str, namespace: str, cli_env: CliEnv) -> None:
    plain = invoke(["submit", *TURNSTILE, "--priority", "high"], cli_env)
    assert plain.exit_code == 0, plain.output
    task_id = plain.stdout.strip()
    as_json = invoke(["submit", *TURNSTILE, "--json", "--max-attempts", "5"], cli_env)
    assert as_json.exit_code == 0
    second_id = json.loads(as_json.stdout)["id"]

    async def check(q: AsyncCaptchaQueue) -> None:
        stats = await q.stats()
        assert stats.queued["high"] == 1
        assert stats.queued["normal"] == 1
        first, second = await claim_all(q, 2)
        assert first.task.id == task_id  # high before normal
        assert first.task.priority == "high"
        assert first.task.method == "turnstile"
        assert first.task.params["pageurl"] == "https://example.com/login"
        assert second.task.id == second_id
        assert second.task.max_attempts == 5

    on_queue(redis_url, namespace, check)


def test_submit_reads_files_as_base64(
    tmp_path: Path, redis_url: str, namespace: str, cli_env: CliEnv
) -> None:
    image = tmp_path / "captcha.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    result = invoke(["submit", "image", f"body=@{image}", "numeric=1"], cli_env)
    assert result.exit_code == 0, result.output

    async def check(q: AsyncCaptchaQueue) -> None:
        (claim,) = await claim_all(q, 1)
        assert claim.task.params["body"] == base64.b64encode(image.read_bytes()).decode()

    on_queue(redis_url, namespace, check)


def test_submit_with_an_idempotency_key_returns_the_same_id(cli_env: CliEnv) -> None:
    ids = {invoke(["submit", *TURNSTILE, "--idempotency-key", "order-17"], cli_env).stdout for _ in range(2)}
    assert len(ids) == 1


def test_result_pending_done_failed_and_unknown(redis_url: str, namespace: str, cli_env: CliEnv) -> None:
    ok_id = invoke(["submit", *TURNSTILE], cli_env).stdout.strip()
    bad_id = invoke(["submit", *TURNSTILE, "--max-attempts", "1"], cli_env).stdout.strip()

    pending = invoke(["result", ok_id, "--json"], cli_env)
    assert pending.exit_code == 4
    assert json.loads(pending.stdout) == {"id": ok_id, "status": "pending"}

    async def work(q: AsyncCaptchaQueue) -> None:
        for claim in await claim_all(q, 2):
            if claim.task.id == ok_id:
                await q.complete(claim, Solution(text="TOKEN-123", user_agent="Mozilla/5.0"))
            else:
                await q.fail(claim, "ERROR_PAGEURL", "pageurl is invalid")

    on_queue(redis_url, namespace, work)

    done = invoke(["result", ok_id], cli_env)
    assert done.exit_code == 0
    assert done.stdout == "TOKEN-123\n"
    assert "user agent: Mozilla/5.0" in done.stderr
    doc = json.loads(invoke(["result", ok_id, "--json"], cli_env).stdout)
    assert doc["status"] == "success"
    assert doc["solution"]["text"] == "TOKEN-123"

    failed = invoke(["result", bad_id], cli_env)
    assert failed.exit_code == 3
    assert failed.stdout == ""
    assert f"task {bad_id} error: ERROR_PAGEURL" in failed.stderr

    unknown = invoke(["result", "no-such-task"], cli_env)
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: no task no-such-task")


def test_wait_prints_each_result_and_reports_the_late_ones(
    redis_url: str, namespace: str, cli_env: CliEnv
) -> None:
    ids = [invoke(["submit", *TURNSTILE], cli_env).stdout.strip() for _ in range(3)]

    async def work(q: AsyncCaptchaQueue) -> None:
        claims = {c.task.id: c for c in await claim_all(q, 3)}
        await q.complete(claims[ids[0]], Solution(text="A"))
        await q.complete(claims[ids[1]], Solution(text="B"))

    on_queue(redis_url, namespace, work)

    both = invoke(["wait", ids[0], ids[1], "--timeout", "10"], cli_env)
    assert both.exit_code == 0, both.output
    assert sorted(both.stdout.splitlines()) == sorted([f"{ids[0]}\tsuccess\tA", f"{ids[1]}\tsuccess\tB"])

    late = invoke(["wait", *ids, "--timeout", "0.3", "--json"], cli_env)
    assert late.exit_code == 4
    docs = [json.loads(line) for line in late.stdout.splitlines()]
    assert {d["id"]: d["status"] for d in docs} == {ids[0]: "success", ids[1]: "success", ids[2]: "pending"}
    assert f"no result within 0.3 s for 1 task(s): {ids[2]}" in late.stderr


def test_cancel_a_queued_task(cli_env: CliEnv) -> None:
    task_id = invoke(["submit", *TURNSTILE], cli_env).stdout.strip()
    cancelled = invoke(["cancel", task_id], cli_env)
    assert cancelled.exit_code == 0
    assert cancelled.stdout.strip() == f"cancelled {task_id}"

    result = invoke(["result", task_id, "--json"], cli_env)
    assert result.exit_code == 3
    assert json.loads(result.stdout)["status"] == "cancelled"

    again = invoke(["cancel", task_id, "--json"], cli_env)
    assert again.exit_code == 1
    assert json.loads(again.stdout) == {
        "id": task_id,
        "cancelled": False,
        "status": "cancelled",
        "reason": "it already finished (cancelled)",
    }
    assert invoke(["cancel", "no-such-task"], cli_env).exit_code == 1


def test_submit_wait_as_a_subprocess(
    redis_url: str, namespace: str, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    proc = processes.spawn(
        [sys.executable, "-m", "captcha_queue", "submit", *TURNSTILE, "--wait", "--timeout", "30"],
        subprocess_env,
    )

    async def work(q: AsyncCaptchaQueue) -> None:
        (claim,) = await claim_all(q, 1, deadline_s=30.0)
        await q.complete(claim, Solution(text="SOLVED-BY-TEST"))

    on_queue(redis_url, namespace, work)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert out.decode().strip() == "SOLVED-BY-TEST"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_submit_wait_with_a_non_finite_timeout_writes_nothing(
    redis_url: str, namespace: str, cli_env: CliEnv, subprocess_env: dict[str, str], bad: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "captcha_queue", "submit", *TURNSTILE, "--timeout", bad, "--wait"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: Invalid value for '--timeout': '{bad}' is not a finite number. "
        "(see 'captcha-queue submit --help')"
    ]

    async def count(q: AsyncCaptchaQueue) -> int:
        return len([key async for key in q.client.scan_iter(match="{" + namespace + "}*")])

    assert on_queue(redis_url, namespace, count) == 0  # no task was written
