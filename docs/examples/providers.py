"""Another provider behind the same Solver interface: CapSolver's JSON API, against the simulator in
its capsolver profile. It pays per solve, refunds a bad report once, and a zero balance is an
AccountError (the worker pauses the account) rather than a busy answer."""

import asyncio

from captcha_queue import AccountError
from captcha_queue.simulator import SimulatorConfig, run_simulator
from captcha_queue.simulator.samples import sample_params
from captcha_queue.solvers import create_solver

KEY = "CAP-" + "k" * 32


async def main() -> None:
    config = SimulatorConfig(profile="capsolver", time_scale=0.001, balance=0.002, price=0.001)
    async with run_simulator(config) as sim:
        # CapSolver tells no thread count: the account's threads are configuration (--solver-limit).
        solver = create_solver("capsolver", api_key=KEY, base_url=sim.base_url, thread_limit=10)
        async with solver:
            params = sample_params("turnstile")
            remote_id = await solver.submit("turnstile", params)  # createTask
            solution = None
            while solution is None:
                await asyncio.sleep(0.01)
                solution = await solver.poll(remote_id, "turnstile", params)  # getTaskResult
            print("solved by", solver.provider, "->", solution.text[:12], "...")
            await solver.report(remote_id, False, "turnstile", params)  # feedbackTask: refunded
            print("balance after the refund:", (await solver.account_info()).balance)
            await solver.submit("turnstile", params)
            await solver.submit("turnstile", params)
            try:
                await solver.submit("turnstile", params)
            except AccountError as exc:
                print("no money:", exc.code, "(the account pauses until its balance is positive)")
        print("refunds:", sim.account(KEY)["refunds"])


asyncio.run(main())
