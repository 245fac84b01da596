"""Cloudflare R2 configuration (no network): endpoint, region, and what R2 lacks."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tenantry.settings import ConfigError, load_settings
from tenantry.storage.backends import S3Backend, S3Config

R2 = {
    "storage_provider": "cloudflare-r2",
    "cloudflare_account_id": "0123456789abcdef0123456789abcdef",
    "cloudflare_r2_bucket": "tenant-files",
    "cloudflare_r2_access_key_id": "r2-key",
    "cloudflare_r2_secret_access_key": "r2-secret",
}


def test_r2_endpoint_region_and_capabilities(settings_factory: Any) -> None:
    config = S3Config.from_settings(settings_factory(**R2))
    assert config.provider == "cloudflare-r2"
    assert config.endpoint == "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com"
    assert config.region == "auto"
    assert config.bucket == "tenant-files"
    assert config.capabilities.presigned_post is False
    assert config.capabilities.object_acl is False
    assert config.capabilities.public_urls is False


def test_r2_client_is_configured_for_the_account(settings_factory: Any) -> None:
    backend = S3Backend(S3Config.from_settings(settings_factory(**R2)))
    store_config = backend.store.config
    assert store_config["endpoint"] == (
        "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com"
    )
    assert store_config["region"] == "auto"
    assert store_config["bucket"] == "tenant-files"
    # No public object URL without a CDN: R2 objects are private unless a domain serves them.
    assert backend.public_url("companies/a/b/x") is None


async def test_r2_presigned_urls_are_signed_for_region_auto(settings_factory: Any) -> None:
    """Presigning is computed locally: the URL names the account host and region auto."""
    backend = S3Backend(S3Config.from_settings(settings_factory(**R2)))
    url = await backend.signed_url("companies/acme/docs/0123456789abcdef0123456789abcdef-a.pdf", 60)
    parts = urlsplit(url)
    assert parts.scheme == "https"
    assert parts.netloc == "0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com"
    assert parts.path == "/tenant-files/companies/acme/docs/0123456789abcdef0123456789abcdef-a.pdf"
    query = parse_qs(parts.query)
    assert query["X-Amz-Credential"][0].split("/")[2:4] == ["auto", "s3"]
    assert query["X-Amz-Expires"] == ["60"]
    assert "x-amz-acl" not in parts.query.lower()  # R2 has no ACLs: never asked for


def test_aws_config_uses_the_aws_settings(settings_factory: Any) -> None:
    settings = settings_factory(
        storage_provider="s3",
        aws_s3_bucket="b",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        aws_region="eu-west-1",
    )
    backend = S3Backend(S3Config.from_settings(settings))
    assert backend.config.endpoint is None
    assert backend.capabilities.presigned_post is True
    assert (
        backend.public_url("companies/a/b/x y")
        == "https://b.s3.eu-west-1.amazonaws.com/companies/a/b/x%20y"
    )


def test_r2_needs_its_credentials(settings_factory: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(storage_provider="cloudflare-r2", cloudflare_account_id="a")
    assert "CLOUDFLARE_R2_BUCKET" in str(raised.value)
