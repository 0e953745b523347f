"""Command-line configuration: the environment, overridden by flags, checked once and loudly.

    REDIS_URL                 redis://127.0.0.1:6379/0 when unset (``captcha-queue redis`` prints one;
                              its password is read from its 0600 file, see ``with_local_password``);
                              redis+sentinel:// and redis+cluster:// too (docs/redis.md)
    CAPTCHA_QUEUE_NAMESPACE   captcha
    CAPTCHAAI_URL             https://ocr.captchaai.com (or a compatible service, or the simulator)
    CAPTCHAAI_KEY             no default; only the commands that talk to the solver need it

The API key is kept out of ``repr`` and every message; ``redacted()`` is what may be displayed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, InvalidArgument
from ..store.connection import REDIS_SCHEMES, parse_redis_url
from ..store.keys import validate_namespace
from ..store.server import redact_url, with_local_password

__all__ = [
    "DEFAULT_CAPTCHAAI_URL",
    "DEFAULT_NAMESPACE",
    "DEFAULT_REDIS_URL",
    "ENV_CAPTCHAAI_KEY",
    "ENV_CAPTCHAAI_URL",
    "ENV_NAMESPACE",
    "ENV_REDIS_URL",
    "Settings",
]

ENV_REDIS_URL = "REDIS_URL"
ENV_NAMESPACE = "CAPTCHA_QUEUE_NAMESPACE"
ENV_CAPTCHAAI_URL = "CAPTCHAAI_URL"
ENV_CAPTCHAAI_KEY = "CAPTCHAAI_KEY"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_NAMESPACE = "captcha"
DEFAULT_CAPTCHAAI_URL = "https://ocr.captchaai.com"

_HTTP_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Settings:
    """What a command needs to reach Redis and the solver. Build it with ``Settings.load``."""

    redis_url: str = DEFAULT_REDIS_URL
    namespace: str = DEFAULT_NAMESPACE
    captchaai_url: str = DEFAULT_CAPTCHAAI_URL
    captchaai_key: str | None = field(default=None, repr=False)
    #: The file the Redis password was read from (a private server's), if any.
    redis_password_file: Path | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        redis_url: str | None = None,
        namespace: str | None = None,
        captchaai_url: str | None = None,
        captchaai_key: str | None = None,
    ) -> Settings:
        """Read ``env`` (default: the process environment); a flag given here wins over its variable."""
        source = os.environ if env is None else env

        def pick(flag: str | None, name: str) -> str | None:
            value = flag if flag is not None else source.get(name)
            value = value.strip() if value is not None else None
            return value or None

        url, password_file = with_local_password(
            _check_redis_url(pick(redis_url, ENV_REDIS_URL) or DEFAULT_REDIS_URL), source
        )
        return cls(
            redis_url=url,
            namespace=_check_namespace(pick(namespace, ENV_NAMESPACE) or DEFAULT_NAMESPACE),
            captchaai_url=_check_http_url(pick(captchaai_url, ENV_CAPTCHAAI_URL) or DEFAULT_CAPTCHAAI_URL),
            captchaai_key=_check_key(pick(captchaai_key, ENV_CAPTCHAAI_KEY)),
            redis_password_file=password_file,
        )

    def require_key(self) -> str:
        """The solver API key, or ConfigError when it is not configured."""
        if not self.captchaai_key:
            raise ConfigError(f"{ENV_CAPTCHAAI_KEY} is not set")
        return self.captchaai_key

    def redacted(self) -> dict[str, Any]:
        """The settings as they may be shown: no key, no Redis password."""
        return {
            "redis_url": redact_url(self.redis_url),
            "namespace": self.namespace,
            "captchaai_url": redact_url(self.captchaai_url),
            "captchaai_key": "set" if self.captchaai_key else "not set",
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.redacted().items())
        return f"Settings({shown})"


def _check_redis_url(url: str) -> str:
    scheme = _scheme(url, ENV_REDIS_URL)
    if scheme not in REDIS_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
        raise ConfigError(f"{ENV_REDIS_URL} must start with {schemes}, not {redact_url(url)!r}")
    try:
        parse_redis_url(url)  # Sentinel and Cluster URLs: hosts, service name, durability=
    except ConfigError as exc:
        raise ConfigError(f"{ENV_REDIS_URL}: {exc}") from None
    return url


def _check_http_url(url: str) -> str:
    scheme = _scheme(url, ENV_CAPTCHAAI_URL)
    if scheme not in _HTTP_SCHEMES or not urlsplit(url).hostname:
        raise ConfigError(f"{ENV_CAPTCHAAI_URL} must be an http:// or https:// URL, not {redact_url(url)!r}")
    return url.rstrip("/")


def _scheme(url: str, name: str) -> str:
    try:
        return urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ConfigError(f"{name} is not a URL: {exc}") from None


def _check_namespace(namespace: str) -> str:
    try:
        return validate_namespace(namespace)
    except InvalidArgument as exc:
        raise ConfigError(f"{ENV_NAMESPACE}: {exc}") from None


def _check_key(key: str | None) -> str | None:
    # Never quote the value: a mistyped key is still mostly a key.
    if key is not None and (not key.isascii() or not key.isprintable() or any(c.isspace() for c in key)):
        raise ConfigError(f"{ENV_CAPTCHAAI_KEY} contains whitespace or non-printable characters")
    return key
