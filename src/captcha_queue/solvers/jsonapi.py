"""JsonApiSolver: the ``createTask`` / ``getTaskResult`` client (aiohttp) of CapSolver, Anti-Captcha and
2captcha's API v2, as a :class:`Solver`.

``submit`` is ``createTask`` (the remote id is the ``taskId``), ``poll`` is ``getTaskResult``
(``processing`` / ``idle``: not ready), ``account_info`` is ``getBalance`` plus the configured thread
limit (these services have no ``threadsinfo``), ``report`` is the service's report or feedback method.
So the worker drives it exactly as the in.php client: the same fleet limiter, breaker, resume of a
remote id after a reclaim, and polling scheduler.

Like the in.php client: every request is a POST with a timeout, the key travels in the JSON body and is
redacted from every message, aiohttp errors are translated here (``TIMEOUT``, ``CONNECTION_ERROR``...),
and nothing is retried inside the client (the worker decides from the error class).

Image tasks on CapSolver answer in ``createTask`` itself (``status: ready``): the solution is kept in
memory and the first poll answers it without a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NoReturn

import aiohttp
from yarl import URL

from ..errors import AccountError, ConfigError, InvalidTask
from ..models import AccountInfo, Solution
from ..protocol.methods import MethodSpec, ParamValue
from ..protocol.tasktypes import build_task, read_solution, task_type_for
from .base import Solver, key_fingerprint
from .codes import error_for
from .http import Redactor
from .profiles import ProviderProfile, profile_for

__all__ = ["JsonApiSolver"]

log = logging.getLogger("captcha_queue.solvers")

_MAX_BODY_BYTES = 1 << 20
_HTML = re.compile(r"^\s*<", re.DOTALL)
#: Solutions createTask answered at once, kept until polled (bounded: oldest dropped first).
_READY_CACHE = 10_000


class JsonApiSolver(Solver):
    """An account of a JSON-API service (``profile``: ``capsolver``, ``anticaptcha``, ``2captcha-v2``).

    ``thread_limit`` is required (the services tell no thread count): it is the fleet limit a worker
    uses, and what ``account_info`` answers. ``soft_id`` is sent as ``softId`` (Anti-Captcha, 2captcha)
    or ``appId`` (CapSolver) when given.
    """

    kind = "jsonapi"

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        *,
        profile: str | ProviderProfile = "anticaptcha",
        thread_limit: int | None = None,
        account: str = "default",
        request_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 100,
        time_scale: float = 1.0,
        validate_key: bool = True,
        allow_unknown_methods: bool = False,
        soft_id: int | str | None = None,
    ) -> None:
        super().__init__(account=account, time_scale=time_scale, allow_unknown_methods=allow_unknown_methods)
        self.profile = profile_for(profile)
        if self.profile.protocol != "json" or self.profile.task_dialect is None:
            raise ConfigError(f"the {self.profile.name} provider speaks in.php: use CaptchaAISolver")
        self.provider = self.profile.name
        self.requires_limit = True
        self.dialect = self.profile.task_dialect
        self._codes = self.profile.codes
        if thread_limit is None:
            raise ConfigError(
                f"{self.profile.title} tells no thread limit: configure the account's threads "
                "(worker --solver-limit N, or thread_limit=N)"
            )
        if isinstance(thread_limit, bool) or not isinstance(thread_limit, int) or thread_limit < 1:
            raise ConfigError(f"the thread limit must be a whole number >= 1, got {thread_limit!r}")
        self.thread_limit = thread_limit
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigError("the solver API key is empty")
        key = api_key.strip()
        expected = self.profile.key_length
        if validate_key and expected is not None and len(key) != expected:
            raise ConfigError(f"the solver API key must be {expected} characters (this one has {len(key)})")
        self._key = key
        self.key_fingerprint = key_fingerprint(key)
        self._redact = Redactor(key)
        raw_url = base_url or self.profile.base_url or ""
        url = URL(raw_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"the solver base URL must be http(s)://host[:port], got {self._redact(raw_url)!r}"
            )
        if self._redact.leaks(raw_url):
            raise ConfigError("the solver base URL must not contain the API key")
        self.base_url = str(url)
        self._url = url
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, sock_connect=connect_timeout_s)
        self._session_lock = asyncio.Lock()
        self._soft_id = soft_id
        self._ready: OrderedDict[str, Any] = OrderedDict()
        self._variants: OrderedDict[str, str] = OrderedDict()  # remote id -> variant, for reports

    def __repr__(self) -> str:
        return (
            f"<JsonApiSolver provider={self.provider!r} base_url={self.base_url!r} account={self.account!r}>"
        )

    # -- the backend methods ---------------------------------------------------------------------

    async def _submit(self, spec: MethodSpec, params: dict[str, ParamValue]) -> str:
        if task_type_for(self.dialect, spec.name) is None:
            raise error_for("ERROR_TASK_NOT_SUPPORTED", f"no {self.dialect} task type for {spec.name} tasks")
        try:
            task = build_task(self.dialect, spec.name, params)
        except InvalidTask as exc:
            raise error_for("INVALID_TASK", str(exc)) from exc
        body: dict[str, Any] = {"task": task}
        if self._soft_id is not None:
            body["appId" if self.dialect == "capsolver" else "softId"] = self._soft_id
        doc = await self._call("createTask", body)
        task_id = doc.get("taskId")
        if isinstance(task_id, bool) or not isinstance(task_id, int | str) or not str(task_id).strip():
            raise error_for("BAD_RESPONSE", "createTask answered no taskId", time_scale=self.time_scale)
        remote_id = str(task_id).strip()
        if doc.get("status") == "ready" and doc.get("solution"):
            self._remember(self._ready, remote_id, doc["solution"])
        self._remember(self._variants, remote_id, spec.name)
        return remote_id

    async def _poll(self, remote_id: str, spec: MethodSpec) -> Solution | None:
        ready = self._ready.pop(remote_id, None)
        if ready is not None:
            return self._solution(spec, ready)
        doc = await self._call("getTaskResult", {"taskId": self._wire_id(remote_id)})
        status = str(doc.get("status", "")).lower()
        if status in ("processing", "idle", "queued", ""):
            return None
        if status != "ready":
            raise error_for("BAD_RESPONSE", f"getTaskResult answered status {status[:40]!r}")
        return self._solution(spec, doc.get("solution"))

    async def _report(self, remote_id: str, correct: bool) -> None:
        await self._report_spec(remote_id, correct, None)

    async def _report_spec(self, remote_id: str, correct: bool, spec: MethodSpec | None) -> None:
        variant = spec.name if spec is not None and spec.known else self._variants.get(remote_id, "")
        task_id = self._wire_id(remote_id)
        if self.dialect == "capsolver":
            await self._call("feedbackTask", {"taskId": task_id, "result": {"invalid": not correct}})
            return
        if self.dialect == "2captcha":
            await self._call("reportCorrect" if correct else "reportIncorrect", {"taskId": task_id})
            return
        # Anti-Captcha: one method per kind of task.
        if variant.startswith(("image", "coordinates")):
            if correct:
                return  # no "correct" report for image tasks
            method = "reportIncorrectImageCaptcha"
        elif variant == "hcaptcha":
            if correct:
                return
            method = "reportIncorrectHcaptcha"
        else:
            method = "reportCorrectRecaptcha" if correct else "reportIncorrectRecaptcha"
        await self._call(method, {"taskId": task_id})

    async def _account_info(self) -> AccountInfo:
        doc = await self._call("getBalance", {})
        try:
            balance = float(doc.get("balance"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise error_for("BAD_RESPONSE", "getBalance answered no balance") from None
        if balance <= 0:
            raise AccountError("ERROR_ZERO_BALANCE", f"the account has no funds (balance {balance:g})")
        return AccountInfo(threads=self.thread_limit, balance=balance)

    async def _aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _supports(self, spec: MethodSpec) -> bool:
        return self.profile.supports(spec.name.removesuffix("_file"))

    def _poll_times(self, spec: MethodSpec) -> tuple[float, float]:
        interval = self.profile.poll_interval_s
        return spec.first_poll_s, spec.poll_interval_s if interval is None else interval

    # -- helpers ---------------------------------------------------------------------------------

    def _solution(self, spec: MethodSpec, solution: Any) -> Solution:
        """The Solution in a ``solution`` object, in the shape the task type promises (the table of
        ``protocol/tasktypes.py``)."""
        if not isinstance(solution, dict) or not solution:
            raise error_for("BAD_RESPONSE", "the task is ready but its solution is empty")
        task_type = task_type_for(self.dialect, spec.name)
        found = read_solution(task_type, solution)
        if found is None:
            wanted = ", ".join(task_type.answer) if task_type is not None else "an answer"
            raise error_for("BAD_RESPONSE", f"the solution has none of {wanted}")
        return found

    def _wire_id(self, remote_id: str) -> int | str:
        """Anti-Captcha and 2captcha number their tasks (JSON integers); CapSolver's ids are UUIDs."""
        return int(remote_id) if self.dialect != "capsolver" and remote_id.isdigit() else remote_id

    @staticmethod
    def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        while len(cache) > _READY_CACHE:
            cache.popitem(last=False)

    async def _call(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``{base}/{method}`` with the key; the answer's JSON object, or the SolverError it means."""
        status, raw, retry_after_s = await self._post(self._url / method, {"clientKey": self._key, **body})
        text = self._redact(raw.decode("utf-8", errors="replace").strip())
        if status == 429:
            scale = 1.0 if retry_after_s is not None else self.time_scale
            raise error_for("HTTP_429", "HTTP 429", time_scale=scale, retry_after_s=retry_after_s)
        try:
            doc = json.loads(text) if text and not _HTML.match(text) else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            code = (
                f"HTTP_{status}" if status >= 500 else ("HTML_PAGE" if _HTML.match(text) else "BAD_RESPONSE")
            )
            if status != 200 and code == "BAD_RESPONSE":
                code = "HTTP_ERROR"
            raise error_for(
                code, f"HTTP {status}: {' '.join(text.split())[:120]!r}", time_scale=self.time_scale
            )
        error_id = doc.get("errorId", 0)
        if error_id not in (0, "0", None):
            code = str(doc.get("errorCode") or f"ERROR_ID_{error_id}").strip()
            detail = str(doc.get("errorDescription") or "")[:160]
            raise error_for(code, self._redact(detail), time_scale=self.time_scale, codes=self._codes)
        if status >= 400:
            raise error_for(
                f"HTTP_{status}", f"HTTP {status} without an error code", time_scale=self.time_scale
            )
        return doc

    async def _post(self, url: URL, body: Mapping[str, Any]) -> tuple[int, bytes, float | None]:
        session = await self._http()
        try:
            async with session.post(url, json=body, timeout=self._timeout, allow_redirects=False) as resp:
                content = await resp.content.read(_MAX_BODY_BYTES)
                return resp.status, content, _retry_after_s(resp.headers.get("Retry-After"))
        except TimeoutError as exc:
            self._translate(exc, "TIMEOUT", f"no answer from {url.host} within {self._timeout.total} s")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            self._translate(exc, "CONNECTION_ERROR", f"{type(exc).__name__}: {exc}")
        except aiohttp.ClientError as exc:
            self._translate(exc, "HTTP_ERROR", f"{type(exc).__name__}: {exc}")

    def _translate(self, exc: BaseException, code: str, detail: str) -> NoReturn:
        error = error_for(code, self._redact(detail), time_scale=self.time_scale)
        if self._redact.leaks(f"{exc!s} {exc!r}"):
            raise error from None
        raise error from exc

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            async with self._session_lock:
                if self._session is None:
                    connector = aiohttp.TCPConnector(
                        limit=self._max_connections, limit_per_host=self._max_connections
                    )
                    self._session = aiohttp.ClientSession(connector=connector)
        return self._session


def _retry_after_s(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        return None
    return value if value >= 0 else None
