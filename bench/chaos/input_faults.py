"""Scenarios 7, 8 and 12: the solver fails 30 % of requests, the account breaks (bad key, no
threads), and bad input (malformed submissions, corrupted entries written straight into Redis).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

from captcha_queue.models import Pause

from .checker import Expect
from .harness import Rig
from .outcome import Row, conclude, config_for, fraction_final, summary

__all__ = ["account_errors", "fuzz", "solver_faults"]


# -- 7. solver faults -------------------------------------------------------------------------------

FAULT_KINDS_30 = "http_500,html_502,garbage,plaintext_error,hang,reset"


async def solver_faults(
    *,
    tasks: int = 3000,
    time_scale: float = 0.01,
    solver_limit: int = 100,
    fault_rate: float = 0.3,
    hang_s: float = 2.0,
    timeout_s: float = 600.0,
) -> Row:
    """30 % of solver requests fail (5xx, HTML, garbage, hangs, resets): all final, >= 98.9 % solved."""
    started = time.monotonic()
    # A hang ends in a reset after hang_s (real seconds). The client's 30 s request timeout is not
    # time-scaled: a 30 s hang in a run scaled 100x would stand for 50 minutes of service time.
    sim = ["--fault-rate", str(fault_rate), "--fault-kinds", FAULT_KINDS_30, "--hang-s", str(hang_s)]
    config = config_for(solver_limit, sim, workers=2, concurrency=solver_limit, time_scale=time_scale)
    async with Rig(config) as rig:
        await rig.submit(tasks, max_attempts=4)
        rig.start_sampler()
        done = await rig.wait_all_final(timeout_s)
        row, report = await conclude(
            rig,
            7,
            "Solver faults",
            f"{tasks:,} tasks, {fault_rate:.0%} of requests fail, max_attempts 4",
            Expect(min_success_rate=0.989),
            started=started,
            extra_violations=[] if done else ["timed out"],
        )
        faults = sum(int(v) for v in row.details["faults"].values())
        row.figure = (
            f"success {report.success_rate:.2%} (>= 98.9 %); {faults} faults injected; "
            f"{row.details['worker_crashes']} worker crashes; {summary(report)}"
        )
        return row


# -- 8. account errors ------------------------------------------------------------------------------


async def account_errors(
    *, tasks: int = 500, time_scale: float = 0.01, solver_limit: int = 50, timeout_s: float = 120.0
) -> Row:
    """A bad key, then no threads: the fleet pauses at the first error, nothing retried or failed."""
    started = time.monotonic()
    config = config_for(solver_limit, workers=2, concurrency=solver_limit, time_scale=time_scale)
    async with Rig(config) as rig:
        assert rig.queue is not None
        await rig.submit(tasks // 2)
        rig.start_sampler()
        await rig.wait_until(fraction_final(rig, 0.2), timeout_s)
        phases: list[dict[str, Any]] = []
        for label, change, fix in (
            ("bad key", {"state": "bad"}, {"state": "ok"}),
            ("no threads", {"threads": 0}, {"threads": solver_limit * 4}),
        ):
            phases.append(await _account_phase(rig, label, change, fix, tasks // 4))
        done = await rig.wait_all_final(timeout_s)
        extra = [] if done else ["timed out"]
        for phase in phases:
            if not phase["paused"]:
                extra.append(f"{phase['label']}: the fleet did not pause")
            if phase["burst"] > phase["burst_allowed"]:
                extra.append(f"{phase['label']}: {phase['burst']} error answers before the pause held")
            if phase["while_paused"] > phase["probes_allowed"]:
                extra.append(f"{phase['label']}: {phase['while_paused']} error answers while paused")
            if phase["queued_while_paused"] < phase["submitted_while_paused"]:
                extra.append(f"{phase['label']}: tasks submitted during the pause did not stay queued")
        row, report = await conclude(
            rig,
            8,
            "Account errors",
            f"{tasks:,} tasks; bad key, then no threads",
            Expect(max_error=0),
            started=started,
            extra_violations=extra,
            details={"phases": phases},
        )
        row.figure = (
            "; ".join(
                f"{p['label']}: paused in {p['pause_s']:.2f} s after {p['burst']} error answers "
                f"(in flight then), {p['while_paused']} while paused"
                for p in phases
            )
            + f"; {report.tasks - report.by_status.get('success', 0)} tasks failed"
        )
        return row


_NOT_ERRORS = frozenset({"OK", "CAPCHA_NOT_READY", "ERROR_CAPTCHA_UNSOLVABLE"})


async def _error_answers(rig: Rig) -> int:
    codes = (await rig.sim_stats()).get("codes", {})
    return sum(int(n) for code, n in codes.items() if code not in _NOT_ERRORS)


async def _account_phase(
    rig: Rig, label: str, change: dict[str, Any], fix: dict[str, Any], submit_while_paused: int
) -> dict[str, Any]:
    """Break the account, see the fleet pause, submit while paused, fix it and resume."""
    assert rig.queue is not None
    account = await _account_label(rig)

    async def working() -> bool:
        assert rig.queue is not None
        stats = await rig.queue.stats()
        return stats.in_flight > 0 and stats.queued_total > 0

    if not await working():
        # The pause is tripped by an error answer: with nothing left to send (the fleet may have
        # finished everything, or be about to: only tasks in flight, none queued) nothing would
        # reach the service after the break, so give the fleet work first.
        await rig.submit(rig.config.solver_limit * 4, tag=label.replace(" ", "-") + "-before")
        await rig.wait_until(working, 20.0, poll_s=0.01)
    before = await _error_answers(rig)
    await rig.sim_control(accounts={account: change})
    broke_at = time.monotonic()
    rig.note(f"account: {label}")

    async def paused() -> bool:
        assert rig.queue is not None
        return bool(await _account_pauses(rig))

    was_paused = await rig.wait_until(paused, 20.0, poll_s=0.01)
    pause_s = time.monotonic() - broke_at
    await asyncio.sleep(0.5)  # submits already in flight at the pause answer now
    at_pause = await _error_answers(rig)
    await rig.submit(submit_while_paused, tag=label.replace(" ", "-"))
    await asyncio.sleep(1.0)  # paused: only account probes may reach the service
    stats = await rig.queue.stats()
    reasons = [p.reason for p in await _account_pauses(rig)]
    while_paused = await _error_answers(rig) - at_pause
    await rig.sim_control(accounts={account: fix}, unban=True)
    await asyncio.to_thread(_cli_resume, rig)
    rig.note(f"account fixed and fleet resumed after {label}")
    return {
        "label": label,
        "paused": was_paused,
        "pause_s": round(pause_s, 3),
        "reason": "; ".join(reasons),
        "burst": at_pause - before,
        # Answers racing the pause: the N solves in flight (each poll answered once), plus the
        # submits of tasks that took a slot freed by one of those answers before the pause reached
        # their worker (at most N more), plus one per worker.
        "burst_allowed": 2 * rig.config.solver_limit + len(rig.slots),
        "while_paused": while_paused,
        "probes_allowed": 2 * len(rig.slots),
        "submitted_while_paused": submit_while_paused,
        "queued_while_paused": stats.queued_total,
    }


async def _account_pauses(rig: Rig) -> tuple[Pause, ...]:
    """The pauses of solver accounts (the workers' one: they all share the scenario's key)."""
    assert rig.queue is not None
    return (await rig.queue.pause_state()).accounts


async def _account_label(rig: Rig) -> str:
    accounts = (await rig.sim_stats()).get("accounts", {})
    if len(accounts) != 1:
        raise RuntimeError(f"expected one simulator account, found {len(accounts)}")
    return str(next(iter(accounts)))


def _cli_resume(rig: Rig) -> None:
    env = rig.worker_env()
    env["REDIS_URL"] = rig.redis.url
    subprocess.run(
        [sys.executable, "-m", "captcha_queue", "resume"],
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )


# -- 12. fuzz ---------------------------------------------------------------------------------------


async def fuzz(
    *, submissions: int = 2000, corrupt: int = 10_000, solver_limit: int = 50, timeout_s: float = 120.0
) -> Row:
    """Malformed submissions refused; corrupted entries written into Redis refused or dead-lettered."""
    from .corrupt import corrupt_entries, malformed_submissions

    started = time.monotonic()
    config = config_for(solver_limit, workers=2, concurrency=solver_limit, time_scale=0.01)
    async with Rig(config) as rig:
        assert rig.queue is not None
        assert rig.raw is not None
        refused, accepted = await malformed_submissions(rig.queue, submissions, seed=5)
        written = await corrupt_entries(rig.raw, rig.keys, corrupt, seed=5)
        good = await rig.submit(50, tag="after-fuzz")
        rig.start_sampler()

        async def settled() -> bool:
            assert rig.raw is not None
            state = await rig.raw.hlen(rig.keys.state)
            results = await rig.raw.hlen(rig.keys.results)
            queued = sum([await rig.raw.llen(rig.keys.queue(p)) for p in ("high", "normal", "low")])
            return (
                queued == 0
                and results >= len(good)
                and await rig.raw.zcard(rig.keys.active) == 0
                and state > 0
            )

        done = await rig.wait_until(settled, timeout_s, poll_s=0.2)
        # Through the public API: it must read even dead letters of entries that were not UTF-8.
        dead = await rig.queue.dead_letters(limit=corrupt + submissions + 100)
        reasons: dict[str, int] = {}
        for letter in dead:
            reason = letter.reason.split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        without_reason = reasons.pop("", 0)
        extra = [] if done else ["the queue did not settle (hang?)"]
        if accepted:
            extra.append(f"{accepted} malformed submissions were accepted")
        if without_reason:
            extra.append(f"{without_reason} dead letters without a reason")
        if len(dead) < written["dead_letterable"]:
            extra.append(
                f"{written['dead_letterable'] - len(dead)} corrupted queue entries "
                "neither refused nor dead-lettered"
            )
        row, report = await conclude(
            rig,
            12,
            "Fuzz",
            f"{submissions:,} malformed submissions, {corrupt:,} corrupted Redis entries",
            Expect(),
            started=started,
            extra_violations=extra,
            details={"refused": refused, "dead_reasons": reasons, "written": written},
        )
        row.figure = (
            f"{refused}/{submissions} submissions refused (InvalidTask); "
            f"{len(dead)} entries dead-lettered with a reason "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))}); "
            f"{row.details['worker_crashes']} crashes; "
            f"valid tasks after: {report.by_status.get('success', 0)}/{len(good)}"
        )
        return row
