"""Webhooks: a task submitted with ``pingback=URL`` gets its result sent there when it is final.

- The queue writes a delivery into a durable outbox in Redis in the transition that writes the
  result (lua/includes/finish.lua); tasks without a pingback write nothing.
- ``WebhookDeliverer`` (``_deliverer``) sends due deliveries: leased (any number of deliverer
  processes), signed (``sign``, ``_send``), retried with backoff until delivered or expired.
  Embed it (``async with``, or ``start``/``stop``) or run ``captcha-queue webhooks run``.
- ``Outbox`` (``_outbox``) reads and moves deliveries (``captcha-queue webhooks list/show/retry``);
  ``WebhookSettings`` (``_settings``) declares every setting once.

See docs/webhooks.md for receiving and verifying deliveries.
"""

from __future__ import annotations

from ._deliverer import WebhookDeliverer
from ._outbox import Delivery, Outbox
from ._send import sign
from ._settings import WebhookSettings

__all__ = ["Delivery", "Outbox", "WebhookDeliverer", "WebhookSettings", "sign"]
