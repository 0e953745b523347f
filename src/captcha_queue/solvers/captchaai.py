"""CaptchaAISolver: the in.php / res.php client (aiohttp), tolerant of every answer shape the spec records.

* Every request is a POST (form-encoded; multipart when the method uploads a file) with ``json=1`` and a
  timeout. The key travels in the body, never in a URL.
* aiohttp errors are translated here, once, into TransientError (``TIMEOUT``, ``CONNECTION_ERROR``...);
  the API key is redacted from every message, and an exception whose text would show the key is not
  chained (its redacted description is kept instead).
* No retries inside the client: a submit is not idempotent (a timed-out submit may have reached the
  service), so the worker decides, with the error class and ``retry_after_s``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import aiohttp
from yarl import URL

from ..errors import AccountError, ConfigError, SolverBusy, SolverError, TaskRejected
from ..models import AccountInfo, Solution
from ..protocol.methods import MethodSpec, ParamValue
from .base import PollOutcome, Solver, key_fingerprint
from .codes import NOT_READY_CODES, error_for, is_service_code
from .http import (
    Redactor,
    Reply,
    decode_answer,
    parse_balance,
    parse_reply,
    parse_threads,
    raise_for_code,
    task_id_of,
)
from .profiles import ProviderProfile, profile_for

__all__ = ["CaptchaAISolver"]

log = logging.getLogger("captcha_queue.solvers")

DEFAULT_BASE_URL = "https://ocr.captchaai.com"
#: Bodies larger than this are not answers (the service's answers are tokens of a few kB at most).
_MAX_BODY_BYTES = 1 << 20
#: Params the client sends under a second spelling too, because the sources disagree on the wire name.
_ALSO_SEND_AS: Mapping[str, str] = {"regsense": "caseSensitive"}


class CaptchaAISolver(Solver):
    """A CaptchaAI (or any 2captcha-compatible) account behind ``base_url``.

    ``session``: a shared aiohttp session (not closed here); by default the solver makes its own with a
    pool of ``max_connections``. ``batch_polls`` uses the legacy multi-id ``ids=`` poll, which CaptchaAI
    does not document (the simulator supports it); off by default.

    ``profile`` (a name or a ``ProviderProfile`` with protocol ``inphp``: ``captchaai``, ``2captcha``,
    ``generic-inphp``) gives the meaning of each code, the variants the service solves and its
    polling cadence. ``thread_limit``: the account's threads for a service without ``threadsinfo``
    (``account_info`` answers it; such a profile refuses to be built without one).
    """

    kind = "captchaai"

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        *,
        profile: str | ProviderProfile = "captchaai",
        thread_limit: int | None = None,
        account: str = "default",
        request_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 100,
        time_scale: float = 1.0,
        batch_polls: bool = False,
        batch_size: int = 100,
        validate_key: bool = True,
        allow_unknown_methods: bool = False,
    ) -> None:
        super().__init__(account=account, time_scale=time_scale, allow_unknown_methods=allow_unknown_methods)
        self.profile = profile_for(profile)
        if self.profile.protocol != "inphp":
            raise ConfigError(f"the {self.profile.name} provider speaks the JSON API: use JsonApiSolver")
        self.provider = self.profile.name
        self.requires_limit = self.profile.requires_limit
        self._codes = self.profile.codes
        self.thread_limit = _check_limit(self.profile, thread_limit)
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigError("the solver API key is empty")
        key = api_key.strip()
        expected = self.profile.key_length
        if validate_key and expected is not None and len(key) != expected:
            raise ConfigError(f"the solver API key must be {expected} characters (this one has {len(key)})")
        base_url = base_url or self.profile.base_url
        if not base_url:
            raise ConfigError(f"the {self.profile.name} provider needs a base URL (--solver-url)")
        self._key = key
        self.key_fingerprint = key_fingerprint(key)
        self._redact = Redactor(key)
        url = URL(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"the solver base URL must be http(s)://host[:port], got {self._redact(base_url)!r}"
            )
        if self._redact.leaks(base_url):
            raise ConfigError("the solver base URL must not contain the API key")
        self.base_url = str(url)
        self._in_url = url / "in.php"
        self._res_url = url / "res.php"
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, sock_connect=connect_timeout_s)
        self.batch_polls = batch_polls
        self.batch_size = max(1, batch_size)
        self._session_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"<CaptchaAISolver provider={self.provider!r} base_url={self.base_url!r} "
            f"account={self.account!r}>"
        )

    # -- the backend methods ---------------------------------------------------------------------

    async def _submit(self, spec: MethodSpec, params: dict[str, ParamValue]) -> str:
        fields = {"method": spec.wire_method, **params}
        for name, other in _ALSO_SEND_AS.items():
            if name in fields and other not in fields:
                fields[other] = fields[name]
        files = {name: fields.pop(name) for name in spec.file_params if name in fields}
        reply = await self._call(self._in_url, fields, files)
        try:
            return task_id_of(reply, redact=self._redact, time_scale=self.time_scale, codes=self._codes)
        except SolverError as exc:
            if exc.code == "ERROR_ZERO_BALANCE" and not self.profile.bills_per_solve:
                raise await self._diagnose_zero_balance(exc) from None
            raise

    async def _poll(self, remote_id: str, spec: MethodSpec) -> Solution | None:
        reply = await self._call(self._res_url, {"action": "get", "id": remote_id})
        return self._solution(reply, spec)

    async def _poll_many(self, items: Sequence[tuple[str, MethodSpec]]) -> dict[str, PollOutcome]:
        if not self.batch_polls:
            return await self._concurrent_polls(items)
        # Only answers that fit in one line can come back batched; the others are polled one by one.
        single = [(i, s) for i, s in items if s.answer_field == "result" or s.returns_user_agent]
        batched = [(i, s) for i, s in items if not (s.answer_field == "result" or s.returns_user_agent)]
        outcomes: dict[str, PollOutcome] = {}
        for start in range(0, len(batched), self.batch_size):
            chunk = batched[start : start + self.batch_size]
            try:
                outcomes.update(await self._multi_poll(chunk))
            except (AccountError, SolverBusy) as exc:  # about the account, not the request form
                outcomes.update({remote_id: exc for remote_id, _ in chunk})
            except SolverError as exc:
                if isinstance(exc, TaskRejected) and self.batch_polls:
                    self.batch_polls = False  # the service does not know ids=: stop trying
                    log.warning(
                        "the solver service refused a multi-id poll (%s): polling one by one", exc.code
                    )
                single.extend(chunk)
        if single:
            outcomes.update(await self._concurrent_polls(single))
        return outcomes

    async def _report(self, remote_id: str, correct: bool) -> None:
        action = "reportgood" if correct else "reportbad"
        reply = await self._call(self._res_url, {"action": action, "id": remote_id})
        if not reply.ok and reply.code not in ("OK_REPORT_RECORDED",):
            raise_for_code(reply, redact=self._redact, time_scale=self.time_scale, codes=self._codes)

    async def _account_info(self) -> AccountInfo:
        if self.profile.thread_limit == "configured":
            # No threadsinfo: the configured limit, and the balance, which is what pays for solves.
            balance = parse_balance(
                await self._call(self._res_url, {"action": "getbalance"}), codes=self._codes
            )
            if balance <= 0:
                raise AccountError("ERROR_ZERO_BALANCE", f"the account has no funds (balance {balance:g})")
            return AccountInfo(threads=self.thread_limit, balance=balance)
        threads = parse_threads(await self._call(self._res_url, {"action": "threadsinfo"}), codes=self._codes)
        balance_or_none: float | None = None
        try:
            balance_or_none = parse_balance(
                await self._call(self._res_url, {"action": "getbalance"}), codes=self._codes
            )
        except AccountError:
            raise
        except SolverError as exc:  # the balance is informative only (CaptchaAI bills by threads)
            log.debug("getbalance failed: %s", exc)
        return AccountInfo(
            threads=threads.threads, working_threads=threads.working_threads, balance=balance_or_none
        )

    def _supports(self, spec: MethodSpec) -> bool:
        return self.profile.supports(spec.name)

    def _poll_times(self, spec: MethodSpec) -> tuple[float, float]:
        interval = self.profile.poll_interval_s
        return spec.first_poll_s, spec.poll_interval_s if interval is None else interval

    async def _aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    # -- helpers ---------------------------------------------------------------------------------

    async def _concurrent_polls(self, items: Sequence[tuple[str, MethodSpec]]) -> dict[str, PollOutcome]:
        return await Solver._poll_many(self, items)

    async def _multi_poll(self, chunk: Sequence[tuple[str, MethodSpec]]) -> dict[str, PollOutcome]:
        ids = ",".join(remote_id for remote_id, _ in chunk)
        status, body, retry_after_s = await self._post(self._res_url, {"action": "get", "ids": ids})
        text = self._redact(body.decode("utf-8", errors="replace").strip())
        if text.startswith("{") or status != 200:
            reply = parse_reply(
                status, body, redact=self._redact, time_scale=self.time_scale, retry_after_s=retry_after_s
            )
            raise_for_code(reply, redact=self._redact, time_scale=self.time_scale, codes=self._codes)
            if not isinstance(reply.request, str):
                raise error_for("BAD_RESPONSE", "multi-id poll answered no text")
            text = reply.request
        elif is_service_code(text):
            raise error_for(text, time_scale=self.time_scale, codes=self._codes)
        parts = text.split("|")
        if len(parts) != len(chunk):
            raise error_for("BAD_RESPONSE", f"multi-id poll answered {len(parts)} items for {len(chunk)} ids")
        outcomes: dict[str, PollOutcome] = {}
        for (remote_id, spec), part in zip(chunk, parts, strict=True):
            item = part.strip()
            if item in NOT_READY_CODES:
                outcomes[remote_id] = None
            elif is_service_code(item):
                outcomes[remote_id] = error_for(item, time_scale=self.time_scale, codes=self._codes)
            else:
                try:
                    outcomes[remote_id] = decode_answer(spec, Reply(ok=True, request=item, plain=True))
                except SolverError as exc:
                    outcomes[remote_id] = exc
        return outcomes

    def _solution(self, reply: Reply, spec: MethodSpec) -> Solution | None:
        if reply.not_ready:
            return None
        raise_for_code(reply, redact=self._redact, time_scale=self.time_scale, codes=self._codes)
        return decode_answer(spec, reply)

    async def _diagnose_zero_balance(self, busy: SolverError) -> SolverError:
        """ERROR_ZERO_BALANCE is "no free threads" when threads are busy, "no threads" when there are none."""
        try:
            info = parse_threads(
                await self._call(self._res_url, {"action": "threadsinfo"}), codes=self._codes
            )
        except SolverError:
            return busy
        if info.threads is not None and info.threads <= 0:
            return AccountError("ERROR_ZERO_BALANCE", "the account has no threads (start a plan)")
        return busy

    async def _call(
        self, url: URL, fields: Mapping[str, ParamValue], files: Mapping[str, ParamValue] | None = None
    ) -> Reply:
        status, body, retry_after_s = await self._post(url, fields, files)
        return parse_reply(
            status, body, redact=self._redact, time_scale=self.time_scale, retry_after_s=retry_after_s
        )

    async def _post(
        self, url: URL, fields: Mapping[str, ParamValue], files: Mapping[str, ParamValue] | None = None
    ) -> tuple[int, bytes, float | None]:
        session = await self._http()
        data: Any
        if files:
            data = aiohttp.FormData()
            for name, value in {"key": self._key, "json": 1, **fields}.items():
                data.add_field(name, str(value))
            for name, value in files.items():
                content = _file_bytes(value)
                ext, mime = _image_type(content)
                data.add_field(name, content, filename=f"captcha.{ext}", content_type=mime)
        else:
            data = {"key": self._key, "json": "1", **{k: str(v) for k, v in fields.items()}}
        try:
            async with session.post(url, data=data, timeout=self._timeout, allow_redirects=False) as resp:
                body = await resp.content.read(_MAX_BODY_BYTES)
                return resp.status, body, _retry_after_s(resp.headers.get("Retry-After"))
        except TimeoutError as exc:
            self._translate(exc, "TIMEOUT", f"no answer from {url.host} within {self._timeout.total} s")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            self._translate(exc, "CONNECTION_ERROR", f"{type(exc).__name__}: {exc}")
        except aiohttp.ClientError as exc:
            self._translate(exc, "HTTP_ERROR", f"{type(exc).__name__}: {exc}")

    def _translate(self, exc: BaseException, code: str, detail: str) -> NoReturn:
        error = error_for(code, self._redact(detail), time_scale=self.time_scale)
        if self._redact.leaks(f"{exc!s} {exc!r}"):
            raise error from None  # the original would show the key: keep only the redacted text
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


def _check_limit(profile: ProviderProfile, thread_limit: int | None) -> int | None:
    """A configured limit where the profile needs one: ConfigError when it is missing or not >= 1."""
    if thread_limit is not None and (
        isinstance(thread_limit, bool) or not isinstance(thread_limit, int) or thread_limit < 1
    ):
        raise ConfigError(f"the thread limit must be a whole number >= 1, got {thread_limit!r}")
    if profile.requires_limit and thread_limit is None:
        raise ConfigError(
            f"{profile.title} tells no thread limit (no threadsinfo): configure the account's "
            "threads (worker --solver-limit N, or thread_limit=N)"
        )
    return thread_limit


def _file_bytes(value: ParamValue) -> bytes:
    """A ``post`` upload travels in the task as base64 text (tasks are JSON); decode it for the wire."""
    text = str(value).strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise error_for("INVALID_TASK", "the file param is not valid base64") from None


def _image_type(content: bytes) -> tuple[str, str]:
    if content.startswith(b"\xff\xd8\xff"):
        return "jpg", "image/jpeg"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "gif", "image/gif"
    return "png", "image/png"


def _retry_after_s(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        return None  # an HTTP date: rare enough to fall back to the table's wait
    return value if value >= 0 else None
