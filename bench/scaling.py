"""``python -m bench.scaling``: tasks/s of 1, 2 and 3 namespaces on one Redis and on a 3-primary Cluster,
and what one task costs Redis (commands, CPU), for the capacity model in docs/redis.md.

    python -m bench.scaling               # 20 s per run
    python -m bench.scaling --seconds 5   # small (what the tests and a quick look use)

Each namespace is driven by its own process (so the Python client is not shared): loops of
submit_many(50) -> claim(50) -> complete each, ``--loops`` of them at once. On the Cluster the
namespaces are picked so each hashes to a different primary. Redis's own cost is read from INFO on
every primary before and after: commands (commandstats) and CPU seconds (used_cpu_sys + user) per
task. The report goes to ``bench/results/scaling-<date>.md`` with the command that produced it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from captcha_queue.queue._producer import AsyncCaptchaQueue
from captcha_queue.store.keys import Keys
from captcha_queue.store.server import EmbeddedRedis

from .redis_deployments import RedisClusterDeployment, command

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 50


async def drive(url: str, namespace: str, seconds: float, loops: int) -> int:
    """Run the lifecycle in ``namespace`` for ``seconds``: the number of tasks completed."""
    done = 0
    specs = [
        {"method": "turnstile", "params": {"sitekey": "0x4AAAAAAAB", "pageurl": f"https://b.example/{i}"}}
        for i in range(BATCH)
    ]
    async with AsyncCaptchaQueue.from_url(url, namespace=namespace, max_connections=4 * loops) as q:
        end = time.monotonic() + seconds

        async def loop(worker: str) -> None:
            nonlocal done
            while time.monotonic() < end:
                await q.submit_many(specs)
                claims = await q.claim(worker, BATCH, block_s=0)
                await asyncio.gather(*(q.complete(c, "x") for c in claims))
                done += len(claims)

        await asyncio.gather(*(loop(f"w{i}") for i in range(loops)))
    return done


@dataclass
class Run:
    deployment: str
    namespaces: int
    seconds: float
    tasks: int
    commands: int
    cpu_s: float
    scripts: int = 0

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    @property
    def commands_per_task(self) -> float:
        return self.commands / max(1, self.tasks)

    @property
    def scripts_per_task(self) -> float:
        return self.scripts / max(1, self.tasks)

    @property
    def cpu_us_per_task(self) -> float:
        return 1e6 * self.cpu_s / max(1, self.tasks)


def _server_cost(clients: Sequence[redis.Redis]) -> tuple[int, float, int]:
    """(commands run, counting those scripts run; CPU seconds; EVALSHA calls) over ``clients``."""
    calls, cpu, scripts = 0, 0.0, 0
    for client in clients:
        stats: Any = client.info("commandstats")
        calls += sum(int(v["calls"]) for v in stats.values() if isinstance(v, dict))
        scripts += sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))
        info: Any = client.info("cpu")
        cpu += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return calls, cpu, scripts


def _measure(
    label: str, url: str, primaries: Sequence[redis.Redis], names: list[str], seconds: float, loops: int
) -> Run:
    # The URL (it carries the password) goes by the environment, never a command line.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "CQ_SCALING_URL": url}
    before = _server_cost(primaries)
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.scaling", "--drive", name, str(seconds), str(loops)],
            env=env,
            stdout=subprocess.PIPE,
        )
        for name in names
    ]
    counts = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        counts.append(int(out.decode().strip().splitlines()[-1]))
    elapsed = time.monotonic() - started
    after = _server_cost(primaries)
    return Run(
        label,
        len(names),
        min(elapsed, seconds + 2.0),
        sum(counts),
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
    )


def _spread_names(cluster: RedisClusterDeployment, count: int) -> list[str]:
    """``count`` namespaces on ``count`` different primaries."""
    by_owner: dict[int, str] = {}
    while len(by_owner) < count:
        name = f"scale-{uuid.uuid4().hex[:8]}"
        by_owner.setdefault(cluster.port_of_slot_owner(Keys(name).prefix), name)
    return list(by_owner.values())[:count]


def run_all(seconds: float, loops: int) -> list[Run]:
    runs: list[Run] = []
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        try:
            for n in (1, 2, 3):
                client.flushall()
                names = [f"scale-{uuid.uuid4().hex[:8]}" for _ in range(n)]
                runs.append(_measure("one Redis", server.url, [client], names, seconds, loops))
        finally:
            client.close()
    with RedisClusterDeployment(primaries=3, replicas=0) as cluster:
        cluster.start()
        primaries = [cluster.client(p) for p in cluster.primary_ports()]
        try:
            for n in (1, 2, 3):
                for c in primaries:
                    command(c, "FLUSHALL")
                runs.append(
                    _measure(
                        "Cluster, 3 primaries",
                        cluster.url,
                        primaries,
                        _spread_names(cluster, n),
                        seconds,
                        loops,
                    )
                )
        finally:
            for c in primaries:
                c.close()
    return runs


def render(runs: Sequence[Run], command_line: str, loops: int) -> str:
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        f"# Scaling: namespaces on one Redis vs a 3-primary Cluster, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `{command_line}`",
        f"- Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, redis-py {redis.__version__}",
        f"- Each namespace: one process running {loops} loops of submit_many(50) -> claim(50) -> "
        "complete each; clients and servers share the machine",
        "- Commands: every command Redis ran, those run inside the scripts included (commandstats); "
        "script calls: EVALSHA round trips; CPU: used_cpu_sys + used_cpu_user of the primaries",
        "",
        "| Deployment | Namespaces | Tasks/s | Script calls / task | Commands / task | Redis CPU us / task |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.deployment} | {r.namespaces} | {r.rate:,.0f} | {r.scripts_per_task:.2f} "
            f"| {r.commands_per_task:.1f} | {r.cpu_us_per_task:.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--loops", type=int, default=4, help="concurrent lifecycle loops per namespace")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--drive", nargs=3, metavar=("NS", "SECONDS", "LOOPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        name, seconds, loops = args.drive
        print(asyncio.run(drive(os.environ["CQ_SCALING_URL"], name, float(seconds), int(loops))))
        return 0
    command_line = "python -m bench.scaling " + " ".join(argv if argv is not None else sys.argv[1:])
    runs = run_all(args.seconds, args.loops)
    text = render(runs, command_line.strip(), args.loops)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"scaling-{datetime.datetime.now(datetime.UTC):%Y-%m-%d}"
    (args.out / f"{stem}.md").write_text(text, encoding="utf-8")
    (args.out / f"{stem}.json").write_text(
        json.dumps(
            [vars(r) | {"rate": r.rate, "cpu_us_per_task": r.cpu_us_per_task} for r in runs], indent=2
        ),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
