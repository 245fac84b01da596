"""Where the bytes go: local disk, or any S3-compatible bucket (AWS S3, Cloudflare R2).

The interface is in `base`, one implementation per module (`local`, `s3`); this
package re-exports them and picks one from the settings.
"""

from __future__ import annotations

from tenantry.settings import Settings
from tenantry.storage.backends.base import (
    READ_CHUNK,
    Capabilities,
    StorageBackend,
    StorageBackendError,
    StorageUnavailable,
)
from tenantry.storage.backends.local import LocalBackend
from tenantry.storage.backends.s3 import PART_CONCURRENCY, PART_SIZE, S3Backend, S3Config
from tenantry.storage.signing import UrlSigner

__all__ = [
    "PART_CONCURRENCY",
    "PART_SIZE",
    "READ_CHUNK",
    "Capabilities",
    "LocalBackend",
    "S3Backend",
    "S3Config",
    "StorageBackend",
    "StorageBackendError",
    "StorageUnavailable",
    "backend_from_settings",
]


def backend_from_settings(settings: Settings, signer: UrlSigner, provider: str) -> StorageBackend:
    """The backend for `provider` as configured: local disk, or the configured bucket."""
    if provider == "local":
        return LocalBackend(settings.upload_dir, signer, settings.storage_local_url)
    if provider != settings.storage_provider:
        raise StorageUnavailable(
            f"files stored with provider {provider!r} cannot be reached: "
            f"STORAGE_PROVIDER is {settings.storage_provider!r}",
            details={"provider": provider},
        )
    return S3Backend(S3Config.from_settings(settings))
