"""Storage: tenant files on local disk, S3 or Cloudflare R2, with records, stats and migration."""

from tenantry.storage.backends import (
    Capabilities,
    LocalBackend,
    S3Backend,
    S3Config,
    StorageBackend,
    StorageBackendError,
    StorageUnavailable,
)
from tenantry.storage.service import (
    CategoryUsage,
    CompanyStats,
    Download,
    FilePage,
    StorageService,
    StoredFile,
    UploadInterrupted,
)

__all__ = [
    "Capabilities",
    "CategoryUsage",
    "CompanyStats",
    "Download",
    "FilePage",
    "LocalBackend",
    "S3Backend",
    "S3Config",
    "StorageBackend",
    "StorageBackendError",
    "StorageService",
    "StorageUnavailable",
    "StoredFile",
    "UploadInterrupted",
]
