"""What a company may use of a queue: the seam between plans and the job queues.

The job layer asks a `QueueLimitSource` for a company's `QueueLimits` on a queue and
enforces them (fair share by weight, concurrency and rate across every worker); the
tenants service answers from the company's plan and overrides. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """One company's share of one queue. None: unlimited."""

    weight: int = 1  # its share of the queue against other companies (round robin at 1)
    concurrency: int | None = None  # jobs of this company running at once, all workers
    per_minute: int | None = None  # jobs of this company started per minute

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ValueError("weight must be at least 1")
        for name in ("concurrency", "per_minute"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")


UNLIMITED = QueueLimits()


class QueueLimitSource(Protocol):
    async def queue_limits(self, company_id: str, queue: str) -> QueueLimits: ...


@dataclass(frozen=True, slots=True)
class StaticLimits:
    """Fixed limits, per (company, queue) with a default: for tests and embedded use."""

    default: QueueLimits = UNLIMITED
    by_company: Mapping[tuple[str, str], QueueLimits] = field(default_factory=dict)

    async def queue_limits(self, company_id: str, queue: str) -> QueueLimits:
        return self.by_company.get((company_id, queue), self.default)
