"""A faithful simulator of the CaptchaAI ``in.php`` / ``res.php`` service, for tests, benchmarks and the demo.

    async with run_simulator(SimulatorConfig(time_scale=0.01)) as sim:
        solver = CaptchaAISolver("a" * 32, sim.base_url, time_scale=0.01)
        ...
        sim.stats()["accounts"]

``captcha-queue simulator --port 8765`` serves the same application from the command line.
``SimulatorConfig(profile=...)`` (``--profile``) makes it another provider: ``2captcha`` (in.php without
``threadsinfo`` plus its JSON API v2), ``capsolver`` and ``anticaptcha`` (the JSON API), ``generic-inphp``;
those pay per solve from a balance, refunded on a bad report (``simulator/profiles.py``).
"""

from __future__ import annotations

from .accounts import OVER_CAPACITY_MODES, OverCapacity, account_label
from .app import RunningSimulator, make_app, run_simulator
from .config import SimulatorConfig
from .faults import DEFAULT_FAULT_KINDS, DEFAULT_LATENCY, FAULT_KINDS, FaultPlan, LatencyModel
from .profiles import SIM_PROFILES

__all__ = [
    "DEFAULT_FAULT_KINDS",
    "DEFAULT_LATENCY",
    "FAULT_KINDS",
    "OVER_CAPACITY_MODES",
    "SIM_PROFILES",
    "FaultPlan",
    "LatencyModel",
    "OverCapacity",
    "RunningSimulator",
    "SimulatorConfig",
    "account_label",
    "make_app",
    "run_simulator",
]
