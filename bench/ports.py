"""Free loopback ports for the servers that tests, benches and chaos runs start, safe under pytest-xdist.

Asking the kernel for port 0 and releasing it leaves a window before the server binds it. Two things can
take the port in that window: another process doing the same (two pytest-xdist workers starting servers
at once), and any outgoing connection, whose local port the kernel picks from the same ephemeral range
(``net.ipv4.ip_local_port_range``, 32768-60999 by default). So ports come from below that range, where
the kernel never assigns one by itself, in a block of its own per xdist worker (``PYTEST_XDIST_WORKER``
is ``gw0``, ``gw1``...; a serial run or a bench uses block 0): two workers never hand out the same port.
Inside its block a process walks from a random start (two runs on one machine rarely meet) and returns
only ports it could bind just now (something else on the machine may listen there)."""

from __future__ import annotations

import os
import random
import re
import socket
import threading

__all__ = ["PORTS_PER_BLOCK", "PORT_BASE", "free_port", "free_ports", "port_block"]

#: The first port handed out, and the size of each process's block: 9 blocks end below 32768.
PORT_BASE = 20000
PORTS_PER_BLOCK = 1400
_BLOCKS = 9

_lock = threading.Lock()
_cursor: dict[tuple[int, int], int] = {}


def port_block(worker: str | None = None) -> range:
    """The ports of this process's block: block 0 for a serial run, block ``N + 1`` for xdist's ``gwN``
    (wrapping past 8 workers, where the bind check alone keeps ports apart)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
    match = re.fullmatch(r"gw(\d+)", name)
    index = (int(match.group(1)) + 1) % _BLOCKS if match else 0
    start = PORT_BASE + index * PORTS_PER_BLOCK
    return range(start, start + PORTS_PER_BLOCK)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that nothing uses now, from this process's block. A port is not
    handed out again by this process until the walk has gone round the whole block."""
    block = port_block()
    key = (block.start, os.getpid())  # a forked child walks on from a fresh start of its own
    ports: list[int] = []
    with _lock:
        offset = _cursor.get(key, random.randrange(len(block)))
        for _ in range(len(block)):
            port = block[offset]
            offset = (offset + 1) % len(block)
            if _bindable(port):
                ports.append(port)
                if len(ports) == n:
                    break
        _cursor[key] = offset
    if len(ports) < n:
        raise OSError(f"fewer than {n} free loopback ports in {block.start}-{block.stop - 1}")
    return ports


def free_port() -> int:
    """One loopback port that nothing uses now (see :func:`free_ports`)."""
    return free_ports(1)[0]
