"""The test ports (bench/ports.py): a block per pytest-xdist worker, below the kernel's ephemeral range,
and only ports that nothing holds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from bench import ports
from bench.ports import free_port, free_ports, port_block


def test_every_worker_has_a_block_of_its_own_below_the_ephemeral_range() -> None:
    blocks = [port_block("")] + [port_block(f"gw{i}") for i in range(8)]
    seen: set[int] = set()
    for block in blocks:
        assert not seen & set(block)
        seen |= set(block)
    assert min(seen) >= 1024
    low = 32768
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if path.exists():
        low = int(path.read_text().split()[0])
    assert max(seen) < low  # the kernel never hands these out for port 0 or an outgoing connection


def test_this_process_walks_its_own_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    got = free_ports(5)
    assert len(set(got)) == 5
    assert all(p in port_block("gw2") for p in got)
    again = free_ports(5)
    assert not set(got) & set(again)  # not handed out twice before the walk goes round the block


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw5")
    block = port_block()
    nxt = free_port()
    following = block[(block.index(nxt) + 1) % len(block)]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", following))
        held.listen()
        port = free_port()
    assert port != following
    assert port in block


def test_a_full_block_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_bindable", lambda port: False)
    with pytest.raises(OSError, match="fewer than 1 free loopback ports"):
        free_port()
