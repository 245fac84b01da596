"""Signed URLs for files on local disk: an HMAC over the key and the expiry time.

S3 and R2 sign their own URLs (SigV4); local files are served by the app, which
checks these. The HMAC key is derived from `TENANTRY_SECRET_KEY` for this one
purpose, so a signature here can never be replayed as any other token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from tenantry.errors import Forbidden

_PURPOSE = b"tenantry/storage/signed-url/v1"


class UrlSigner:
    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()

    def signature(self, key: str, expires_at: int) -> str:
        message = f"{expires_at}\n{key}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(self, key: str, expires: str, signature: str, now: float | None = None) -> None:
        """Return if `signature` signs `key` until `expires` and that time is ahead; else 403."""
        # ASCII first: "¹".isdigit() is True, and int("¹") raises.
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
            raise Forbidden("invalid signed URL", details={"field": "expires"})
        if len(signature) > 100:
            raise Forbidden("invalid signed URL", details={"field": "signature"})
        expected = self.signature(key, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Forbidden("invalid signed URL", details={"field": "signature"})
        if int(expires) <= (time.time() if now is None else now):
            raise Forbidden("this signed URL has expired", details={"field": "expires"})
