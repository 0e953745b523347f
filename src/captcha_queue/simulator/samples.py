"""Valid sample tasks for every method: for tests, benchmarks and demos against the simulator.

``sample_params(method)`` returns params the simulator accepts for that method (images are real
PNGs of a few hundred bytes), with an optional ``x_task`` key so ``/stats`` can count submissions
per queue task.
"""

from __future__ import annotations

import base64
import random
import struct
import zlib

from ..protocol.methods import KNOWN_METHODS, ParamValue

__all__ = ["png_base64", "png_bytes", "sample_params"]


def png_bytes(width: int = 40, height: int = 12, *, seed: int = 0) -> bytes:
    """A valid, noisy RGB PNG (noise keeps it above the 100-byte minimum)."""
    rnd = random.Random(seed)
    rows = b"".join(b"\x00" + bytes(rnd.randrange(256) for _ in range(width * 3)) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def png_base64(width: int = 40, height: int = 12, *, seed: int = 0) -> str:
    return base64.b64encode(png_bytes(width, height, seed=seed)).decode()


_PAGE = "https://example.test/login"
_PROXY = {"proxy": "user:pass@127.0.0.1:3128", "proxytype": "HTTP"}


def sample_params(method: str, *, task_key: str | None = None, seed: int = 0) -> dict[str, ParamValue]:
    """Params the simulator accepts for ``method`` (any name in ``KNOWN_METHODS``)."""
    image = png_base64(seed=seed)
    samples: dict[str, dict[str, ParamValue]] = {
        "image": {"body": image, "numeric": 0, "min_len": 4, "max_len": 6},
        "normal": {"body": image},
        "base64": {"body": image, "regsense": 1},
        "post": {"file": image, "lang": "en"},
        "grid": {"body": image, "instructions": "select all cars", "grid_size": "3x3"},
        "bls": {
            **{f"image_base64_{n}": "data:image/png;base64," + image for n in range(1, 10)},
            "instructions": "cars",
        },
        "userrecaptcha": {"googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-", "pageurl": _PAGE},
        "recaptcha_v2": {"googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-", "pageurl": _PAGE},
        "recaptcha_v2_invisible": {"googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-", "pageurl": _PAGE},
        "recaptcha_v2_enterprise": {
            "googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-",
            "pageurl": _PAGE,
            "action": "login",
        },
        "recaptcha_v3": {
            "googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-",
            "pageurl": _PAGE,
            "action": "login",
            "min_score": 0.3,
        },
        "recaptcha_v3_enterprise": {
            "googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-",
            "pageurl": _PAGE,
            "action": "login",
        },
        "turnstile": {"sitekey": "0x4AAAAAAAC3DHQFLr1GavRN", "pageurl": _PAGE, "action": "login"},
        "cloudflare_challenge": {"pageurl": _PAGE, **_PROXY},
        "geetest": {
            "gt": "81388ea1fc187e0c335c0a8907ff2625",
            "challenge": "12345678abc90123d45678ef90123a456b",
            "pageurl": _PAGE,
        },
        "geetest_v3": {
            "gt": "81388ea1fc187e0c335c0a8907ff2625",
            "challenge": "12345678abc90123d45678ef90123a456b",
            "pageurl": _PAGE,
        },
        "geetest_v4": {"captcha_id": "e392e1d7fd421dc63325744d5a2b9c73", "pageurl": _PAGE},
        "captchafox": {
            "sitekey": "sk_11111111111111111111111111111111",
            "pageurl": _PAGE,
            "proxy": _PROXY["proxy"],
        },
        "friendly_captcha": {"sitekey": "FCMST5VUMCBOCGQ9", "pageurl": _PAGE, "version": "v2"},
        "hcaptcha": {"sitekey": "a5f74b19-9e45-40e0-b45d-47ff91b7a6c2", "pageurl": _PAGE},
        "funcaptcha": {"publickey": "69A21A01-CC7B-B9C6-0F9A-E7FA06677FFC", "pageurl": _PAGE},
        "arkose": {"publickey": "69A21A01-CC7B-B9C6-0F9A-E7FA06677FFC", "pageurl": _PAGE},
        "amazon_waf": {
            "sitekey": "AQIDAHjcYu/GjX+QlghicBgQ/7bFaQZ+m5FKCMDnO+vTbNg96AF5H1K/siwSLK7RfstKtN5bAAAAfjB8",
            "iv": "CgAAFDIlckAAAAid",
            "context": "7DhQfG5CmoY90ZdxdHCi8WtJ3z4uyBEtaYQt1ETm",
            "pageurl": _PAGE,
        },
        "aws_waf": {
            "sitekey": "AQIDAHjcYu/GjX+QlghicBgQ/7bFaQZ+m5FKCMDnO+vTbNg96AF5H1K/siwSLK7RfstKtN5bAAAAfjB8",
            "iv": "CgAAFDIlckAAAAid",
            "context": "7DhQfG5CmoY90ZdxdHCi8WtJ3z4uyBEtaYQt1ETm",
            "pageurl": _PAGE,
        },
        "datadome": {
            "captcha_url": "https://geo.captcha-delivery.com/captcha/?initialCid=AHrlqAAAAAMA",
            "pageurl": _PAGE,
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
            **_PROXY,
        },
        "rotatecaptcha": {"body": image, "angle": 40},
        "rotate": {"body": image, "textinstructions": "turn the animal upright"},
        "textcaptcha": {"textcaptcha": "If tomorrow is Saturday, what day is today?"},
        "coordinates": {"body": image, "textinstructions": "click the cars"},
        "lemin": {
            "captcha_id": "CROPPED_3dfdd5c_d1872b526b794d83ba3b365eb15a200b",
            "div_id": "lemin-cropped-captcha",
            "pageurl": _PAGE,
        },
    }
    if method not in samples:
        raise ValueError(f"no sample for {method!r}; known: {', '.join(KNOWN_METHODS)}")
    params = dict(samples[method])
    if task_key is not None:
        params["x_task"] = task_key
    return params
