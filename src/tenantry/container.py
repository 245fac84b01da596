"""The services of one running Tenantry, built once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from tenantry.auth import FailedAuthLimiter, KeyStore
from tenantry.db import Database
from tenantry.health import HealthChecks
from tenantry.metrics import Metrics
from tenantry.settings import Settings

if TYPE_CHECKING:
    # Capability service types (imported for annotations only, to keep imports acyclic).
    from tenantry.jobs.service import JobService
    from tenantry.queries.service import QueryOptimizer
    from tenantry.resilience.service import ResilienceService
    from tenantry.storage.service import StorageService


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: Redis | None
    keys: KeyStore
    health: HealthChecks
    metrics: Metrics
    auth_limiter: FailedAuthLimiter
    secret_key: str
    # Each capability's service, attached by build_services() in app.py, e.g.
    # `storage: StorageService = field(init=False)`.
    jobs: JobService = field(init=False)
    queries: QueryOptimizer = field(init=False)
    resilience: ResilienceService = field(init=False)
    storage: StorageService = field(init=False)
