"""What in.php checks before it accepts a task: shared with the gateway, so it lives in ``protocol``."""

from __future__ import annotations

from ..protocol.validation import Rejection, Upload, check_submit, decode_image

__all__ = ["Rejection", "Upload", "check_submit", "decode_image"]
