"""What in.php checks before it accepts a task, and the error code each failed check earns.

Shared by the simulator and the gateway, so both answer a bad submit with the same code. Per-method
required params come from ``methods.py`` (the same table the client validates with); the image checks
follow the spec's section 2.3 simulator defaults (100 B to 1 MiB, jpg/png/gif, 1000 px per side),
read from the caller's configuration (``SubmitLimits``).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .methods import MISSING_PARAM_CODES, WIRE_METHODS, MethodSpec, missing_params, spec_for

__all__ = ["Rejection", "SubmitLimits", "Upload", "check_submit", "decode_image"]


class SubmitLimits(Protocol):
    """What the checks read from the caller's configuration (the simulator's, the gateway's)."""

    @property
    def accept_unknown_methods(self) -> bool: ...
    @property
    def min_image_bytes(self) -> int: ...
    @property
    def max_image_bytes(self) -> int: ...
    @property
    def max_image_px(self) -> int: ...


_EXTENSIONS = ("jpg", "jpeg", "png", "gif")
_PROXY = re.compile(r"^(?:[^:@\s]+:[^@\s]*@)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_PROXY_TYPES = ("HTTP", "HTTPS", "SOCKS4", "SOCKS5")


@dataclass(frozen=True)
class Upload:
    """A multipart file part."""

    filename: str
    content: bytes


@dataclass(frozen=True)
class Rejection:
    code: str
    plain: bool = False  # ERROR_UPLOAD comes back as plain text even with json=1 (spec section 1.3)


def check_submit(
    config: SubmitLimits, wire: str, params: Mapping[str, str], uploads: Mapping[str, Upload]
) -> tuple[MethodSpec | None, Rejection | None]:
    """The variant of an acceptable submit, or the rejection the service would answer."""
    if not wire:
        return None, Rejection("ERROR_BAD_PARAMETERS")
    if wire not in WIRE_METHODS:
        if config.accept_unknown_methods:
            return spec_for(wire, params), None
        return None, Rejection("ERROR_BAD_PARAMETERS")
    present = {**params, **{name: "<file>" for name in uploads}}
    spec = spec_for(wire, present)
    missing = missing_params(spec, present)
    if missing:
        return spec, Rejection(MISSING_PARAM_CODES.get(missing[0], "ERROR_BAD_PARAMETERS"))
    pageurl = params.get("pageurl")
    if pageurl is not None and "pageurl" in spec.params and not pageurl.startswith(("http://", "https://")):
        return spec, Rejection("ERROR_PAGEURL")
    proxy = params.get("proxy")
    if proxy and not _PROXY.match(proxy):
        return spec, Rejection("ERROR_BAD_PROXY")
    proxytype = params.get("proxytype")
    if proxytype and proxytype.upper() not in _PROXY_TYPES:
        return spec, Rejection("ERROR_BAD_PARAMETERS")
    return spec, _check_images(config, spec, params, uploads)


def _check_images(
    config: SubmitLimits, spec: MethodSpec, params: Mapping[str, str], uploads: Mapping[str, Upload]
) -> Rejection | None:
    if spec.file_params:
        upload = uploads.get("file")
        if upload is None:
            return Rejection("ERROR_ZERO_CAPTCHA_FILESIZE")
        extension = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
        if extension not in _EXTENSIONS:
            return Rejection("ERROR_WRONG_FILE_EXTENSION")
        return _check_image(config, upload.content)
    if spec.wire_method == "base64":
        return _check_encoded(config, params["body"])
    if spec.wire_method == "bls":
        for name in [f"image_base64_{n}" for n in range(1, 10)] + ["body"]:
            if params.get(name):
                rejection = _check_encoded(config, params[name], sizes=False)
                if rejection is not None:
                    return rejection
    return None


def decode_image(text: str) -> bytes | None:
    """Raw base64 or a ``data:`` URI; None when it is not valid base64."""
    text = text.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_encoded(config: SubmitLimits, text: str, *, sizes: bool = True) -> Rejection | None:
    content = decode_image(text)
    if content is None:
        return Rejection("ERROR_UPLOAD", plain=True)
    return _check_image(config, content, sizes=sizes)


def _check_image(config: SubmitLimits, content: bytes, *, sizes: bool = True) -> Rejection | None:
    if sizes and len(content) < config.min_image_bytes:
        return Rejection("ERROR_ZERO_CAPTCHA_FILESIZE")
    if sizes and len(content) > config.max_image_bytes:
        return Rejection("ERROR_TOO_BIG_CAPTCHA_FILESIZE")
    dimensions = _dimensions(content)
    if dimensions is None:
        return Rejection("ERROR_IMAGE_TYPE_NOT_SUPPORTED")
    if max(dimensions) > config.max_image_px:
        return Rejection("ERROR_IMAGE_DIMENSIONS_TOO_LARGE")
    return None


def _dimensions(content: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF or JPEG; None when the bytes are none of these."""
    if content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) >= 24:
        width, height = struct.unpack(">II", content[16:24])
        return int(width), int(height)
    if content.startswith((b"GIF87a", b"GIF89a")) and len(content) >= 10:
        width, height = struct.unpack("<HH", content[6:10])
        return int(width), int(height)
    if content.startswith(b"\xff\xd8\xff"):
        return _jpeg_dimensions(content) or (0, 0)
    return None


def _jpeg_dimensions(content: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(content):
        if content[index] != 0xFF:
            return None
        marker = content[index + 1]
        length = struct.unpack(">H", content[index + 2 : index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", content[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None
