"""``captcha-queue submit --pingback`` and ``captcha-queue webhooks``: list, show, retry, run, and
bad input that changes nothing (one line, a non-zero exit)."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

import pytest
import redis
from click.testing import CliRunner, Result

from captcha_queue.cli import cli
from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.keys import Keys
from captcha_queue.webhooks import Outbox, WebhookDeliverer

from .helpers import RC, CliEnv, ProcessManager, claim_all, free_port, on_queue
from .test_webhooks import fast, until
from .webhooks_helpers import Receiver

RECAPTCHA = ["userrecaptcha", f"googlekey={RC['googlekey']}", f"pageurl={RC['pageurl']}"]


def invoke(args: list[str], env: CliEnv) -> Result:
    return CliRunner().invoke(cli, args, env=env)


def _keys(sync_redis: redis.Redis, namespace: str) -> list[bytes]:
    return list(sync_redis.scan_iter(match="{" + namespace + "}*"))


def _one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_submit_with_a_pingback_stores_it_and_refuses_a_private_one_writing_nothing(
    cli_env: CliEnv, sync_redis: redis.Redis, namespace: str
) -> None:
    for url in ("http://127.0.0.1:8080/hook", "ftp://example.com/", "http://user:pw@example.com/"):
        refused = invoke(["submit", *RECAPTCHA, "--pingback", url], cli_env)
        assert refused.exit_code == 1
        assert "pingback" in _one_error_line(refused)
    bad_format = invoke(
        ["submit", *RECAPTCHA, "--pingback", "https://e.com/", "--pingback-format", "xml"], cli_env
    )
    assert bad_format.exit_code == 2
    assert _keys(sync_redis, namespace) == []

    url = "http://127.0.0.1:8080/hook"
    done = invoke(
        ["submit", *RECAPTCHA, "--pingback", url, "--pingback-format", "json", "--allow-private-target"],
        cli_env,
    )
    assert done.exit_code == 0, done.output
    task_id = done.stdout.strip()
    keys = Keys(namespace)
    state = json.loads(sync_redis.hget(keys.state, task_id))  # type: ignore[arg-type]
    assert (state["pingback"], state["pingback_format"]) == (url, "json")
    task = json.loads(sync_redis.hget(keys.tasks, task_id))  # type: ignore[arg-type]
    assert (task["pingback"], task["pingback_format"]) == (url, "json")


def test_an_expired_delivery_is_listed_as_failed_and_a_retry_delivers_it(
    redis_url: str, namespace: str, cli_env: CliEnv
) -> None:
    receiver = Receiver()  # down at first

    async def expire(q: AsyncCaptchaQueue) -> str:
        task_id = await q.submit("userrecaptcha", RC, pingback=receiver.url())
        (claim,) = await claim_all(q, 1)
        await q.complete(claim, "late-answer")
        outbox = Outbox(q.client, q.namespace)
        settings = fast(max_age_s=0.5)
        async with WebhookDeliverer(q.client, namespace=q.namespace, settings=settings):
            await until(lambda: _state(outbox, task_id, "failed"), what="failed")
        return task_id

    task_id = _on_private_queue(redis_url, namespace, expire)

    listed = invoke(["webhooks", "list", "--state", "failed"], cli_env)
    assert listed.exit_code == 0, listed.output
    assert task_id in listed.stdout
    assert "expired" in listed.stdout
    assert invoke(["webhooks", "list", "--state", "delivered"], cli_env).stdout == "no deliveries delivered\n"
    (line,) = invoke(["webhooks", "list", "--json"], cli_env).stdout.splitlines()
    shown = json.loads(line)
    assert (shown["task"], shown["state"]) == (task_id, "failed")
    assert shown["attempts"] >= 1
    assert shown["last_error"].startswith("cannot connect")
    assert shown["reason"] == "expired: not delivered within 0.5 s"
    assert "lease" not in shown
    show = invoke(["webhooks", "show", task_id], cli_env)
    assert show.exit_code == 0
    assert "state: failed" in show.stdout.splitlines()

    retried = invoke(["webhooks", "retry", task_id], cli_env)
    assert (retried.exit_code, retried.stdout) == (0, f"retrying {task_id}\n")
    assert json.loads(invoke(["webhooks", "show", task_id, "--json"], cli_env).stdout)["state"] == "pending"

    async def deliver(q: AsyncCaptchaQueue) -> str:
        await receiver.start()
        try:
            async with WebhookDeliverer(q.client, namespace=q.namespace, settings=fast()):
                (request,) = await receiver.wait_for(1)
                await until(lambda: _state(Outbox(q.client, q.namespace), task_id, "delivered"))
        finally:
            await receiver.stop()
        return request.fields["code"]

    assert _on_private_queue(redis_url, namespace, deliver) == "late-answer"
    listed = invoke(["webhooks", "list", "--state", "delivered"], cli_env)
    assert task_id in listed.stdout


def _on_private_queue(redis_url: str, namespace: str, fn: object) -> str:
    async def go() -> str:
        async with AsyncCaptchaQueue.from_url(
            redis_url, namespace=namespace, allow_private_targets=True
        ) as q:
            result: str = await fn(q)  # type: ignore[operator]
            return result

    return asyncio.run(go())


async def _state(outbox: Outbox, task_id: str, state: str) -> bool:
    delivery = await outbox.get(task_id)
    return delivery is not None and delivery.state == state


def test_unknown_ids_and_bad_options_are_one_line_errors_that_change_nothing(
    cli_env: CliEnv, sync_redis: redis.Redis, namespace: str, redis_url: str
) -> None:
    for args in (["webhooks", "retry", "nosuch"], ["webhooks", "show", "nosuch"]):
        result = invoke(args, cli_env)
        assert result.exit_code == 1
        assert _one_error_line(result) == "error: no webhook delivery for task nosuch"
    assert invoke(["webhooks", "list", "--state", "bogus"], cli_env).exit_code == 2
    bad_run = invoke(["webhooks", "run", "--timeout-s", "5", "--lease-s", "5"], cli_env)
    assert bad_run.exit_code == 1
    assert "lease_s" in _one_error_line(bad_run)
    nan = invoke(["webhooks", "run", "--timeout-s", "nan"], cli_env)
    assert nan.exit_code == 2
    assert _keys(sync_redis, namespace) == []
    assert invoke(["webhooks", "list"], cli_env).stdout == "no deliveries\n"

    async def one(q: AsyncCaptchaQueue) -> str:
        return await q.submit("userrecaptcha", RC, pingback="https://example.com/hook")

    task_id = on_queue(redis_url, namespace, one)
    partly = invoke(["webhooks", "retry", "nosuch"], cli_env)
    assert partly.exit_code == 1
    assert invoke(["webhooks", "show", task_id], cli_env).exit_code == 1  # not final: no delivery yet


@pytest.mark.timeout(60)
def test_webhooks_run_delivers_serves_its_counters_and_stops_on_sigterm(
    redis_url: str, namespace: str, subprocess_env: dict[str, str], processes: ProcessManager
) -> None:
    port = free_port()
    env = subprocess_env | {"CAPTCHA_QUEUE_WEBHOOK_SECRET": "a-secret-never-printed"}
    argv = ["-m", "captcha_queue", "webhooks", "run", "--allow-private-targets", "--poll-s", "0.05"]
    proc = processes.spawn_python([*argv, "--metrics-port", str(port)], env)

    async def deliver(q: AsyncCaptchaQueue) -> str:
        receiver = await Receiver().start()
        try:
            task_id = await q.submit("userrecaptcha", RC, pingback=receiver.url())
            (claim,) = await claim_all(q, 1)
            await q.complete(claim, "answer")
            (request,) = await receiver.wait_for(1, timeout_s=30)
            await until(lambda: _state(Outbox(q.client, q.namespace), task_id, "delivered"))
        finally:
            await receiver.stop()
        assert request.fields["id"] == task_id
        return request.fields["code"]

    assert _on_private_queue(redis_url, namespace, deliver) == "answer"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert 'captcha_queue_webhook_sends_total{outcome="delivered"} 1.0' in metrics.splitlines()
    processes.kill(proc, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    assert f"delivering webhooks of namespace {namespace} as " in output
    assert "a-secret-never-printed" not in output
