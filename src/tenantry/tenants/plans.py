"""Plans and limits: what a company may use, as plain data.

A plan names a set of limits and a queue weight; a company is on one plan and may
override any limit. Limits, on the wire and in the database (camelCase, as the API):

| name                   | what it bounds                                           |
| ---------------------- | -------------------------------------------------------- |
| `storageBytes`         | bytes stored, all files of the company                   |
| `storageFiles`         | number of files                                          |
| `apiRequestsPerMinute` | API requests per minute, all of the company's keys       |
| `jobsPerMinute`        | `{queue: n}` jobs started per minute on a queue          |
| `jobConcurrency`       | `{queue: n}` jobs running at once on a queue, all workers |

A missing limit (or `null`) is unlimited. Pure: no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tenantry.errors import InvalidInput
from tenantry.tenants.limits import QueueLimits

SCALAR_LIMITS = ("storageBytes", "storageFiles", "apiRequestsPerMinute")
QUEUE_LIMITS = ("jobsPerMinute", "jobConcurrency")
LIMIT_NAMES = SCALAR_LIMITS + QUEUE_LIMITS
MAX_WEIGHT = 1000


@dataclass(frozen=True, slots=True)
class Limits:
    storage_bytes: int | None = None
    storage_files: int | None = None
    api_requests_per_minute: int | None = None
    jobs_per_minute: Mapping[str, int] = field(default_factory=dict)
    job_concurrency: Mapping[str, int] = field(default_factory=dict)

    def over(self, base: Limits) -> Limits:
        """These limits where set, `base` elsewhere (queue maps merged per queue)."""
        return Limits(
            storage_bytes=_first(self.storage_bytes, base.storage_bytes),
            storage_files=_first(self.storage_files, base.storage_files),
            api_requests_per_minute=_first(
                self.api_requests_per_minute, base.api_requests_per_minute
            ),
            jobs_per_minute={**base.jobs_per_minute, **self.jobs_per_minute},
            job_concurrency={**base.job_concurrency, **self.job_concurrency},
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "storageBytes": self.storage_bytes,
            "storageFiles": self.storage_files,
            "apiRequestsPerMinute": self.api_requests_per_minute,
            "jobsPerMinute": dict(self.jobs_per_minute),
            "jobConcurrency": dict(self.job_concurrency),
        }

    def set_only(self) -> dict[str, Any]:
        """The wire form without what is unset (what a company's overrides store)."""
        return {k: v for k, v in self.to_wire().items() if v not in (None, {})}


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    limits: Limits = Limits()
    queue_weight: int = 1


def _first(value: int | None, fallback: int | None) -> int | None:
    return value if value is not None else fallback


GiB = 1024**3
DEFAULT_PLANS: dict[str, Plan] = {
    "free": Plan(
        "free",
        Limits(
            storage_bytes=1 * GiB,
            storage_files=10_000,
            api_requests_per_minute=1200,
            jobs_per_minute={"email": 100},
            job_concurrency={"report": 2, "export": 2},
        ),
        queue_weight=1,
    ),
    "pro": Plan(
        "pro",
        Limits(
            storage_bytes=100 * GiB,
            storage_files=1_000_000,
            api_requests_per_minute=12_000,
            jobs_per_minute={"email": 2000},
            job_concurrency={"report": 5, "export": 5, "ai-processing": 10},
        ),
        queue_weight=2,
    ),
    "enterprise": Plan("enterprise", Limits(), queue_weight=4),
}


def parse_limits(
    raw: Mapping[str, Any] | None,
    field_name: str = "limits",
    queues: Collection[str] | None = None,
) -> Limits:
    """Limits from their wire form; `InvalidInput` naming an unknown limit or a bad value
    (with `queues`, also a queue that is not one of them)."""
    raw = raw or {}
    unknown = sorted(set(raw) - set(LIMIT_NAMES))
    if unknown:
        raise InvalidInput(
            f"unknown limit(s): {', '.join(unknown)}; the limits are {', '.join(LIMIT_NAMES)}",
            details={"field": f"{field_name}.{unknown[0]}", "rule": "unknown_limit"},
        )
    scalars = {name: _count(raw.get(name), f"{field_name}.{name}") for name in SCALAR_LIMITS}
    per_queue = {
        name: _per_queue(raw.get(name), f"{field_name}.{name}", queues) for name in QUEUE_LIMITS
    }
    return Limits(
        storage_bytes=scalars["storageBytes"],
        storage_files=scalars["storageFiles"],
        api_requests_per_minute=scalars["apiRequestsPerMinute"],
        jobs_per_minute=per_queue["jobsPerMinute"],
        job_concurrency=per_queue["jobConcurrency"],
    )


def parse_weight(value: Any, field_name: str = "queueWeight") -> int:
    weight = _count(value, field_name)
    if weight is None or not 1 <= weight <= MAX_WEIGHT:
        raise InvalidInput(
            f"{field_name} must be a whole number from 1 to {MAX_WEIGHT}",
            details={"field": field_name, "rule": "range"},
        )
    return weight


def _count(value: Any, field_name: str) -> int | None:
    if value is None:
        return None
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value, whole = int(value), True
    if not whole or value < 0 or value > 2**62:
        raise InvalidInput(
            f"{field_name} must be a whole number >= 0 (or null: unlimited), not {value!r}",
            details={"field": field_name, "rule": "non_negative_integer"},
        )
    return int(value)


def _per_queue(value: Any, field_name: str, queues: Collection[str] | None) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"{field_name} must be an object of queue: number",
            details={"field": field_name, "rule": "object"},
        )
    result = {}
    for queue, count in value.items():
        if not isinstance(queue, str) or (queues is not None and queue not in queues):
            known = ", ".join(queues or ())
            raise InvalidInput(
                f"{field_name}: unknown queue {queue!r}; the queues are {known}",
                details={"field": f"{field_name}.{queue}", "rule": "unknown_queue"},
            )
        parsed = _count(count, f"{field_name}.{queue}")
        if parsed is not None:
            result[queue] = parsed
    return result


def queue_limits(plan: Plan, limits: Limits, queue: str) -> QueueLimits:
    return QueueLimits(
        weight=plan.queue_weight,
        concurrency=limits.job_concurrency.get(queue),
        per_minute=limits.jobs_per_minute.get(queue),
    )


def with_weight(plan: Plan, weight: int) -> Plan:
    return replace(plan, queue_weight=weight)


def configured_plans(
    raw: Mapping[str, Mapping[str, Any]], queues: Collection[str] | None = None
) -> dict[str, Plan]:
    """The built-in plans with TENANTRY_PLANS on top; `ValueError` naming what is wrong."""
    plans = dict(DEFAULT_PLANS)
    for name, spec in raw.items():
        unknown = sorted(set(spec) - {"limits", "queueWeight"})
        if unknown:
            raise ValueError(f"TENANTRY_PLANS: {name}: unknown key(s) {', '.join(unknown)}")
        try:
            plans[name] = Plan(
                name,
                parse_limits(spec.get("limits"), f"TENANTRY_PLANS.{name}.limits", queues),
                parse_weight(spec.get("queueWeight", 1), f"TENANTRY_PLANS.{name}.queueWeight"),
            )
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
    return plans
