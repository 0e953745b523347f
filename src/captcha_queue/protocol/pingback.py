"""Pingback targets: where a task's result may be delivered when it is final. Pure, no I/O.

A target is checked when the task is submitted (``check_pingback``, by the producer) and again by the
deliverer before each send, which also checks every address the host name resolves to
(``refused_address``): a name may point at another address by then (DNS rebinding). Refused unless
``allow_private`` (tests, a receiver on the same network): addresses that are not globally routable
(private, loopback, link-local such as 169.254.169.254, multicast, reserved, unspecified, shared
address space), schemes other than http and https, credentials in the URL, and control characters.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final
from urllib.parse import urlsplit

from ..errors import InvalidTask

__all__ = [
    "MAX_PINGBACK_CHARS",
    "PINGBACK_FORMATS",
    "check_pingback",
    "check_pingback_format",
    "literal_address",
    "refused_address",
]

#: The longest target accepted (browsers and servers commonly accept 2,048 characters of URL).
MAX_PINGBACK_CHARS: Final = 2048
#: How a result is sent: "form" POSTs form fields (2captcha's pingback: id, code), "get" sends them as
#: query parameters (CaptchaAI's pingback), "json" POSTs a JSON document with the whole Result,
#: "jsonapi" POSTs the JSON API's getTaskResult document plus ``taskId`` (Anti-Captcha's callbackUrl).
PINGBACK_FORMATS: Final = ("form", "get", "json", "jsonapi")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _refuse(why: str) -> InvalidTask:
    return InvalidTask(f"pingback {why}", field="pingback")


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, or None for a name. Legacy IPv4 spellings that resolvers read as
    addresses (``127.1``, ``0x7f.0.0.1``, ``2130706433``) count as addresses."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def refused_address(address: IPAddress) -> str | None:
    """Why a pingback may not go to ``address`` (unless private targets are allowed), or None."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    kinds = (
        ("loopback", address.is_loopback),
        ("private", address.is_private),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
    )
    for kind, matches in kinds:
        if matches:
            return f"{address} is a {kind} address"
    if not address.is_global:
        return f"{address} is not a globally routable address"
    return None


def check_pingback(url: object, *, allow_private: bool = False) -> str:
    """``url`` if it may receive pingbacks, else InvalidTask (field ``pingback``) saying why. Host
    names are not resolved here (the deliverer checks what they resolve to, at each send)."""
    if not isinstance(url, str) or not url:
        raise _refuse("must be a non-empty string (an http or https URL)")
    if len(url) > MAX_PINGBACK_CHARS:
        raise _refuse(f"is {len(url)} characters long, over the limit of {MAX_PINGBACK_CHARS}")
    if not url.isascii() or any(ch <= " " or ch == "\x7f" for ch in url):
        raise _refuse("must be ASCII without spaces or control characters (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _refuse(f"must be an http or https URL, not {parts.scheme or 'one without a scheme'}")
    if "@" in parts.netloc:
        raise _refuse("must not carry credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise _refuse("has no host")
    if port == 0:
        raise _refuse("has port 0")
    address = literal_address(host)
    if address is not None and not allow_private:
        why = refused_address(address)
        if why is not None:
            raise _refuse(f"refused: {why} (allow_private_targets is off)")
    return url


def check_pingback_format(value: object) -> str:
    """``value`` if it names a pingback format, else InvalidTask (field ``pingback_format``)."""
    if not isinstance(value, str) or value not in PINGBACK_FORMATS:
        raise InvalidTask(
            f"pingback_format must be one of {', '.join(PINGBACK_FORMATS)}, got {value!r}",
            field="pingback_format",
        )
    return value
