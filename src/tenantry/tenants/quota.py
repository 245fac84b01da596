"""Storage quotas: an upload reserves what it stores before it stores it.

    reservation = await quota.begin("acme", size_hint)   # one file, and size_hint bytes
    await reservation.need(total_so_far)                 # as the bytes stream in
    await reservation.commit(size)                       # the file is recorded
    await reservation.release()                          # or it is not

A company's usage is its stored files (counters on its row, kept with every stored
and removed file) plus the live reservations of its uploads under way, so two uploads
racing for the last megabyte cannot both get it: each reservation is taken in a
transaction that first locks the company's row (FOR UPDATE on PostgreSQL; SQLite
serialises writers). A reservation grows in steps (doubling, at least 1 MiB), so a
large upload costs a few round trips, and it expires if its upload dies without a word.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.db import CompanyRow, Database, ensure_company, utcnow
from tenantry.errors import QuotaExceeded
from tenantry.tenants.plans import Limits
from tenantry.tenants.records import ReservationRow

STEP = 1024 * 1024
TTL = timedelta(hours=1)  # an upload that has not grown for this long is dead
LimitsOf = Callable[[str], Awaitable[Limits]]


class StorageQuota:
    def __init__(self, db: Database, limits_of: LimitsOf) -> None:
        self._db = db
        self._limits_of = limits_of

    async def begin(self, company_id: str, size_hint: int = 0) -> Reservation:
        """Hold one file (and `size_hint` bytes) for an upload, or `QuotaExceeded`."""
        limits = await self._limits_of(company_id)
        reservation = Reservation(self, company_id, limits, uuid.uuid4().hex)
        async with self._db.session() as session:
            used_bytes, used_files, held_bytes, held_files = await _usage(session, company_id)
            if (
                limits.storage_files is not None
                and used_files + held_files + 1 > limits.storage_files
            ):
                raise _exceeded("storageFiles", used_files + held_files, limits.storage_files)
            wanted = _check_bytes(limits, used_bytes + held_bytes, size_hint)
            session.add(
                ReservationRow(
                    id=reservation.id, company_id=company_id, bytes=wanted,
                    expires_at=utcnow() + TTL,
                )
            )  # fmt: skip
        reservation.held = wanted
        reservation.grown_at = utcnow()
        return reservation

    async def removed(self, company_id: str, size: int) -> None:
        """A stored file is gone: its bytes and its slot are free again."""
        async with self._db.session() as session:
            await session.execute(
                update(CompanyRow)
                .where(CompanyRow.id == company_id)
                .values(
                    storage_bytes=self._at_least_zero(CompanyRow.storage_bytes - size),
                    storage_files=self._at_least_zero(CompanyRow.storage_files - 1),
                )
            )

    def _at_least_zero(self, value: Any) -> Any:
        # SQLite's two-argument max() is PostgreSQL's greatest().
        return (func.max if self._db.dialect == "sqlite" else func.greatest)(value, 0)

    async def _grow(self, reservation: Reservation, total: int) -> int:
        limits = reservation.limits
        async with self._db.session() as session:
            # What the other uploads hold, read without this one's row (not this one's
            # row subtracted: if it has expired, it is no longer in the sum).
            used_bytes, _, others, _ = await _usage(
                session, reservation.company_id, besides=reservation.id
            )
            want = max(total, min(2 * reservation.held, total + 64 * STEP), STEP)
            allowed = _check_bytes(limits, used_bytes + others, total, want)
            await session.execute(
                update(ReservationRow)
                .where(ReservationRow.id == reservation.id)
                .values(bytes=allowed, expires_at=utcnow() + TTL)
            )
        return allowed

    async def _commit(self, reservation: Reservation, size: int) -> None:
        async with self._db.session() as session:
            await session.execute(delete(ReservationRow).where(ReservationRow.id == reservation.id))
            await session.execute(
                update(CompanyRow)
                .where(CompanyRow.id == reservation.company_id)
                .values(
                    storage_bytes=CompanyRow.storage_bytes + size,
                    storage_files=CompanyRow.storage_files + 1,
                )
            )

    async def _release(self, reservation: Reservation) -> None:
        async with self._db.session() as session:
            await session.execute(delete(ReservationRow).where(ReservationRow.id == reservation.id))


class Reservation:
    """What one upload holds; grows as its bytes arrive."""

    def __init__(self, quota: StorageQuota, company_id: str, limits: Limits, id: str) -> None:
        self.quota = quota
        self.company_id = company_id
        self.limits = limits
        self.id = id
        self.held = 0
        self.grown_at = utcnow()

    async def need(self, total: int) -> None:
        """The upload has reached `total` bytes: hold them (and some ahead), or refuse.
        A slow upload renews its reservation before it expires (or re-takes it, checked
        again, if it did)."""
        if total > self.held or utcnow() - self.grown_at >= TTL / 2:
            self.held = await self.quota._grow(self, total)
            self.grown_at = utcnow()

    async def commit(self, size: int) -> None:
        await self.quota._commit(self, size)

    async def release(self) -> None:
        await self.quota._release(self)


async def _usage(
    session: AsyncSession, company_id: str, besides: str | None = None
) -> tuple[int, int, int, int]:
    """Stored bytes and files, and what live reservations (but `besides`) hold, with the
    row locked."""
    await ensure_company(session, company_id)
    row = await session.scalar(
        select(CompanyRow).where(CompanyRow.id == company_id).with_for_update()
    )
    assert row is not None
    live = (
        select(func.coalesce(func.sum(ReservationRow.bytes), 0), func.count())
        .where(ReservationRow.company_id == company_id)
        .where(ReservationRow.expires_at > utcnow())
    )
    if besides is not None:
        live = live.where(ReservationRow.id != besides)
    held = (await session.execute(live)).one()
    return row.storage_bytes, row.storage_files, int(held[0]), int(held[1])


def _check_bytes(limits: Limits, used: int, needed: int, want: int | None = None) -> int:
    """What to hold: `want` (default `needed`) capped by what is left; refuse below `needed`."""
    want = needed if want is None else want
    if limits.storage_bytes is None:
        return want
    left = limits.storage_bytes - used
    if needed > left:
        raise _exceeded("storageBytes", used + needed, limits.storage_bytes)
    return min(want, left)


def _exceeded(limit: str, usage: int, allowed: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"{limit} quota exceeded: this would make {usage}, and the plan allows {allowed}",
        details={"limit": limit, "usage": usage, "allowed": allowed},
    )
