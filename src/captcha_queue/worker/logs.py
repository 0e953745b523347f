"""Worker logging: readable text or one JSON object per line; never the API key.

Records may carry structured fields in ``extra={"fields": {...}}`` (the per-task line does); the text
format appends them as ``key=value``, the JSON format as keys of the object. As a last line of defence,
any configured secret (the solver API key) is replaced by ``***`` wherever it appears in a line.

Task ids, reasons and error messages come from producers, Redis and the solver service, so every
value that goes into a line (each argument of the message, each field) passes through ``_Sanitizer``
first, in both formats: the secret is replaced, control characters are escaped (a newline in an id
cannot forge a line) and the value is cut to ``MAX_VALUE_CHARS`` (a 1 MB id cannot make a 1 MB line).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

__all__ = ["MAX_MESSAGE_CHARS", "MAX_VALUE_CHARS", "JsonFormatter", "TextFormatter", "configure_logging"]

#: The longest an argument of a message or a field value gets in a line (then "...[N chars]").
MAX_VALUE_CHARS = 300
#: The longest a formatted message gets (its arguments already cut).
MAX_MESSAGE_CHARS = 2000
_KEEP = (int, float, bool, type(None))  # formatted by the message itself (%d, %.2f): left as they are


class _Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class _Sanitizer:
    """Makes a record's message and fields safe to write: redacted, escaped, bounded."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._redact = _Redactor(secrets)

    def text(self, value: object, limit: int = MAX_VALUE_CHARS) -> str:
        # Redacted before it is cut: a cut must not leave part of a secret behind.
        text = self._redact(value if isinstance(value, str) else str(value))
        if not text.isprintable():
            text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
        return text if len(text) <= limit else f"{text[:limit]}...[{len(text)} chars]"

    def message(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, Mapping):
            args = {k: self._arg(v) for k, v in args.items()}
        elif args:
            args = tuple(self._arg(a) for a in args)
        msg = str(record.msg)
        if args:
            msg = msg % args
        return self.text(msg, MAX_MESSAGE_CHARS)

    def _arg(self, value: object) -> object:
        return value if isinstance(value, _KEEP) else _SafeArg(value, self)

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields = getattr(record, "fields", None)
        if not isinstance(fields, dict):
            return {}
        return {self.text(k, 64): v if isinstance(v, _KEEP) else self.text(v) for k, v in fields.items()}


class _SafeArg:
    """A message argument that formats (``%s`` or ``%r``) as its sanitized text."""

    __slots__ = ("_clean", "_value")

    def __init__(self, value: object, clean: _Sanitizer) -> None:
        self._value = value
        self._clean = clean

    def __str__(self) -> str:
        return self._clean.text(self._value)

    def __repr__(self) -> str:
        return self._clean.text(repr(self._value))


class TextFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._clean = _Sanitizer(secrets)
        self._redact = self._clean._redact

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = self._clean.message(record)  # what format() set, made safe
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in self._clean.fields(record).items())
        return self._redact(f"{line} {extra}" if extra else line)


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._clean = _Sanitizer(secrets)
        self._redact = self._clean._redact

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self._clean.message(record),
            "pid": record.process,
        }
        doc.update(self._clean.fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return self._redact(msgspec.json.encode(doc, enc_hook=str).decode())


def configure_logging(fmt: str = "text", level: int = logging.INFO, *, secrets: Iterable[str] = ()) -> None:
    """Log to stderr in ``fmt`` ("text" or "json"), replacing any handler set before."""
    handler = logging.StreamHandler(sys.stderr)
    secrets = list(secrets)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty third-party loggers stay at warning.
    for name in ("aiohttp.access", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
