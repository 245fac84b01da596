"""The local URL signer: bound to one key and one expiry, and to this secret."""

from __future__ import annotations

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
