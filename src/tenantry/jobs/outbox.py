"""The job outbox: jobs enqueued while Redis is unreachable wait in the database.

`JobService.add` tries the engine first; when Redis cannot be reached it writes the
job here under the id it would have had, and the caller gets that id as usual. A
relay task then hands every waiting job to the engine as soon as Redis answers,
oldest first, keeping the id (BullMQ keeps one job per id), and only then deletes
the row. A crash between the hand-over and the delete relays the job again, so
delivery is at least once — the same promise BullMQ makes for processing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from tenantry import redis_clients
from tenantry.db import Base, Database, utcnow
from tenantry.jobs.backends import JobRecord, now_ms

log = logging.getLogger("tenantry.jobs.outbox")

# What "Redis is unreachable" looks like from redis-py (and bullmq, which uses it), a
# cluster in the middle of a failover included.
REDIS_DOWN: tuple[type[BaseException], ...] = (*redis_clients.REDIS_DOWN, OSError)

Enqueue = Callable[[str, str, dict[str, Any], dict[str, Any]], Awaitable[str]]


class OutboxJob(Base):
    __tablename__ = "tenantry_job_outbox"

    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    queue: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    data: Mapped[str] = mapped_column(Text)
    options: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    relay_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class JobOutbox:
    def __init__(self, db: Database, batch_size: int = 200) -> None:
        self._db = db
        self.batch_size = batch_size

    async def put(
        self, queue: str, name: str, data: dict[str, Any], options: dict[str, Any]
    ) -> str:
        job_id = str(options["jobId"])
        async with self._db.session() as session:
            if await session.get(OutboxJob, job_id) is None:
                session.add(
                    OutboxJob(
                        job_id=job_id,
                        queue=queue,
                        name=name,
                        data=json.dumps(data),
                        options=json.dumps(options),
                        created_at=utcnow(),
                    )
                )
        log.warning("Redis unreachable: job %s of queue %s kept in the outbox", job_id, queue)
        return job_id

    async def get(self, queue: str, job_id: str) -> JobRecord | None:
        """A job still waiting in the outbox, shown as `waiting` (it has not reached a queue)."""
        async with self._db.session() as session:
            row = await session.get(OutboxJob, job_id)
        if row is None or row.queue != queue:
            return None
        options = json.loads(row.options)
        return JobRecord(
            id=row.job_id,
            queue=row.queue,
            name=row.name,
            data=json.loads(row.data),
            state="waiting",
            outboxed=True,
            attempts=int(options.get("attempts", 1)),
            created_at=int(row.created_at.timestamp() * 1000) if row.created_at else now_ms(),
        )

    async def pending(self) -> int:
        async with self._db.session() as session:
            count = await session.scalar(select(func.count()).select_from(OutboxJob))
        return int(count or 0)

    async def relay(self, enqueue: Enqueue) -> int:
        """Hand waiting jobs to the engine, oldest first; stops at the first Redis failure."""
        relayed = 0
        async with self._db.session() as session:
            rows = (
                await session.scalars(
                    select(OutboxJob)
                    .order_by(OutboxJob.created_at, OutboxJob.job_id)
                    .limit(self.batch_size)
                )
            ).all()
        for row in rows:
            try:
                await enqueue(row.queue, row.name, json.loads(row.data), json.loads(row.options))
            except REDIS_DOWN as exc:
                await self._note_failure(row.job_id, exc)
                break
            async with self._db.session() as session:
                await session.execute(delete(OutboxJob).where(OutboxJob.job_id == row.job_id))
            relayed += 1
        if relayed:
            log.info("relayed %d job(s) from the outbox", relayed)
        return relayed

    async def _note_failure(self, job_id: str, exc: BaseException) -> None:
        async with self._db.session() as session:
            row = await session.get(OutboxJob, job_id)
            if row is not None:
                row.relay_attempts += 1
                row.last_error = f"{type(exc).__name__}: {exc}"[:1000]

    async def relay_all(self, enqueue: Enqueue) -> None:
        """Relay batch after batch until the outbox is empty (one round of the relay loop)."""
        while await self.relay(enqueue) == self.batch_size:
            pass
