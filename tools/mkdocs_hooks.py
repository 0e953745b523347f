"""mkdocs hooks: generated reference sections replace their markers at build time, so they never drift.

- ``<!-- cli-reference -->``: every command, option and default, from the click commands.
"""

from __future__ import annotations

from typing import Any

from captcha_queue.cli.reference import render

__all__ = ["on_page_markdown"]

_MARKERS = {"<!-- cli-reference -->": render}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for marker, produce in _MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, produce())
    return markdown
