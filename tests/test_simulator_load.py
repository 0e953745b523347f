"""The simulator holds 5,000 concurrent connections and 2,000 tasks in flight on one core.

The simulator runs as its own process (one core, as in production use); the test opens 5,000
keep-alive connections, submits 2,000 tasks over them and asks every connection twice.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import pytest

from captcha_queue.simulator import LatencyModel, SimulatorConfig, run_simulator
from captcha_queue.simulator.samples import sample_params

from .helpers import ProcessManager

KEY = "L" * 32
CONNECTIONS = 5000
TASKS = 2000


def start_simulator(processes: ProcessManager, *args: str) -> str:
    proc = processes.spawn_python(["-m", "captcha_queue", "simulator", "--port", "0", *args])
    assert proc.stdout is not None
    for _ in range(20):
        line = proc.stdout.readline().decode().strip()
        if line.startswith("http://"):
            return line
    raise AssertionError("the simulator printed no URL")


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def request_bytes(host: str, path: str, form: dict[str, Any] | None = None) -> bytes:
    if form is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    body = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.timeout(120)
async def test_five_thousand_connections_and_two_thousand_tasks(processes: ProcessManager) -> None:
    base_url = start_simulator(processes, "--threads", str(TASKS), "--latency", "*=60:60:60", "--seed", "1")
    host_port = base_url.removeprefix("http://")
    host, port = host_port.split(":")
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for start in range(0, CONNECTIONS, 500):
            batch = await asyncio.gather(
                *(asyncio.open_connection(host, int(port)) for _ in range(start, start + 500))
            )
            connections.extend(batch)
        params = {
            k: str(v).replace(":", "%3A").replace("/", "%2F") for k, v in sample_params("turnstile").items()
        }
        submit = request_bytes(host_port, "/in.php", {"key": KEY, "method": "turnstile", "json": 1, **params})
        info = request_bytes(host_port, "/res.php", {"key": KEY, "action": "threadsinfo", "json": 1})
        started = time.monotonic()
        first = await asyncio.gather(
            *(exchange(r, w, submit if i < TASKS else info) for i, (r, w) in enumerate(connections))
        )
        assert all(status == 200 for status, _ in first)
        assert sum(json.loads(body).get("status") == 1 for _, body in first[:TASKS]) == TASKS
        stats = await asyncio.to_thread(get_json, f"{base_url}/stats")
        assert stats["in_flight"] == TASKS
        assert stats["max_in_flight"] == TASKS
        # every connection is still open and served (keep-alive), all at once
        health = request_bytes(host_port, "/health")
        second = await asyncio.gather(*(exchange(r, w, health) for r, w in connections))
        assert all(status == 200 and body == b"ok" for status, body in second)
        assert time.monotonic() - started < 60
    finally:
        for _, writer in connections:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in connections), return_exceptions=True)


async def test_tasks_in_flight_are_timers_not_coroutines() -> None:
    config = SimulatorConfig(threads=TASKS, latency={"*": LatencyModel(60.0)})
    async with run_simulator(config) as sim:
        tasks_before = len(asyncio.all_tasks())
        engine = sim.simulator
        for _ in range(TASKS):
            answer = engine.submit(
                {
                    "key": KEY,
                    "method": "turnstile",
                    **{k: str(v) for k, v in sample_params("turnstile").items()},
                },
                {},
                "127.0.0.1",
            )
            assert answer.ok
        assert sim.stats()["in_flight"] == TASKS
        assert len(asyncio.all_tasks()) == tasks_before
