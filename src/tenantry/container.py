"""The services of one running Tenantry: what `tenantry.wiring` builds, complete.

The app keeps it in `app.state.services`, and only the HTTP edge reads it (routes
through `deps.ServicesDep`, the dashboard, the demo data). No service takes it: each
is given what it needs by the wiring.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantry.auth import FailedAuthLimiter, KeyStore
from tenantry.db import Database
from tenantry.health import HealthChecks
from tenantry.jobs.service import JobService
from tenantry.metrics import Metrics
from tenantry.queries.service import QueryOptimizer
from tenantry.redis_clients import AnyRedis
from tenantry.resilience.rollouts import RolloutRunner
from tenantry.resilience.service import ResilienceService
from tenantry.sessions import DashboardSessions
from tenantry.settings import Settings
from tenantry.storage.service import StorageService
from tenantry.tenants.service import TenantService


@dataclass(frozen=True, slots=True)
class Services:
    """The running services of one Tenantry, built by the wiring: `storage`, `jobs`,
    `queries`, `resilience`, `tenants`, and what the HTTP edge needs besides."""

    settings: Settings
    db: Database
    redis: AnyRedis | None
    metrics: Metrics
    health: HealthChecks
    keys: KeyStore
    auth_limiter: FailedAuthLimiter
    sessions: DashboardSessions
    secret_key: str
    queries: QueryOptimizer
    resilience: ResilienceService
    rollouts: RolloutRunner
    storage: StorageService
    jobs: JobService
    tenants: TenantService
