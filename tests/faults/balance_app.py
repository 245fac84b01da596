"""An application built on Tenantry, run the way `tenantry serve` runs Tenantry alone.

Tenantry has no HTTP route of its own that reads through the query cache: the cache is
for an application's reads (`optimized_read`) and writes (`optimized_write`). So this
is what a user's service would be: `create_app()` plus its own routes, served by
`tenantry.server.serve` — the same app, middleware and uvicorn set-up as `tenantry
serve`. Its one table, `app_balances`, is the application's (the tests create it).

    GET /app/balance            the caller's company's balance, through the read cache
    PUT /app/balance {"value"}  sets it through optimized_write, dropping the cached read

    python -m tests.faults.balance_app --port 8000   (settings from the environment)
"""

from __future__ import annotations

import argparse
import os

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenantry.app import create_app
from tenantry.deps import PrincipalDep, ServicesDep
from tenantry.server import serve
from tenantry.settings import load_settings

CREATE_TABLE = "CREATE TABLE app_balances (company_id text PRIMARY KEY, value bigint NOT NULL)"
CACHE_NAME = "balance"
router = APIRouter(prefix="/app")


class Balance(BaseModel):
    value: int = Field(ge=-(10**15), le=10**15)


class BalanceOut(Balance):
    pid: int  # which process answered, for the test's figures


@router.get("/balance")
async def read_balance(services: ServicesDep, principal: PrincipalDep) -> BalanceOut:
    company = principal.company_for(None)

    async def load(session: AsyncSession) -> int:
        query = text("SELECT value FROM app_balances WHERE company_id = :c")
        return int((await session.execute(query, {"c": company})).scalar() or 0)

    value = await services.queries.optimized_read(company, CACHE_NAME, load, cache_ttl=300)
    return BalanceOut(value=value, pid=os.getpid())


@router.put("/balance")
async def write_balance(
    body: Balance, services: ServicesDep, principal: PrincipalDep
) -> BalanceOut:
    company = principal.company_for(None)

    async def write(session: AsyncSession) -> None:
        upsert = text(
            "INSERT INTO app_balances (company_id, value) VALUES (:c, :v) "
            "ON CONFLICT (company_id) DO UPDATE SET value = excluded.value"
        )
        await session.execute(upsert, {"c": company, "v": body.value})

    await services.queries.optimized_write(company, write, invalidates=[CACHE_NAME])
    return BalanceOut(value=body.value, pid=os.getpid())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    settings = load_settings()
    app = create_app(settings)
    app.include_router(router)
    serve(app, settings, "127.0.0.1", port)


if __name__ == "__main__":
    main()
