"""The gateway: every existing solver client (in.php/res.php or the JSON API, any language) submits to the
queue unchanged, by changing its base URL.

    captcha-queue gateway keys create --namespace captcha      # prints a 32-character client key
    captcha-queue gateway --port 8780                           # serve on 127.0.0.1:8780

Stateless: all state is in Redis, so any number of gateway processes can serve behind a load balancer.
Tasks are submitted through the queue's public API with numeric ids; polls read the results hash.
"""

from __future__ import annotations

from ._app import RunningGateway, insecure_binding, make_app, run_gateway, tls_context
from ._config import DEFAULT_PORT, GatewaySettings
from ._jsonapi import TASK_TYPES
from ._keys import ClientKey, create_key, list_keys, revoke_key

__all__ = [
    "DEFAULT_PORT",
    "TASK_TYPES",
    "ClientKey",
    "GatewaySettings",
    "RunningGateway",
    "create_key",
    "insecure_binding",
    "list_keys",
    "make_app",
    "revoke_key",
    "run_gateway",
    "tls_context",
]
