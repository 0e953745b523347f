"""WebhookSettings: how a deliverer sends, retries and gives up, each setting declared once."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgument
from ..options import check_settings, setting

__all__ = ["WebhookSettings"]


@dataclass(frozen=True)
class WebhookSettings:
    """The settings of one ``WebhookDeliverer`` (``captcha-queue webhooks run`` takes each as a flag and
    an environment variable; the secret only from the environment or a file)."""

    secret: str | None = setting(
        None,
        help="Key of the HMAC-SHA256 signature of every delivery (X-Captcha-Queue-Signature); without "
        "one deliveries are sent unsigned (a warning is logged).",
        env="CAPTCHA_QUEUE_WEBHOOK_SECRET",
        secret=True,
    )
    allow_private_targets: bool = setting(
        False,
        help="Deliver to private, loopback, link-local, multicast and reserved addresses (refused by "
        "default, checked on every address a host resolves to at each send: SSRF, DNS rebinding).",
    )
    concurrency: int = setting(16, help="Deliveries sent at once by this process.", unit="requests", min=1)
    timeout_s: float = setting(
        10.0, help="Limit of one send: connect, request and answer.", unit="s", min=0.0, min_open=True
    )
    lease_s: float = setting(
        30.0,
        help="How long a claimed delivery is this process's; if it dies, another deliverer sends the "
        "delivery after this (must exceed timeout_s).",
        unit="s",
        min=0.0,
        min_open=True,
    )
    max_age_s: float = setting(
        86400.0,
        help="A delivery not accepted (2xx) within this of the task's end is given up: failed.",
        unit="s",
        min=0.0,
        min_open=True,
    )
    backoff_s: float = setting(
        1.0,
        help="Wait before the first retry; doubled after each failed send (with jitter), up to "
        "backoff_max_s.",
        unit="s",
        min=0.0,
        min_open=True,
    )
    backoff_max_s: float = setting(
        600.0, help="The longest wait between two sends.", unit="s", min=0.0, min_open=True
    )
    keep_s: float = setting(
        7 * 86400.0,
        help="How long delivered and failed deliveries stay visible (captcha-queue webhooks list).",
        unit="s",
        min=0.0,
        min_open=True,
    )
    poll_s: float = setting(
        0.5, help="How often due deliveries are looked for while idle.", unit="s", min=0.0, min_open=True
    )

    def __post_init__(self) -> None:
        check_settings(self)  # InvalidArgument (a ValueError) naming the field
        if self.lease_s <= self.timeout_s:
            raise InvalidArgument(
                f"lease_s ({self.lease_s:g}) must exceed timeout_s ({self.timeout_s:g}): a send still "
                "running when its lease lapses would be sent again by another deliverer",
                field="lease_s",
            )
        if self.backoff_max_s < self.backoff_s:
            raise InvalidArgument(
                f"backoff_max_s ({self.backoff_max_s:g}) must be at least backoff_s ({self.backoff_s:g})",
                field="backoff_max_s",
            )
        if self.secret is not None and not self.secret:
            raise InvalidArgument(
                "secret must not be empty (leave it unset to send unsigned)", field="secret"
            )
