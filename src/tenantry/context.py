"""The company a piece of work runs for, visible to every layer below it.

The auth layer sets it for a request, job workers set it for a job; the query
monitor and the cache read it. A context variable keeps concurrent requests apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_company: ContextVar[str | None] = ContextVar("tenantry_current_company", default=None)


@contextmanager
def company_scope(company_id: str | None) -> Iterator[None]:
    token = current_company.set(company_id)
    try:
        yield
    finally:
        current_company.reset(token)
