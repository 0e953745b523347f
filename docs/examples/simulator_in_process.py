"""The solver simulator in process, as the tests run it: valid params for every method, the /stats
document and run-time control, all without HTTP calls of your own."""

import asyncio

from captcha_queue import SolverError
from captcha_queue.protocol.methods import KNOWN_METHODS
from captcha_queue.simulator import SimulatorConfig, run_simulator
from captcha_queue.simulator.samples import sample_params
from captcha_queue.solvers import CaptchaAISolver

KEY = "k" * 32  # any 32-character key is an account unless SimulatorConfig(keys=...) says otherwise


async def main() -> None:
    async with (
        run_simulator(SimulatorConfig(time_scale=0.001, seed=1)) as sim,
        CaptchaAISolver(KEY, sim.base_url, time_scale=0.001) as solver,
    ):
        methods = [m for m in KNOWN_METHODS if solver.supports(m, sample_params(m))]  # CaptchaAI's
        for method in methods:
            await solver.submit(method, sample_params(method))
        stats = sim.stats()  # the same document as GET /stats
        print("accepted:", stats["submits"], "of", len(methods), "methods")

        sim.control({"next_errors": {"in": ["ERROR_ZERO_BALANCE"]}})  # the same as POST /control
        try:
            await solver.submit("recaptcha_v2", sample_params("recaptcha_v2"))
        except SolverError as exc:
            print("refused:", exc.code)
        print("account:", sim.account(KEY)["submits"], "submits")


asyncio.run(main())
