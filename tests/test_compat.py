"""Behaviour that must hold on every dependency version in range (msgspec 0.22-0.23, redis-py 8.1-8.2)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import msgspec
import pytest

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.models import Result
from captcha_queue.queue._core import decode_lenient

from .helpers import RC


class _Entry(msgspec.Struct):
    id: str
    text: str


_decoder = msgspec.json.Decoder(_Entry)


def test_invalid_utf8_in_an_entry_is_read_with_replacement_characters() -> None:
    # msgspec < 0.23 raises UnicodeDecodeError here, 0.23 msgspec.DecodeError: both fall back.
    entry = decode_lenient(
        _decoder, b'{"id": "t1", "text": "ok \\xff\\xfe end"}'.replace(b"\\xff\\xfe", b"\xff\xfe")
    )
    assert entry.id == "t1"
    assert entry.text == "ok \ufffd\ufffd end"


def test_valid_utf8_that_is_not_an_entry_still_raises() -> None:
    with pytest.raises(ValueError, match="Expected `object`"):
        decode_lenient(_decoder, b"[1, 2]")
    with pytest.raises(ValueError, match="truncated"):
        decode_lenient(_decoder, b'{"id": "t1"')


def test_a_str_that_cannot_be_decoded_raises_the_decoder_error() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_lenient(msgspec.json.Decoder(Result), '{"id": 3}')


def _run_script(body: str, redis_url: str, namespace: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(body).format(url=redis_url, ns=namespace, params=RC)
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::RuntimeWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


_SYMPTOMS = ("never awaited", "Task was destroyed", "Traceback", "ignored GeneratorExit")


@pytest.mark.timeout(90)
def test_a_sync_queue_dropped_without_close_shuts_its_waiter_down_cleanly(
    redis_url: str, namespace: str
) -> None:
    proc = _run_script(
        """
        from captcha_queue import CaptchaQueue
        q = CaptchaQueue.from_url({url!r}, namespace={ns!r})
        task_id = q.submit("userrecaptcha", {params!r})
        print("waited", q.wait_result(task_id, timeout_s=0.3))
        del q
        print("end")
        """,
        redis_url,
        namespace,
    )
    assert proc.returncode == 0, proc.stderr
    assert "waited None" in proc.stdout
    assert "end" in proc.stdout
    for symptom in _SYMPTOMS:
        assert symptom not in proc.stderr, proc.stderr


@pytest.mark.timeout(90)
def test_closing_queues_with_live_waiters_leaves_no_pending_task(redis_url: str, namespace: str) -> None:
    proc = _run_script(
        """
        import asyncio
        from captcha_queue import AsyncCaptchaQueue, CaptchaQueue

        with CaptchaQueue.from_url({url!r}, namespace={ns!r}) as q:
            task_id = q.submit("userrecaptcha", {params!r})
            print("sync", q.wait_result(task_id, timeout_s=0.3))

        async def main() -> None:
            async with AsyncCaptchaQueue.from_url({url!r}, namespace={ns!r}) as q:
                task_id = await q.submit("userrecaptcha", {params!r})
                waiting = asyncio.create_task(q.wait_result(task_id, timeout_s=30))
                await asyncio.sleep(0.2)
            waiting.cancel()
            print("async done")

        asyncio.run(main())
        """,
        redis_url,
        namespace,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sync None" in proc.stdout
    assert "async done" in proc.stdout
    for symptom in _SYMPTOMS:
        assert symptom not in proc.stderr, proc.stderr


async def test_aclose_with_a_subscribed_waiter_emits_no_warning(redis_url: str, namespace: str) -> None:
    # pytest runs with warnings as errors: an un-awaited teardown coroutine fails this test.
    q = AsyncCaptchaQueue.from_url(redis_url, namespace=namespace)
    task_id = await q.submit("userrecaptcha", RC)
    assert await q.wait_result(task_id, timeout_s=0.2) is None
    await q.aclose()
    await q.aclose()  # idempotent
