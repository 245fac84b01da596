"""The tenants tables: plans, the storage reservations of uploads under way, and usage
per company per hour (the companies table is one of Tenantry's core tables, in
tenantry.db)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db import Base, utcnow


class PlanRow(Base):
    __tablename__ = "tenantry_plans"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    limits: Mapped[str] = mapped_column(Text, default="{}")
    queue_weight: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReservationRow(Base):
    """Bytes (and one file) an upload under way holds against its company's quota; an
    upload that dies leaves a row that stops counting when it expires."""

    __tablename__ = "tenantry_storage_reservations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(64), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class UsageRow(Base):
    """What one company used in one hour, summed over every process (usage metering)."""

    __tablename__ = "tenantry_usage_hourly"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True, index=True)
    api_requests: Mapped[int] = mapped_column(BigInteger, default=0)
    jobs_run: Mapped[int] = mapped_column(BigInteger, default=0)
    job_ms: Mapped[float] = mapped_column(Float, default=0.0)
    query_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    query_ms: Mapped[float] = mapped_column(Float, default=0.0)
