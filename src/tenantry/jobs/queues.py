"""The six queues Tenantry defines, and the options every job on them gets.

Concurrency, attempts, backoff and retention come from settings (`JOB_*`), so a
deployment tunes them without code. A queue name outside this list is refused
(404 on the HTTP API) rather than silently creating a new queue in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tenantry.errors import NotFound
from tenantry.settings import Settings

EMAIL: Final = "email"
REPORT: Final = "report"
AI_PROCESSING: Final = "ai-processing"
EXPORT: Final = "export"
NOTIFICATION: Final = "notification"
CLEANUP: Final = "cleanup"

QUEUE_NAMES: Final[tuple[str, ...]] = (EMAIL, REPORT, AI_PROCESSING, EXPORT, NOTIFICATION, CLEANUP)
"""The six queues, in the order they are listed everywhere."""

# Job states as BullMQ names them ("waiting" covers BullMQ's prioritized list too).
STATES: Final[tuple[str, ...]] = ("waiting", "active", "completed", "failed", "delayed", "paused")

# What a job's numbers may be: large enough for any real use, small enough that no
# engine overflows (Redis takes 64-bit integers, milliseconds are taken of seconds).
MAX_GRACE_SECONDS: Final = 10 * 366 * 86_400  # ten years
MAX_EVERY_MS: Final = 366 * 86_400_000  # a year: rarer runs are a cron pattern
MAX_LIST_INDEX: Final = 1_000_000
MAX_PAGE: Final = 1000  # jobs one list call returns

# The names BullMQ gives a queue's own Redis keys, `bull:<queue>:<name>`: the names in
# bullmq/queue_keys.py (QueueKeys.getKeys) and "metrics" (metrics:<state>, scripts.py).
# A job lives at `bull:<queue>:<id>`, so a job with one of these ids would be the queue's
# own key: refused as an id on every backend, so an id means the same everywhere.
RESERVED_JOB_IDS: Final = frozenset(
    {
        "active", "completed", "de", "delayed", "events", "failed", "id", "limiter", "marker",
        "meta", "metrics", "paused", "pc", "prioritized", "repeat", "stalled", "stalled-check",
        "wait", "waiting-children",
    }
)  # fmt: skip

# The company a system job (a cleanup schedule) runs for. It cannot collide with a
# real company: company ids start with a letter or digit.
SYSTEM_COMPANY: Final = "_system"


@dataclass(frozen=True, slots=True)
class QueueDefinition:
    """One queue and the options its jobs get (concurrency, attempts, backoff, retention)."""

    name: str
    concurrency: int
    attempts: int
    backoff_ms: int
    keep_completed: int
    keep_completed_seconds: int
    keep_failed: int
    keep_failed_seconds: int

    def job_options(self) -> dict[str, Any]:
        """BullMQ job options (also understood by the in-process backend)."""
        return {
            "attempts": self.attempts,
            "backoff": {"type": "exponential", "delay": self.backoff_ms},
            "removeOnComplete": {
                "count": self.keep_completed,
                "age": self.keep_completed_seconds,
            },
            "removeOnFail": {"count": self.keep_failed, "age": self.keep_failed_seconds},
        }


def definitions(settings: Settings) -> dict[str, QueueDefinition]:
    """Every queue's definition, from settings."""
    concurrency = {
        EMAIL: settings.job_concurrency_email,
        REPORT: settings.job_concurrency_report,
        AI_PROCESSING: settings.job_concurrency_ai_processing,
        EXPORT: settings.job_concurrency_export,
        NOTIFICATION: settings.job_concurrency_notification,
        CLEANUP: settings.job_concurrency_cleanup,
    }
    return {
        name: QueueDefinition(
            name=name,
            concurrency=concurrency[name],
            attempts=settings.job_attempts,
            backoff_ms=settings.job_backoff_ms,
            keep_completed=settings.job_keep_completed,
            keep_completed_seconds=settings.job_keep_completed_seconds,
            keep_failed=settings.job_keep_failed,
            keep_failed_seconds=settings.job_keep_failed_seconds,
        )
        for name in QUEUE_NAMES
    }


def check_queue(name: str) -> str:
    if name not in QUEUE_NAMES:
        raise NotFound(
            f"no queue named {name!r}; the queues are {', '.join(QUEUE_NAMES)}",
            details={"field": "queue", "allowed": list(QUEUE_NAMES)},
        )
    return name


def check_job_id(job_id: str) -> str:
    """A job id a caller may choose: no ':' (BullMQ's key separator), none of its key names."""
    if job_id in RESERVED_JOB_IDS or ":" in job_id:
        raise ValueError(
            f"{job_id!r} is reserved: job ids must not contain ':' nor be one of BullMQ's "
            f"queue key names ({', '.join(sorted(RESERVED_JOB_IDS))})"
        )
    return job_id
