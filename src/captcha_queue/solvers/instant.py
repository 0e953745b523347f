"""InstantSolver: answers every task at once, in process. For measuring the queue itself.

No network, no timers, no per-task storage: a remote id is a counter, and its answer is derived from the
id, so the cost per task is a few dict operations. The answer has the shape the method's variant
promises (JSON for GeeTest, grid, BLS and Lemin; a user agent where the service returns one).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping, Sequence

from ..errors import SolverError
from ..models import AccountInfo, Solution
from ..protocol.methods import MethodSpec, ParamValue
from .base import PollOutcome, Solver
from .codes import error_for

__all__ = ["InstantSolver"]

_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)
_JSON_ANSWERS: Mapping[str, object] = {
    "grid": [1, 5, 9],
    "bls": [2, 4],
    "geetest_v3": {"challenge": "c", "validate": "v", "seccode": "v|jordan"},
    "geetest_v4": {
        "captcha_id": "x",
        "lot_number": "l",
        "pass_token": "p",
        "gen_time": "0",
        "captcha_output": "o",
    },
    "lemin": {"answer": "a", "challenge_uuid": "u"},
    "coordinates": [{"x": 12, "y": 34}, {"x": 56, "y": 78}],
    "coordinates_file": [{"x": 12, "y": 34}, {"x": 56, "y": 78}],
    "amazon_waf": {"captcha_voucher": "v", "existing_token": "t"},
}


class InstantSolver(Solver):
    """A solver that never waits: ``submit`` returns an id, the first ``poll`` returns the answer.

    ``threads`` is what ``account_info`` reports (None: unlimited); ``latency_s`` makes each call
    yield for that long (0: just yield to the loop once, so a worker's concurrency still interleaves).
    """

    kind = "instant"
    provider = "instant"

    def __init__(
        self,
        *,
        account: str = "default",
        threads: int | None = None,
        latency_s: float = 0.0,
        time_scale: float = 1.0,
        allow_unknown_methods: bool = True,
    ) -> None:
        super().__init__(account=account, time_scale=time_scale, allow_unknown_methods=allow_unknown_methods)
        self.threads = threads
        self.latency_s = latency_s
        self._ids = itertools.count(1_000_000_001)
        self._last_id = 1_000_000_000

    def poll_schedule(
        self, method: str | None, params: Mapping[str, ParamValue] | None = None
    ) -> tuple[float, float]:
        return 0.0, 0.0

    async def _submit(self, spec: MethodSpec, params: dict[str, ParamValue]) -> str:
        await asyncio.sleep(self.latency_s)
        self._last_id = next(self._ids)
        return str(self._last_id)

    async def _poll(self, remote_id: str, spec: MethodSpec) -> Solution | None:
        await asyncio.sleep(self.latency_s)
        return self._answer(remote_id, spec)

    async def _poll_many(self, items: Sequence[tuple[str, MethodSpec]]) -> dict[str, PollOutcome]:
        await asyncio.sleep(self.latency_s)
        outcomes: dict[str, PollOutcome] = {}
        for remote_id, spec in items:
            try:
                outcomes[remote_id] = self._answer(remote_id, spec)
            except SolverError as exc:
                outcomes[remote_id] = exc
        return outcomes

    async def _report(self, remote_id: str, correct: bool) -> None:
        return None

    async def _account_info(self) -> AccountInfo:
        return AccountInfo(threads=self.threads, working_threads=0)

    def _answer(self, remote_id: str, spec: MethodSpec) -> Solution:
        if not remote_id.isdigit():
            raise error_for("ERROR_WRONG_ID_FORMAT", remote_id[:40])
        if not 1_000_000_000 < int(remote_id) <= self._last_id:
            raise error_for("ERROR_WRONG_CAPTCHA_ID", remote_id)
        user_agent = _USER_AGENT if spec.returns_user_agent else None
        data = _JSON_ANSWERS.get(spec.name)
        if data is not None:
            return Solution(text=json.dumps(data, separators=(",", ":")), data=data)
        text = f"instant-{remote_id}" if spec.answer_kind != "text" else f"t{remote_id[-5:]}"
        return Solution(text=text, user_agent=user_agent)
