"""How a gateway process runs: ``GatewaySettings``, every option declared once (``captcha_queue.options``):
the ``captcha-queue gateway`` flags, their environment variables and docs/gateway.md's table come from here.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass

from ..errors import InvalidArgument
from ..options import check_settings, setting

__all__ = ["DEFAULT_PORT", "GatewaySettings"]

DEFAULT_PORT = 8780
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_HOST_RE = re.compile(r"[A-Za-z0-9.:_-]{1,253}")


def _check_host(host: str) -> str:
    """An IP address or a host name: no scheme, port, path or blanks."""
    if not isinstance(host, str) or not _HOST_RE.fullmatch(host):
        raise InvalidArgument(f"host {reprlib.repr(host)} must be an IP address or a host name", field="host")
    return host


@dataclass(frozen=True)
class GatewaySettings:
    """One gateway process. Stateless: any number of them may serve the same Redis."""

    host: str = setting(
        "127.0.0.1",
        help="Address to listen on. Any other than loopback without --tls-cert is warned about: "
        "clients send their keys in every request.",
        check=_check_host,
        env="CAPTCHA_QUEUE_GATEWAY_HOST",
    )
    port: int = setting(
        DEFAULT_PORT,
        help="Port to listen on (0: a free one).",
        unit="port",
        min=0,
        max=65535,
        env="CAPTCHA_QUEUE_GATEWAY_PORT",
    )
    tls_cert: str | None = setting(
        None,
        help="PEM certificate chain: serve HTTPS (with --tls-key).",
        default_text="plain HTTP",
        env="CAPTCHA_QUEUE_GATEWAY_TLS_CERT",
    )
    tls_key: str | None = setting(
        None, help="PEM private key of --tls-cert.", default_text="none", env="CAPTCHA_QUEUE_GATEWAY_TLS_KEY"
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        help="Redis URL. Prefer the environment: a password on a command line is visible to every "
        "local user.",
        env="REDIS_URL",
    )
    max_body_bytes: int = setting(
        2 << 20,
        help="Largest request body; a larger one is refused with ERROR_TOO_BIG_CAPTCHA_FILESIZE.",
        unit="bytes",
        min=1024,
        env="CAPTCHA_QUEUE_GATEWAY_MAX_BODY_BYTES",
    )
    max_params: int = setting(
        64,
        help="Most params in one request; more is refused with ERROR_BAD_PARAMETERS.",
        unit="params",
        min=4,
        env="CAPTCHA_QUEUE_GATEWAY_MAX_PARAMS",
    )
    key_cache_s: float = setting(
        5.0,
        help="How long a process keeps a client key it looked up: a revoked key still works this long "
        "on a process that used it just before (0: look up on every request).",
        unit="s",
        min=0.0,
        max=3600.0,
        env="CAPTCHA_QUEUE_GATEWAY_KEY_CACHE_S",
    )
    balance: float = setting(
        100.0,
        help="What getbalance answers while no live worker has read its account's balance (they "
        "report it with their registration; the gateway answers the key's account's, or the sum).",
        unit="units",
        min=0.0,
        env="CAPTCHA_QUEUE_GATEWAY_BALANCE",
    )
    min_image_bytes: int = setting(
        100,
        help="Smallest image accepted (ERROR_ZERO_CAPTCHA_FILESIZE below).",
        unit="bytes",
        min=0,
        env="CAPTCHA_QUEUE_GATEWAY_MIN_IMAGE_BYTES",
    )
    max_image_bytes: int = setting(
        1 << 20,
        help="Largest image accepted (ERROR_TOO_BIG_CAPTCHA_FILESIZE above).",
        unit="bytes",
        min=1,
        env="CAPTCHA_QUEUE_GATEWAY_MAX_IMAGE_BYTES",
    )
    max_image_px: int = setting(
        1000,
        help="Largest image side (ERROR_IMAGE_DIMENSIONS_TOO_LARGE above).",
        unit="px",
        min=1,
        env="CAPTCHA_QUEUE_GATEWAY_MAX_IMAGE_PX",
    )
    accept_unknown_methods: bool = setting(
        False,
        help="Queue methods the method table does not know (as the queue's allow_unknown_methods).",
        env="CAPTCHA_QUEUE_GATEWAY_ACCEPT_UNKNOWN_METHODS",
    )
    webhooks: bool = setting(
        True,
        help="Deliver the pingbacks (in.php pingback, JSON API callbackUrl) of every namespace this gateway "
        "serves: a webhook deliverer per namespace runs in this process (off: `captcha-queue webhooks run` "
        "delivers them; any number of deliverers may run at once).",
        env="CAPTCHA_QUEUE_GATEWAY_WEBHOOKS",
    )
    webhook_secret: str | None = setting(
        None,
        help="Key of the HMAC-SHA256 signature (X-Captcha-Queue-Signature) of the pingbacks this gateway "
        "delivers; the same variable as `captcha-queue webhooks run` reads. Unset: sent unsigned.",
        env="CAPTCHA_QUEUE_WEBHOOK_SECRET",
        secret=True,
        default_text="unsigned",
    )
    pingback_format: str = setting(
        "form",
        help="How an in.php pingback is sent: form (2captcha's: POST id and code as a form) or get "
        "(CaptchaAI's: GET with id and code in the query). A JSON API callbackUrl always gets a POST of "
        "the getTaskResult document plus taskId (Anti-Captcha's).",
        choices=("form", "get"),
        env="CAPTCHA_QUEUE_GATEWAY_PINGBACK_FORMAT",
    )
    allow_private_targets: bool = setting(
        False,
        help="Accept and deliver pingbacks to private, loopback and link-local addresses (refused by "
        "default: SSRF). For receivers on the gateway's own network, and tests.",
        env="CAPTCHA_QUEUE_GATEWAY_ALLOW_PRIVATE_TARGETS",
    )
    redis_max_connections: int = setting(
        64,
        help="Connections to Redis this process may open.",
        unit="connections",
        min=1,
        env="CAPTCHA_QUEUE_GATEWAY_REDIS_MAX_CONNECTIONS",
    )

    def __post_init__(self) -> None:
        check_settings(self)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("--tls-cert and --tls-key go together", field="tls_cert")

    @property
    def loopback(self) -> bool:
        return self.host in _LOOPBACK or self.host.startswith("127.")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"
