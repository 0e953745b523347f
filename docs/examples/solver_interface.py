"""The Solver interface, spoken to the solver simulator in process (the real service would bill for it);
against CaptchaAI, drop `run_simulator` and give `CaptchaAISolver` your key and no base URL."""

import asyncio

from captcha_queue.simulator import SimulatorConfig, run_simulator
from captcha_queue.solvers import CaptchaAISolver, create_solver

SCALE = 0.001  # the simulator solves 1000x faster than real time; the solver's waits scale to match
METHOD = "recaptcha_v3"
PARAMS: dict[str, str | float] = {
    "googlekey": "6Le-wHgU...",
    "pageurl": "https://example.com/login",
    "action": "login",
    "min_score": 0.7,
}


async def main() -> None:
    async with (
        run_simulator(SimulatorConfig(time_scale=SCALE)) as sim,
        CaptchaAISolver("k" * 32, sim.base_url, account="main", time_scale=SCALE) as solver,
    ):
        info = await solver.account_info()  # AccountInfo(threads, working_threads, balance)
        print("threads:", info.threads)

        remote_id = await solver.submit(METHOD, PARAMS)  # in.php
        first_s, every_s = solver.poll_schedule(METHOD, PARAMS)  # the method's (10 s, 5 s), scaled
        await asyncio.sleep(first_s)
        solution = await solver.poll(remote_id, METHOD, PARAMS)  # a Solution, or None: not ready yet
        while solution is None:
            await asyncio.sleep(every_s)
            solution = await solver.poll(remote_id, METHOD, PARAMS)
        print("token:", solution.text[:8], "...")

        ids = [await solver.submit(METHOD, PARAMS) for _ in range(2)]
        await asyncio.sleep(first_s)
        # {remote id: Solution | None | SolverError}: one request per id; errors come back, never raised
        outcomes = await solver.poll_many([(i, METHOD, PARAMS) for i in ids])
        print("poll_many:", len(outcomes), "outcomes")
        await solver.report(remote_id, correct=True)  # best effort, never raises

    async with create_solver("instant") as instant:  # no network: for measuring the queue itself
        print("instant:", await instant.poll(await instant.submit(METHOD, PARAMS), METHOD, PARAMS))


asyncio.run(main())
