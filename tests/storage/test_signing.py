"""The local URL signer: bound to one key and one expiry, and to this secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from tenantry.errors import Forbidden
from tenantry.storage.signing import UrlSigner

KEY = "companies/acme/docs/0123456789abcdef0123456789abcdef-a.pdf"


def test_a_signature_verifies_only_its_key_expiry_and_secret() -> None:
    signer = UrlSigner("secret")
    signature = signer.signature(KEY, 2_000)
    signer.verify(KEY, "2000", signature, now=1_999)
    for key, expires, secret in (
        (KEY + "x", "2000", "secret"),
        (KEY, "2001", "secret"),
        (KEY, "2000", "another secret"),
    ):
        with pytest.raises(Forbidden):
            UrlSigner(secret).verify(key, expires, signature, now=1_000)


@pytest.mark.parametrize(
    "expires", ["", "-1", "1e9", " 2000", "2000.0", "9" * 13, "\u00b9", "\u0662\u0660"]
)
def test_malformed_expiry_is_forbidden(expires: str) -> None:
    signer = UrlSigner("secret")
    with pytest.raises(Forbidden):
        signer.verify(KEY, expires, signer.signature(KEY, 2_000), now=0)


def test_expiry_is_exclusive() -> None:
    signer = UrlSigner("secret")
    signature = signer.signature(KEY, 2_000)
    with pytest.raises(Forbidden) as raised:
        signer.verify(KEY, "2000", signature, now=2_000)
    assert "expired" in raised.value.message


def test_the_signature_is_unpadded_base64_of_a_key_derived_for_urls() -> None:
    signature = UrlSigner("secret").signature(KEY, 2_000)
    assert "=" not in signature and len(base64.urlsafe_b64decode(signature + "=")) == 32
    # Not an HMAC keyed with the secret itself: that could be replayed as another token.
    plain = hmac.new(b"secret", f"2000\n{KEY}".encode(), hashlib.sha256).digest()
    assert signature != base64.urlsafe_b64encode(plain).rstrip(b"=").decode()
    # And stable: a URL signed before an upgrade (or by another instance) still verifies.
    assert signature == "rBAwVdCplOpiWqxcm2kgWvuVIaqJJ_D7BtFRtkd1G3w"


def test_expiry_has_at_most_twelve_digits() -> None:
    signer = UrlSigner("secret")
    twelve, thirteen = 10**12 - 1, 10**12
    signer.verify(KEY, str(twelve), signer.signature(KEY, twelve), now=0)
    with pytest.raises(Forbidden) as raised:
        signer.verify(KEY, str(thirteen), signer.signature(KEY, thirteen), now=0)
    assert raised.value.details["field"] == "expires"


def test_without_a_time_given_the_clock_decides() -> None:
    signer = UrlSigner("secret")
    later = int(time.time()) + 3_600
    signer.verify(KEY, str(later), signer.signature(KEY, later))
    with pytest.raises(Forbidden) as raised:
        signer.verify(KEY, "1", signer.signature(KEY, 1))
    assert "expired" in raised.value.message
