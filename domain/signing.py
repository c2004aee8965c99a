"""Signed, expiring URLs for media the api serves itself: HMAC-SHA256 over method, media id, variant and expiry.

The key is derived from JWT_SECRET for this use only (``domain.tokens.derive_key``), so every api process checks
what any other signed, and a leaked media URL grants nothing but that one object until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import time


class UrlSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, method: str, media_id: int, variant: str, expires: int) -> str:
        message = f"{method}\n{media_id}\n{variant}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def check(self, method: str, media_id: int, variant: str, expires: str | None, signature: str | None) -> str | None:
        """None when the signature is good and unexpired, else why not: ``missing``, ``invalid`` or ``expired``."""
        if not expires or not signature:
            return "missing"
        if not expires.isdigit() or len(expires) > 12 or len(signature) != 64:
            return "invalid"
        good = self.sign(method, media_id, variant, int(expires))
        if not hmac.compare_digest(good, signature.lower()):
            return "invalid"
        if int(expires) < time.time():
            return "expired"
        return None
