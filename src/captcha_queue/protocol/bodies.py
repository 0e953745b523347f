"""in.php request bodies other than forms. Pure: no I/O.

2captcha's official Node.js client (``@2captcha/captcha-solver``) POSTs its image methods (imageCaptcha,
coordinates, grid, text, rotate, ...) to in.php as one JSON object (``Content-Type: application/json``)
instead of a form; the service reads it like a form, and so do the simulator and the gateway.
"""

from __future__ import annotations

import json
import math

__all__ = ["json_params"]


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def json_params(raw: bytes) -> dict[str, str]:
    """The params of a JSON object body, valued as a form would carry them: strings as they are,
    numbers as written, true/false as 1/0, objects and lists as compact JSON, null left out. ValueError
    for a body that is not one JSON object (or holds NaN or Infinity)."""
    document = json.loads(raw, parse_constant=_refuse_constant)  # ValueError (or UnicodeDecodeError)
    if not isinstance(document, dict):
        raise ValueError("the body is not a JSON object")
    params: dict[str, str] = {}
    for name, value in document.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params[name] = "1" if value else "0"
        elif isinstance(value, str):
            params[name] = value
        elif isinstance(value, int):
            params[name] = str(value)
        elif isinstance(value, float):
            if not math.isfinite(value):  # 1e999 parses as inf
                raise ValueError(f"{name} is not a finite number")
            params[name] = repr(value)
        else:
            params[name] = json.dumps(value, separators=(",", ":"))
    return params
