"""Worker log lines carry text from producers, Redis and the solver: it can neither forge a line nor
make a huge one, in either format, and the API key stays out even when a value is cut."""

from __future__ import annotations

import io
import json
import logging

import pytest

from captcha_queue import AsyncCaptchaQueue
from captcha_queue.worker.logs import (
    MAX_MESSAGE_CHARS,
    MAX_VALUE_CHARS,
    JsonFormatter,
    TextFormatter,
    configure_logging,
)

KEY = "0123456789abcdef0123456789abcdef"
FORGED = "x\n2026-01-01 00:00:00,000 CRITICAL captcha_queue.worker: forged"
HOSTILE = [FORGED, "a\rb", "bell\x07", "esc\x1b[31mred", "sep\u2028line", "bidi\u202etxt", "bad\udcffutf8"]
HUGE = "h" * 1_000_000


def emit(formatter: logging.Formatter, message: str, *args: object, **fields: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning(message, *args, extra={"fields": fields} if fields else None)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def formatters() -> list[logging.Formatter]:
    return [TextFormatter(secrets=[KEY]), JsonFormatter(secrets=[KEY])]


@pytest.mark.parametrize("formatter", formatters(), ids=["text", "json"])
@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_cannot_forge_a_line(formatter: logging.Formatter, value: str) -> None:
    out = emit(formatter, "task %s dead-lettered: %r", value, value, task_id=value, reason=value)
    line, end = out.split("\n")  # one record, one line
    assert end == ""
    assert line.isprintable(), line
    if isinstance(formatter, JsonFormatter):
        doc = json.loads(line)
        assert doc["task_id"] == value.encode("unicode_escape").decode("ascii")
        assert doc["msg"].startswith("task ")


@pytest.mark.parametrize("formatter", formatters(), ids=["text", "json"])
def test_a_huge_value_is_cut(formatter: logging.Formatter) -> None:
    out = emit(formatter, "task %s dead-lettered: %s", HUGE, "why", task_id=HUGE, error=HUGE)
    assert len(out) < MAX_MESSAGE_CHARS + 3 * MAX_VALUE_CHARS + 500
    assert f"...[{len(HUGE)} chars]" in out
    assert "dead-lettered: why" in out  # the rest of the message is kept


@pytest.mark.parametrize("formatter", formatters(), ids=["text", "json"])
def test_the_key_is_redacted_before_a_value_is_cut(formatter: logging.Formatter) -> None:
    # The key straddles the cut: cutting first would leave its first characters in the line.
    value = "v" * (MAX_VALUE_CHARS - 10) + KEY + "tail"
    out = emit(formatter, "reply %s", value, body=value)
    assert KEY[:8] not in out
    assert "***" in out


def test_numbers_keep_their_format() -> None:
    out = emit(TextFormatter(), "%d tasks in %.2fs, %s", 3, 1.23456, None, attempts=2, solve_s=0.5)
    assert "3 tasks in 1.23s, None" in out
    assert out.rstrip().endswith("attempts=2 solve_s=0.5")
    doc = json.loads(emit(JsonFormatter(), "x", attempts=2, resumed=False))
    assert doc["attempts"] == 2
    assert doc["resumed"] is False


def test_a_traceback_still_spans_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("test-logs-traceback")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("task %s failed", "id\nforged")
    finally:
        logger.removeHandler(handler)
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("task id\\nforged failed")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: boom"


# -- end to end: an id written into Redis by someone else, logged by the queue -----------------------------


async def test_a_hostile_id_from_redis_is_logged_on_one_bounded_line(
    queue: AsyncCaptchaQueue, capfd: pytest.CaptureFixture[str]
) -> None:
    hostile = FORGED + "y" * 10_000
    await queue.client.rpush(queue.keys.queue("high"), hostile)  # a queued id with no task
    configure_logging("text", logging.DEBUG, secrets=[KEY])  # in the test: onto the stderr capfd captures
    try:
        assert await queue.claim("w", 1, block_s=0) == []
    finally:
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
    assert await queue.dead_letter(hostile) is not None  # it was dead-lettered, and logged
    err = capfd.readouterr().err
    assert "Logging error" not in err
    lines = [line for line in err.splitlines() if "queued id x" in line]  # the claim's warning
    assert len(lines) == 1, err[:2000]
    assert "WARNING captcha_queue.queue: claim in namespace" in lines[0]
    assert "x\\n2026-01-01 00:00:00,000 CRITICAL captcha_queue.worker: forged" in lines[0]  # escaped
    assert not any(line.startswith("2026-01-01") for line in err.splitlines())  # nothing forged
    assert len(lines[0]) < MAX_MESSAGE_CHARS + 200
    assert all(len(line) < MAX_MESSAGE_CHARS + 500 for line in err.splitlines())
