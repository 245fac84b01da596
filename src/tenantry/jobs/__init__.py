"""Jobs: six BullMQ queues on Redis (or in-process without Redis), their workers and API."""

from tenantry.jobs.backends import (
    BullMQBackend,
    InProcessBackend,
    JobBackend,
    JobRecord,
    PermanentJobError,
    ScheduleRecord,
)
from tenantry.jobs.queues import QUEUE_NAMES, QueueDefinition
from tenantry.jobs.registry import HandlerRegistry, JobContext, job_handler
from tenantry.jobs.service import JobService, JobStatus

__all__ = [
    "QUEUE_NAMES",
    "BullMQBackend",
    "HandlerRegistry",
    "InProcessBackend",
    "JobBackend",
    "JobContext",
    "JobRecord",
    "JobService",
    "JobStatus",
    "PermanentJobError",
    "QueueDefinition",
    "ScheduleRecord",
    "job_handler",
]
