"""The engines under the job service, behind one small interface Tenantry owns:
`base` (the interface and its types), `bullmq` (BullMQ on Redis), `memory` (in-process).
"""

from tenantry.jobs.backends.base import (
    ActiveJob,
    JobBackend,
    JobCounts,
    JobRecord,
    PermanentJobError,
    Processor,
    QueueFigures,
    QueueStats,
    ScheduleRecord,
    WorkerSettings,
    now_ms,
)
from tenantry.jobs.backends.bullmq import REDIS_DOWN, BullMQBackend
from tenantry.jobs.backends.memory import InProcessBackend, backoff_delay, next_cron_run

__all__ = [
    "REDIS_DOWN",
    "ActiveJob",
    "BullMQBackend",
    "InProcessBackend",
    "JobBackend",
    "JobCounts",
    "JobRecord",
    "PermanentJobError",
    "Processor",
    "QueueFigures",
    "QueueStats",
    "ScheduleRecord",
    "WorkerSettings",
    "backoff_delay",
    "next_cron_run",
    "now_ms",
]
