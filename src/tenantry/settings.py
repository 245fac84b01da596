"""Every environment variable Tenantry reads, typed, in one place.

Values come from the environment first, then from a `.env` file in the working
directory. `load_settings()` turns pydantic's validation errors into one
`ConfigError` line per bad variable, naming it and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tenantry.redis_url import ClusterUrl, check_url, is_cluster_url, parse_nodes

StorageProvider = Literal["local", "s3", "cloudflare-r2"]


class ConfigError(Exception):
    """The configuration cannot start the service; the message names the variable."""


class Settings(BaseSettings):
    """Every setting of Tenantry, typed and validated: one field per environment variable
    (or `.env` line). Build it with `load_settings()`, which turns invalid values into one
    `ConfigError`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    # --- service -------------------------------------------------------------
    data_dir: Path = Field(
        Path("./data"),
        validation_alias="TENANTRY_DATA_DIR",
        description="Where the embedded defaults keep their files (SQLite, generated keys).",
    )
    host: str = Field(
        "127.0.0.1",
        validation_alias="TENANTRY_HOST",
        description="Address `tenantry serve` listens on.",
    )
    port: int = Field(
        5000,
        ge=1,
        le=65535,
        validation_alias="TENANTRY_PORT",
        description="Port `tenantry serve` listens on.",
    )
    admin_token: SecretStr | None = Field(
        None,
        validation_alias="TENANTRY_ADMIN_TOKEN",
        description="The admin key (Authorization: Bearer ...); unset: generated once into"
        " TENANTRY_DATA_DIR/admin-token.",
    )
    secret_key: SecretStr | None = Field(
        None,
        validation_alias="TENANTRY_SECRET_KEY",
        description="Signs local signed URLs, dashboard sessions and (unless WEBHOOK_SECRET)"
        " webhooks; unset: generated once into TENANTRY_DATA_DIR/secret-key.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        validation_alias="TENANTRY_LOG_LEVEL",
        description="Lowest level of the log lines written.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        validation_alias="TENANTRY_LOG_FORMAT",
        description="Log lines as text (for people) or json (one object a line, with the company"
        " id).",
    )
    dashboard_sample_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        validation_alias="DASHBOARD_SAMPLE_SECONDS",
        description="How often the admin dashboard samples the figures it charts over time.",
    )
    auth_failures_per_minute: int = Field(
        20,
        ge=0,
        validation_alias="TENANTRY_AUTH_FAILURES_PER_MINUTE",
        description="Failed authentications one client address may make per minute; past it, its"
        " further failures are answered 429 (a valid key is always let through). 0: no limit.",
    )
    metrics_public: bool = Field(
        False,
        validation_alias="TENANTRY_METRICS_PUBLIC",
        description="Serve /metrics without the admin key (for a scraper on a private network).",
    )
    # /ready answers status only without the admin key; true shows every check's details
    # (paths, circuit states, dependency errors) to anyone, for probes on a trusted network.
    ready_details_public: bool = Field(
        False,
        validation_alias="TENANTRY_READY_DETAILS_PUBLIC",
        description="Show /ready's per-check details (paths, circuit states, dependency errors)"
        " without the admin key; otherwise anyone gets the status only.",
    )
    shutdown_timeout_seconds: float = Field(
        45.0,
        gt=0,
        le=3600,
        validation_alias="TENANTRY_SHUTDOWN_TIMEOUT_SECONDS",
        description="The longest a shutdown may take; above JOB_SHUTDOWN_TIMEOUT_SECONDS, so"
        " active jobs get their grace period first.",
    )
    auto_migrate: bool = Field(
        True,
        validation_alias="TENANTRY_AUTO_MIGRATE",
        description="Apply Tenantry's own migrations at start-up (`tenantry db upgrade` does it by"
        " hand).",
    )
    # Requests are bounded before the app reads them (http_limits.py) and connections
    # before they cost anything (server.py); docs/security.md lists every limit.
    max_request_body_bytes: int = Field(
        1024 * 1024,
        ge=0,
        validation_alias="MAX_REQUEST_BODY_BYTES",
        description="Largest request body on every route but uploads (MAX_UPLOAD_BYTES);"
        " larger ones are refused with 413 before they are read.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        validation_alias="TENANTRY_HEADER_TIMEOUT_SECONDS",
        description="Time a client has to send a request's headers (from its first byte, or"
        " from connecting); then the connection is closed.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        validation_alias="TENANTRY_BODY_TIMEOUT_SECONDS",
        description="Longest wait for the next piece of a request body; then 408 and the"
        " request is dropped (a cut-off upload leaves nothing behind).",
    )
    limit_concurrency: int = Field(
        1000,
        ge=1,
        validation_alias="TENANTRY_LIMIT_CONCURRENCY",
        description="Open connections (or running requests) at which new requests are"
        " answered 503 (uvicorn's limit_concurrency).",
    )
    forwarded_allow_ips: str = Field(
        "",
        pattern=r"^[\s\w.:/*,\[\]-]*$",
        validation_alias="FORWARDED_ALLOW_IPS",
        description="Comma-separated proxy addresses (or '*') whose X-Forwarded-For and"
        " X-Forwarded-Proto are trusted; empty: those headers are ignored.",
    )

    # --- database ------------------------------------------------------------
    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="The database, e.g. postgresql://user:password@host:5432/dbname (psycopg 3);"
        " unset: SQLite at TENANTRY_DATA_DIR/tenantry.db.",
    )

    # --- queries (statement metrics, read cache, replicas) ---------------------
    slow_query_ms: float = Field(
        1000.0,
        ge=0,
        validation_alias="SLOW_QUERY_MS",
        description="Statements slower than this (milliseconds) go to the slow-query log with"
        " their plan.",
    )
    database_replica_urls: str | None = Field(
        None,
        validation_alias="DATABASE_REPLICA_URLS",
        description="Comma-separated read replica URLs used by optimized_read (PostgreSQL"
        " streaming replicas of DATABASE_URL).",
    )
    replica_max_lag_ms: float = Field(
        1000.0,
        gt=0,
        le=3_600_000,
        validation_alias="REPLICA_MAX_LAG_MS",
        description="A replica further behind the primary than this (milliseconds) gets no"
        " reads until it catches up.",
    )
    replica_poll_ms: float = Field(
        200.0,
        ge=10,
        le=60_000,
        validation_alias="REPLICA_POLL_MS",
        description="How often each replica's replay position and lag are polled"
        " (milliseconds); reads are routed on the last figures. Below REPLICA_MAX_LAG_MS.",
    )
    query_cache_ttl_seconds: float = Field(
        300.0,
        ge=0,
        validation_alias="QUERY_CACHE_TTL_SECONDS",
        description="Default lifetime of a cached optimized_read value.",
    )
    query_explain_timeout_ms: int = Field(
        5000,
        ge=1,
        le=600_000,
        validation_alias="QUERY_EXPLAIN_TIMEOUT_MS",
        description="Statement and lock timeout of POST /api/query-optimizer/explain"
        " (milliseconds).",
    )
    query_metrics_flush_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        validation_alias="QUERY_METRICS_FLUSH_SECONDS",
        description="How often each process adds its statement figures into Redis (when Redis is"
        " configured).",
    )
    query_advisor_max_mb: float | None = Field(
        None,
        gt=0,
        validation_alias="QUERY_ADVISOR_MAX_MB",
        description="Index advice recommends at most this many MB of new indexes in all"
        " (the route's maxMb overrides it); unset: bounded by count only.",
    )
    # Index advice applied for real (queries/index_apply.py, docs/index-apply.md).
    query_apply_indexes: bool = Field(
        False,
        validation_alias="QUERY_APPLY_INDEXES",
        description="Allow POST /api/query-optimizer/indexes/apply (PostgreSQL only).",
    )
    query_apply_verify_seconds: float = Field(
        3600.0,
        ge=0,
        le=30 * 86400,
        validation_alias="QUERY_APPLY_VERIFY_SECONDS",
        description="How long an applied index serves before its latencies are judged.",
    )
    query_apply_min_calls: int = Field(
        100,
        ge=1,
        validation_alias="QUERY_APPLY_MIN_CALLS",
        description="Calls of the helped statements needed since the build to judge it;"
        " fewer: the verdict waits another QUERY_APPLY_VERIFY_SECONDS.",
    )
    query_apply_min_improvement: float = Field(
        0.1,
        ge=0,
        lt=1,
        validation_alias="QUERY_APPLY_MIN_IMPROVEMENT",
        description="Share of those calls' time the index must save to be kept.",
    )
    query_apply_build_timeout_ms: int = Field(
        0,
        ge=0,
        validation_alias="QUERY_APPLY_BUILD_TIMEOUT_MS",
        description="statement_timeout of a build (0: none).",
    )
    # EXPLAIN ANALYZE runs user-supplied SQL: it runs as a role that can only read the
    # application's tables (queries/explain_role.py, docs/security.md).
    explain_database_url: str | None = Field(
        None,
        validation_alias="EXPLAIN_DATABASE_URL",
        description="A login role of its own for EXPLAIN (a member of EXPLAIN_ROLE); unset:"
        " the service's connection, entering EXPLAIN_ROLE with SET LOCAL ROLE.",
    )
    explain_role: str = Field(
        "tenantry_explain",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        validation_alias="EXPLAIN_ROLE",
        description="The NOLOGIN role `tenantry db upgrade` creates for EXPLAIN.",
    )
    explain_schemas: str = Field(
        "public",
        pattern=r"^\s*[A-Za-z_][\w$]*\s*(,\s*[A-Za-z_][\w$]*\s*)*$",
        validation_alias="EXPLAIN_SCHEMAS",
        description="Comma-separated schemas whose tables EXPLAIN may read (not Tenantry's).",
    )
    explain_allowed_functions: str = Field(
        "",
        pattern=r"^(\s*[A-Za-z_][\w$]*\.[A-Za-z_][\w$]*\s*(,|$))*$",
        validation_alias="EXPLAIN_ALLOWED_FUNCTIONS",
        description="Comma-separated schema.function names outside pg_catalog that EXPLAIN"
        " may call, e.g. public.unaccent.",
    )

    # --- redis ---------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        validation_alias="REDIS_URL",
        description="Redis for the cache, flags, breakers and durable jobs: redis://, rediss://"
        " (TLS) or redis+cluster://host:port,... ; unset (and no REDIS_HOST or"
        " REDIS_CLUSTER_NODES): in-process equivalents.",
    )
    redis_host: str | None = Field(
        None,
        validation_alias="REDIS_HOST",
        description="Redis server host, used only when REDIS_URL is unset.",
    )
    redis_port: int = Field(
        6379,
        ge=1,
        le=65535,
        validation_alias="REDIS_PORT",
        description="Redis server port, with REDIS_HOST.",
    )
    redis_password: SecretStr | None = Field(
        None,
        validation_alias="REDIS_PASSWORD",
        description="Redis password, with REDIS_HOST or REDIS_CLUSTER_NODES.",
    )
    redis_cluster_nodes: str | None = Field(
        None,
        validation_alias="REDIS_CLUSTER_NODES",
        description="Comma-separated host:port of Redis Cluster nodes (any few of them):"
        " a cluster instead of one server; the same as REDIS_URL=redis+cluster://<nodes>.",
    )

    # --- tenants (plans, limits, quotas) -------------------------------------
    default_plan: str = Field(
        "free",
        validation_alias="TENANTRY_DEFAULT_PLAN",
        description="The plan of a company that has none set.",
    )
    plans: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        validation_alias="TENANTRY_PLANS",
        description='JSON, e.g. {"free": {"limits": {"storageBytes": 1073741824}, '
        '"queueWeight": 1}}: added to (or replacing) the built-in free, pro and enterprise.',
    )
    tenant_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=3600,
        validation_alias="TENANTRY_TENANT_CACHE_SECONDS",
        description="How long a process keeps a company's limits before reading them again.",
    )
    usage_retention_hours: int = Field(
        720,
        ge=24,
        le=24 * 3660,
        validation_alias="TENANTRY_USAGE_RETENTION_HOURS",
        description="How long usage per company per hour (API requests, jobs, query time) is kept.",
    )
    metrics_top_companies: int = Field(
        20,
        ge=0,
        le=1000,
        validation_alias="TENANTRY_METRICS_TOP_COMPANIES",
        description="Per-company usage on /metrics: the top N companies, the rest summed as"
        ' company="other".',
    )
    usage_flush_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        validation_alias="TENANTRY_USAGE_FLUSH_SECONDS",
        description="How often each process adds the usage it counted to the shared hourly"
        " figures.",
    )

    # --- resilience (circuit breakers, feature flags) ------------------------
    circuit_breakers: dict[str, dict[str, int | float | None]] = Field(
        default_factory=dict,
        validation_alias="CIRCUIT_BREAKERS",
        description='JSON per circuit, e.g. {"database": {"timeout": 30000, "callTimeout": 5000}}.',
    )
    flags_refresh_seconds: float = Field(
        30.0,
        gt=0,
        le=86400,
        validation_alias="FLAGS_REFRESH_SECONDS",
        description="How often every process reloads feature flags from the database; a backstop"
        " for Redis, and the only propagation without it.",
    )
    resilience_redis_sync: bool = Field(
        True,
        validation_alias="RESILIENCE_REDIS_SYNC",
        description="Share breaker states and flag changes between processes through Redis (when"
        " configured).",
    )
    flags_environment: str = Field(
        "default",
        max_length=100,
        validation_alias="FLAGS_ENVIRONMENT",
        description="The `environment` of the evaluation contexts feature_gate builds from a"
        " request.",
    )  # the `environment` of the contexts feature_gate builds
    flags_app_name: str = Field(
        "tenantry",
        max_length=100,
        validation_alias="FLAGS_APP_NAME",
        description="The `appName` of the evaluation contexts feature_gate builds from a request.",
    )
    flag_usage_flush_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        validation_alias="TENANTRY_FLAG_USAGE_FLUSH_SECONDS",
        description="How often every process adds its flag evaluation counts to the shared ones.",
    )
    flag_usage_retention_days: int = Field(
        30,
        ge=1,
        le=3660,
        validation_alias="TENANTRY_FLAG_USAGE_RETENTION_DAYS",
        description="How many days the hourly flag usage figures are kept.",
    )
    flag_stale_days: int = Field(
        30,
        ge=1,
        le=3650,
        validation_alias="TENANTRY_FLAG_STALE_DAYS",
        description="The stale-flag report's N days, unless a request names its own.",
    )
    rollout_tick_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        validation_alias="TENANTRY_ROLLOUT_TICK_SECONDS",
        description="How often every process moves rollout plans and makes scheduled changes.",
    )

    # --- jobs ----------------------------------------------------------------
    enable_job_queues: bool = Field(
        True,
        validation_alias="ENABLE_JOB_QUEUES",
        description="Run background jobs on BullMQ when Redis is configured; false (or no Redis):"
        " the in-process backend runs them.",
    )
    job_concurrency_email: int = Field(
        10,
        ge=1,
        le=1000,
        validation_alias="JOB_CONCURRENCY_EMAIL",
        description="Jobs of the email queue one worker process runs at once.",
    )
    job_concurrency_report: int = Field(
        2,
        ge=1,
        le=1000,
        validation_alias="JOB_CONCURRENCY_REPORT",
        description="Jobs of the report queue one worker process runs at once.",
    )
    job_concurrency_ai_processing: int = Field(
        3,
        ge=1,
        le=1000,
        validation_alias="JOB_CONCURRENCY_AI_PROCESSING",
        description="Jobs of the ai-processing queue one worker process runs at once.",
    )
    job_concurrency_export: int = Field(
        5,
        ge=1,
        le=1000,
        validation_alias="JOB_CONCURRENCY_EXPORT",
        description="Jobs of the export queue one worker process runs at once.",
    )
    job_concurrency_notification: int = Field(
        20,
        ge=1,
        le=1000,
        validation_alias="JOB_CONCURRENCY_NOTIFICATION",
        description="Jobs of the notification queue one worker process runs at once.",
    )
    job_concurrency_cleanup: int = Field(
        1,
        ge=1,
        le=1000,
        validation_alias="JOB_CONCURRENCY_CLEANUP",
        description="Jobs of the cleanup queue one worker process runs at once.",
    )
    job_attempts: int = Field(
        3,
        ge=1,
        le=100,
        validation_alias="JOB_ATTEMPTS",
        description="Attempts per job before it fails.",
    )
    job_backoff_ms: int = Field(
        1000,
        ge=0,
        validation_alias="JOB_BACKOFF_MS",
        description="The first retry delay (milliseconds), doubled on each retry.",
    )
    job_keep_completed: int = Field(
        1000,
        ge=0,
        validation_alias="JOB_KEEP_COMPLETED",
        description="Completed jobs kept per queue, at most.",
    )
    job_keep_completed_seconds: int = Field(
        86400,
        ge=0,
        validation_alias="JOB_KEEP_COMPLETED_SECONDS",
        description="Completed jobs are kept no longer than this.",
    )
    job_keep_failed: int = Field(
        5000,
        ge=0,
        validation_alias="JOB_KEEP_FAILED",
        description="Failed jobs kept per queue, at most.",
    )
    job_keep_failed_seconds: int = Field(
        604800,
        ge=0,
        validation_alias="JOB_KEEP_FAILED_SECONDS",
        description="Failed jobs are kept no longer than this.",
    )
    job_max_data_bytes: int = Field(
        65536,
        ge=256,
        validation_alias="JOB_MAX_DATA_BYTES",
        description="Largest job data accepted (JSON bytes); larger is refused with 413.",
    )
    job_prefix: str = Field(
        "bull",
        min_length=1,
        validation_alias="JOB_PREFIX",
        description="Redis key prefix of the queues (Node BullMQ and Bull Board use bull by"
        " default).",
    )
    job_lock_duration_ms: int = Field(
        30000,
        ge=200,
        validation_alias="JOB_LOCK_DURATION_MS",
        description="A job whose worker stops renewing its lock for this long (milliseconds) is"
        " stalled and runs again.",
    )
    job_stalled_interval_ms: int = Field(
        30000,
        ge=200,
        validation_alias="JOB_STALLED_INTERVAL_MS",
        description="How often (milliseconds) workers look for stalled jobs (BullMQ's"
        " stalledInterval).",
    )
    job_max_stalled_count: int = Field(
        1,
        ge=0,
        le=100,
        validation_alias="JOB_MAX_STALLED_COUNT",
        description="How many times a stalled job (its worker died) is put back before it fails as"
        " stalled (BullMQ's maxStalledCount).",
    )
    job_shutdown_timeout_seconds: float = Field(
        30.0,
        ge=0,
        validation_alias="JOB_SHUTDOWN_TIMEOUT_SECONDS",
        description="On SIGTERM a worker lets active jobs finish for up to this long, then exits.",
    )
    job_workers_in_app: bool = Field(
        False,
        validation_alias="JOB_WORKERS_IN_APP",
        description="Also run the job workers inside `tenantry serve` (with Redis; without it they"
        " always run there).",
    )
    # Fair scheduling across companies (jobs/fairness.py); false: plain BullMQ FIFO.
    job_fair_scheduling: bool = Field(
        True,
        validation_alias="JOB_FAIR_SCHEDULING",
        description="Share each queue round robin between companies, within their limits; false:"
        " plain BullMQ FIFO.",
    )
    job_fair_dispatch_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        validation_alias="JOB_FAIR_DISPATCH_SECONDS",
        description="How often the fair dispatcher tops up BullMQ's wait list from the companies'"
        " staging lists (it also runs on enqueue and as jobs finish).",
    )
    job_fair_wait_depth: int = Field(
        0,
        ge=0,
        le=10000,
        validation_alias="JOB_FAIR_WAIT_DEPTH",
        description="Jobs kept in BullMQ's wait list per queue; 0: twice the queue's concurrency.",
    )
    job_limits_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=3600,
        validation_alias="JOB_LIMITS_CACHE_SECONDS",
        description="How long a process keeps a company's queue limits before asking its plan"
        " again.",
    )
    job_outbox_relay_seconds: float = Field(
        1.0,
        gt=0,
        le=3600,
        validation_alias="JOB_OUTBOX_RELAY_SECONDS",
        description="How often jobs kept in the database outbox (enqueued while Redis was"
        " unreachable) are handed to Redis.",
    )
    job_handler_modules: str = Field(
        "",
        validation_alias="JOB_HANDLER_MODULES",
        description="Comma-separated modules imported at start so their @job_handler register.",
    )
    job_cleanup_cron: str = Field(
        "0 3 * * *",
        validation_alias="JOB_CLEANUP_CRON",
        description="When the cleanup job runs (cron, UTC), registered under one id at start-up;"
        " empty: never on its own.",
    )
    job_temp_dir: Path | None = Field(
        None,
        validation_alias="JOB_TEMP_DIR",
        description="Temporary files the cleanup queue deletes once older than"
        " JOB_TEMP_MAX_AGE_SECONDS; unset: TENANTRY_DATA_DIR/tmp.",
    )
    job_temp_max_age_seconds: int = Field(
        86400,
        ge=0,
        validation_alias="JOB_TEMP_MAX_AGE_SECONDS",
        description="Age at which the cleanup queue deletes temporary files.",
    )
    job_export_url_expires_seconds: int = Field(
        86400,
        ge=1,
        validation_alias="JOB_EXPORT_URL_EXPIRES_SECONDS",
        description="Lifetime of the signed URL an export or report job returns.",
    )
    smtp_host: str | None = Field(
        None,
        validation_alias="SMTP_HOST",
        description="The SMTP server the email queue sends through.",
    )
    smtp_port: int = Field(
        587, ge=1, le=65535, validation_alias="SMTP_PORT", description="The SMTP server's port."
    )
    smtp_username: str | None = Field(
        None, validation_alias="SMTP_USERNAME", description="SMTP login name; unset: no login."
    )
    smtp_password: SecretStr | None = Field(
        None, validation_alias="SMTP_PASSWORD", description="SMTP password."
    )
    smtp_from: str = Field(
        "tenantry@localhost",
        validation_alias="SMTP_FROM",
        description="The sender address of the email queue's mail.",
    )
    smtp_starttls: bool = Field(
        True,
        validation_alias="SMTP_STARTTLS",
        description="Upgrade the SMTP connection with STARTTLS.",
    )
    smtp_timeout_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias="SMTP_TIMEOUT_SECONDS",
        description="Timeout of the SMTP connection and each command.",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        validation_alias="WEBHOOK_SECRET",
        description="HMAC-SHA256 secret the notification queue signs webhooks with; unset:"
        " TENANTRY_SECRET_KEY.",
    )
    webhook_timeout_seconds: float = Field(
        10.0,
        gt=0,
        validation_alias="WEBHOOK_TIMEOUT_SECONDS",
        description="Timeout of one webhook delivery.",
    )

    # --- storage -------------------------------------------------------------
    storage_provider: StorageProvider = Field(
        "local",
        validation_alias="STORAGE_PROVIDER",
        description="Where files live: local disk, AWS S3 (or an S3-compatible server) or"
        " Cloudflare R2.",
    )
    upload_dir: Path = Field(
        Path("./uploads"),
        validation_alias="UPLOAD_DIR",
        description="The folder that holds the files of the local provider (and files not yet"
        " migrated).",
    )
    cdn_base_url: str | None = Field(
        None,
        validation_alias="CDN_BASE_URL",
        description="Public files get <CDN_BASE_URL>/<key>; private files never do.",
    )
    aws_s3_bucket: str | None = Field(
        None,
        validation_alias="AWS_S3_BUCKET",
        description="The S3 bucket (required with STORAGE_PROVIDER=s3).",
    )
    aws_region: str = Field(
        "us-east-1", validation_alias="AWS_REGION", description="The S3 bucket's region."
    )
    aws_access_key_id: str | None = Field(
        None,
        validation_alias="AWS_ACCESS_KEY_ID",
        description="S3 access key id (required with STORAGE_PROVIDER=s3).",
    )
    aws_secret_access_key: SecretStr | None = Field(
        None,
        validation_alias="AWS_SECRET_ACCESS_KEY",
        description="S3 secret access key (required with STORAGE_PROVIDER=s3).",
    )
    aws_endpoint_url: str | None = Field(
        None,
        validation_alias="AWS_ENDPOINT_URL",
        description="An S3-compatible endpoint instead of AWS (MinIO, SeaweedFS).",
    )
    cloudflare_account_id: str | None = Field(
        None,
        validation_alias="CLOUDFLARE_ACCOUNT_ID",
        description="Cloudflare account id: the R2 endpoint is"
        " https://<id>.r2.cloudflarestorage.com.",
    )
    cloudflare_r2_bucket: str | None = Field(
        None,
        validation_alias="CLOUDFLARE_R2_BUCKET",
        description="The R2 bucket (required with STORAGE_PROVIDER=cloudflare-r2).",
    )
    cloudflare_r2_access_key_id: str | None = Field(
        None,
        validation_alias="CLOUDFLARE_R2_ACCESS_KEY_ID",
        description="R2 access key id (required with STORAGE_PROVIDER=cloudflare-r2).",
    )
    cloudflare_r2_secret_access_key: SecretStr | None = Field(
        None,
        validation_alias="CLOUDFLARE_R2_SECRET_ACCESS_KEY",
        description="R2 secret access key (required with STORAGE_PROVIDER=cloudflare-r2).",
    )
    max_upload_bytes: int = Field(
        100 * 1024 * 1024,
        ge=1,
        validation_alias="MAX_UPLOAD_BYTES",
        description="Largest upload: its file and form fields together; larger ones are"
        " refused with 413.",
    )
    storage_allowed_content_types: str = Field(
        "image/jpeg,image/png,image/gif,image/webp,application/pdf,text/plain,text/csv,"
        "application/json,application/zip,application/octet-stream,video/mp4,audio/mpeg,"
        "application/vnd.openxmlformats-officedocument.*",
        validation_alias="STORAGE_ALLOWED_CONTENT_TYPES",
        pattern=r"^\s*[\w.+-]+/[\w.+*-]+\s*(,\s*[\w.+-]+/[\w.+*-]+\s*)*$",
        description="Comma-separated content types uploads may have; 'type/*' or a trailing"
        " '*' allows a family. Anything else is refused with 415.",
    )
    # Uploads that never finished (a crash, a provider gone mid-upload) are removed by the
    # cleanup job once this old: half-written local files, S3/R2 multipart uploads.
    storage_incomplete_upload_max_age_seconds: int = Field(
        86400,
        ge=0,
        validation_alias="STORAGE_INCOMPLETE_UPLOAD_MAX_AGE_SECONDS",
        description="Age at which the cleanup job removes what unfinished uploads left"
        " (half-written local files, S3/R2 multipart uploads).",
    )
    storage_local_url: str | None = Field(
        None,
        validation_alias="STORAGE_LOCAL_URL",
        description="Absolute base URL of this service, for local file URLs; unset: relative.",
    )

    # --- tracing (OpenTelemetry; docs/tracing.md) -------------------------------
    # The standard variables. The endpoint or OTEL_TRACES_EXPORTER switch tracing on; the
    # SDK itself reads these and every other OTEL_* variable (headers, timeouts, sampler,
    # OTEL_SERVICE_NAME...) from the process environment, so set them there, not in .env.
    otel_sdk_disabled: bool = Field(
        False,
        validation_alias="OTEL_SDK_DISABLED",
        description="true keeps tracing off whatever else is set.",
    )
    otel_traces_exporter: str = Field(
        "",
        validation_alias="OTEL_TRACES_EXPORTER",
        pattern=r"^\s*((otlp|console|none)\s*(,\s*(otlp|console|none)\s*)*)?$",
        description="Where spans go: otlp, console or none (comma-separated); unset: otlp"
        " when an OTLP endpoint is set, else tracing is off.",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="OTLP endpoint (e.g. http://collector:4318); setting it switches tracing on.",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="OTLP endpoint for traces only; setting it switches tracing on.",
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf", "grpc", "http/json"] = Field(
        "http/protobuf",
        validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL",
        description="OTLP protocol: http/protobuf, or grpc (needs"
        " opentelemetry-exporter-otlp-proto-grpc); http/json is refused.",
    )
    otel_exporter_otlp_traces_protocol: Literal["http/protobuf", "grpc", "http/json"] | None = (
        Field(
            None,
            validation_alias="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            description="OTLP protocol for traces, over OTEL_EXPORTER_OTLP_PROTOCOL.",
        )
    )

    @model_validator(mode="after")
    def _provider_has_credentials(self) -> Settings:
        required = {
            "s3": ("AWS_S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
            "cloudflare-r2": (
                "CLOUDFLARE_ACCOUNT_ID",
                "CLOUDFLARE_R2_BUCKET",
                "CLOUDFLARE_R2_ACCESS_KEY_ID",
                "CLOUDFLARE_R2_SECRET_ACCESS_KEY",
            ),
        }.get(self.storage_provider, ())
        missing = [name for name in required if not getattr(self, name.lower())]
        if missing:
            raise ValueError(
                f"STORAGE_PROVIDER={self.storage_provider} needs {', '.join(missing)} to be set"
            )
        return self

    @model_validator(mode="after")
    def _redis_is_one_server_or_one_cluster(self) -> Settings:
        url, nodes = self.redis_url, self.redis_cluster_nodes
        try:
            if url:
                check_url(url)
        except ValueError as exc:
            raise ValueError(f"REDIS_URL: {exc}") from None
        if not nodes:
            return self
        try:
            given = parse_nodes(nodes)
        except ValueError as exc:
            raise ValueError(f"REDIS_CLUSTER_NODES: {exc}") from None
        if self.redis_host:
            raise ValueError(
                "REDIS_CLUSTER_NODES and REDIS_HOST are both set: set REDIS_CLUSTER_NODES for"
                " a cluster, or REDIS_HOST for one server"
            )
        if url and not is_cluster_url(url):
            raise ValueError(
                "REDIS_CLUSTER_NODES is set but REDIS_URL names one server: for a cluster"
                " use REDIS_URL=redis+cluster://host:port,... or REDIS_CLUSTER_NODES alone"
            )
        if url and set(ClusterUrl.parse(url).nodes) != set(given):
            raise ValueError(
                "REDIS_URL and REDIS_CLUSTER_NODES name different cluster nodes: set one of them"
            )
        return self

    @model_validator(mode="after")
    def _replicas_follow_a_postgresql_primary(self) -> Settings:
        if not self.replica_urls:
            return self
        if not self.effective_database_url.startswith("postgresql"):
            raise ValueError("DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL")
        if not all(url.startswith("postgresql") for url in self.replica_urls):
            raise ValueError("DATABASE_REPLICA_URLS: every replica must be a postgresql:// URL")
        if self.replica_poll_ms >= self.replica_max_lag_ms:
            raise ValueError(
                "REPLICA_POLL_MS must be below REPLICA_MAX_LAG_MS (lag is measured to one poll)"
            )
        return self

    # --- derived values ------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        """The async SQLAlchemy URL: the given one with its async driver, or embedded SQLite."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'tenantry.db').as_posix()}"
        return async_database_url(url)

    @property
    def effective_redis_url(self) -> str | None:
        """REDIS_URL; or the cluster of REDIS_CLUSTER_NODES; or REDIS_HOST's server."""
        if self.redis_url:
            return self.redis_url
        if self.redis_cluster_nodes:
            password = self.redis_password.get_secret_value() if self.redis_password else None
            return str(ClusterUrl(parse_nodes(self.redis_cluster_nodes), password=password))
        if self.redis_host:
            password = self.redis_password.get_secret_value() if self.redis_password else ""
            auth = f":{quote(password, safe='')}@" if password else ""
            return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"
        return None

    @property
    def uses_embedded_database(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def explain_schema_list(self) -> list[str]:
        return [name.strip() for name in self.explain_schemas.split(",") if name.strip()]

    @property
    def explain_allowed_function_set(self) -> frozenset[str]:
        raw = self.explain_allowed_functions.split(",")
        return frozenset(name.strip() for name in raw if name.strip())

    @property
    def tracing_switch(self) -> str | None:
        """The variable that switches tracing on; None: off (the default)."""
        exporters = self.trace_exporters
        if self.otel_sdk_disabled or exporters == ["none"]:
            return None
        if exporters:
            return "OTEL_TRACES_EXPORTER"
        if self.otel_exporter_otlp_traces_endpoint:
            return "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        return "OTEL_EXPORTER_OTLP_ENDPOINT" if self.otel_exporter_otlp_endpoint else None

    @property
    def trace_exporters(self) -> list[str]:
        """OTEL_TRACES_EXPORTER's names, `none` dropped beside others; empty if unset."""
        names = [n.strip() for n in self.otel_traces_exporter.split(",") if n.strip()]
        return [n for n in names if n != "none"] or names

    @property
    def otlp_traces_protocol(self) -> tuple[str, str]:
        """(variable, protocol): OTEL_EXPORTER_OTLP_TRACES_PROTOCOL over the general one."""
        if self.otel_exporter_otlp_traces_protocol is not None:
            return "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", self.otel_exporter_otlp_traces_protocol
        return "OTEL_EXPORTER_OTLP_PROTOCOL", self.otel_exporter_otlp_protocol

    @property
    def replica_urls(self) -> list[str]:
        """DATABASE_REPLICA_URLS as async SQLAlchemy URLs."""
        raw = self.database_replica_urls or ""
        return [async_database_url(url.strip()) for url in raw.split(",") if url.strip()]


def async_database_url(url: str) -> str:
    """Map the URLs people write (postgres://, sqlite:///) to SQLAlchemy's async drivers."""
    for prefix, driver in (
        ("postgres://", "postgresql+psycopg://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(prefix):
            return driver + url[len(prefix) :]
    return url


def sync_database_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic, the CLI)."""
    return async_database_url(url).replace("sqlite+aiosqlite://", "sqlite://", 1)


def _env_name(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return ""
    field = Settings.model_fields.get(str(loc[0]))
    alias = field.validation_alias if field else None
    return str(alias) if isinstance(alias, str) else str(loc[0]).upper()


def load_settings(**overrides: object) -> Settings:
    """Build the settings, or raise `ConfigError` with one line per invalid variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = _env_name(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if name:
                given = error.get("input")
                shown = f" (got {given!r})" if isinstance(given, str | int) else ""
                lines.append(f"{name}: {message}{shown}")
            else:
                lines.append(message)
        raise ConfigError("; ".join(lines)) from None
