"""The dashboard's configuration and the one check of it that runs before anything listens.

Secure by default: it binds 127.0.0.1. Any other address needs a login token (an operator's or a
read-only viewer's) and TLS, or ``insecure_http`` for a deployment that puts a TLS proxy (or a
private container network) in front of it; ``check`` refuses the rest with one readable line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, InvalidArgument
from ..queue._namespaces import namespace_list
from ..store.keys import validate_account
from ..worker.metrics import is_loopback

__all__ = ["DEFAULT_PORT", "MIN_TOKEN_CHARS", "DashboardConfig", "read_token_file"]

DEFAULT_PORT = 8470
#: A login token shorter than this is refused (it would be guessable).
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class DashboardConfig:
    """How one dashboard process serves. Tokens never appear in its repr."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: Logs in with the operator role (every action) / the viewer role (read only).
    operator_token: str | None = field(default=None, repr=False)
    viewer_token: str | None = field(default=None, repr=False)
    #: Without tokens (loopback only): the role every local visitor gets.
    read_only: bool = False
    #: Solver accounts whose slots the capacity screen shows (those the workers register are added).
    accounts: tuple[str, ...] = ("default",)
    #: Seconds between refreshes of the live parts of each screen.
    refresh_s: float = 2.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Serve plain HTTP on a non-loopback address (a TLS proxy in front, or a private network).
    insecure_http: bool = False
    #: Origins accepted for actions besides the page's own (``https://dash.example.com`` behind a proxy).
    allowed_origins: tuple[str, ...] = ()
    #: A session lasts this long after login.
    session_ttl_s: float = 12 * 3600.0
    #: Serve several namespaces (each one's screens under ``/ns/<name>/``, ``/`` the overview across
    #: them); empty: the one namespace given to ``make_app``.
    namespaces: tuple[str, ...] = ()

    @property
    def auth_required(self) -> bool:
        return self.operator_token is not None or self.viewer_token is not None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def check(self) -> DashboardConfig:
        """Refuse a configuration that would serve insecurely or cannot work (ConfigError, one line)."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"dashboard port must be 0-65535, got {self.port}")
        if not math.isfinite(self.refresh_s) or not 0.2 <= self.refresh_s <= 3600:
            raise ConfigError(f"dashboard refresh must be 0.2-3600 s, got {self.refresh_s!r}")
        if not math.isfinite(self.session_ttl_s) or self.session_ttl_s <= 0:
            raise ConfigError("dashboard session lifetime must be above 0 s")
        for name in ("operator_token", "viewer_token"):
            token = getattr(self, name)
            if token is not None and (len(token) < MIN_TOKEN_CHARS or not token.isprintable()):
                raise ConfigError(
                    f"the dashboard's {name.replace('_', ' ')} must be at least {MIN_TOKEN_CHARS} "
                    "printable characters"
                )
        if self.operator_token is not None and self.operator_token == self.viewer_token:
            raise ConfigError("the dashboard's operator and viewer tokens must differ")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("the dashboard needs both --tls-cert and --tls-key, or neither")
        for account in self.accounts:
            try:
                validate_account(account)
            except ValueError as exc:
                raise ConfigError(f"dashboard account: {exc}") from None
        if self.namespaces:
            try:
                names = namespace_list(self.namespaces)
            except InvalidArgument as exc:
                raise ConfigError(f"dashboard namespaces: {exc}") from None
            if len(names) != len(self.namespaces):
                raise ConfigError("dashboard namespaces: each namespace once")
            if any(name in (".", "..") for name in names):
                raise ConfigError("dashboard namespaces: '.' and '..' cannot name a namespace in a URL")
        for origin in self.allowed_origins:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ConfigError(f"an allowed origin is scheme://host[:port], got {origin!r}")
        if not is_loopback(self.host):
            if not self.auth_required:
                raise ConfigError(
                    f"the dashboard would serve {self.host}, which is not loopback, without a login: "
                    "give --operator-token-file and/or --viewer-token-file (or bind 127.0.0.1)"
                )
            if not self.tls and not self.insecure_http:
                raise ConfigError(
                    f"the dashboard would take login tokens on {self.host} in clear text: give "
                    "--tls-cert and --tls-key, or --insecure-http behind a TLS proxy"
                )
        return self

    def replace(self, **changes: object) -> DashboardConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def read_token_file(path: Path) -> str:
    """A login token from a file (never from a command line); ConfigError, one line, if unreadable."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"cannot read the token file {path}: {reason}") from None
    if not token:
        raise ConfigError(f"the token file {path} is empty")
    return token
