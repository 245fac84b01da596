"""A shop that was there before Tenantry: its own FastAPI app, its own PostgreSQL table
of products per company, its own users. It adds Tenantry for image uploads, report
jobs, cached reads, a gated AI route behind a circuit breaker, and the dashboard at
/ops/admin (docs/embedding.md explains each piece).

    SHOP_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/shop \\
        uvicorn --factory examples.shop.app:create_shop

Users sign in with the `X-User` header (a stand-in for the shop's session or JWT).
"""

# No `from __future__ import annotations`: the routes' annotations name dependencies
# made inside create_shop, which FastAPI must see as objects, not as strings.
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, UploadFile
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantry import Breaker, Settings, Tenantry, load_settings

# --- the shop as it was: its table, its users --------------------------------------

metadata = MetaData()
products = Table(
    "shop_products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("company_id", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("image_key", String(500)),
)


@dataclass(frozen=True)
class User:
    name: str
    company_id: str
    is_admin: bool = False


USERS = {
    "ada": User("ada", "acme", is_admin=True),
    "bob": User("bob", "globex"),
}


class SignedInUser:
    """The shop's session: `request.state.user` (None when signed out)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            name = headers.get(b"x-user", b"").decode("latin-1")
            scope.setdefault("state", {})["user"] = USERS.get(name)
        await self.app(scope, receive, send)


def company_of(request: Request) -> str | None:
    """Tenantry's company resolver: the signed-in user's company."""
    user: User | None = request.state.user
    return user.company_id if user else None


def is_admin(request: Request) -> bool:
    """Who may use Tenantry's management API and dashboard: the shop's admins."""
    user: User | None = request.state.user
    return bool(user and user.is_admin)


class Recommender:
    """The AI service the shop calls; `healthy = False` stands for an outage."""

    healthy = True

    async def recommend(self, company_id: str) -> list[str]:
        if not self.healthy:
            raise ConnectionError("the AI service is unreachable")
        return [f"bestseller for {company_id}"]


class NewProduct(BaseModel):
    name: str


NO_RECOMMENDATIONS: dict[str, Any] = {"items": [], "fallback": True}


# --- the shop with Tenantry ---------------------------------------------------------


def create_shop(settings: Settings | None = None, database_url: str | None = None) -> FastAPI:
    """The shop's app on its own engine (`database_url`, or SHOP_DATABASE_URL)."""
    engine = create_async_engine(database_url or os.environ["SHOP_DATABASE_URL"])
    tenantry = Tenantry(settings or load_settings(), company=company_of, engine=engine)
    recommender = Recommender()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with tenantry.run():
            yield
        await engine.dispose()  # the shop's engine: Tenantry leaves it to the shop

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(SignedInUser)
    tenantry.mount(app, prefix="/ops", admin=is_admin)
    app.state.tenantry, app.state.recommender = tenantry, recommender
    Company = Annotated[str, Depends(tenantry.rate_limit)]

    @app.post("/products", status_code=201)
    async def add_product(body: NewProduct, company: Company) -> dict[str, Any]:
        async def write(session: AsyncSession) -> int:
            added = await session.execute(
                insert(products).values(company_id=company, name=body.name).returning(products.c.id)
            )
            return int(added.scalar_one())

        queries = tenantry.services.queries
        product_id = await queries.optimized_write(company, write, invalidates=["products-list"])
        return {"id": product_id}

    @app.get("/products")
    async def list_products(company: Company) -> list[dict[str, Any]]:
        async def load(session: AsyncSession) -> list[dict[str, Any]]:
            rows = await session.execute(
                select(products.c.id, products.c.name, products.c.image_key)
                .where(products.c.company_id == company)
                .order_by(products.c.id)
            )
            return [dict(row._mapping) for row in rows]

        listed: list[dict[str, Any]] = await tenantry.services.queries.optimized_read(
            company, "products-list", load
        )
        return listed

    @app.post("/products/{product_id}/image")
    async def upload_image(product_id: int, image: UploadFile, company: Company) -> dict[str, Any]:
        stored = await tenantry.services.storage.upload(
            image.file,
            company_id=company,
            category="product-images",
            filename=image.filename or "image",
            content_type=image.content_type,
        )

        async def write(session: AsyncSession) -> None:
            await session.execute(
                update(products)
                .where(products.c.id == product_id, products.c.company_id == company)
                .values(image_key=stored.key)
            )

        queries = tenantry.services.queries
        await queries.optimized_write(company, write, invalidates=["products-list"])
        return {"key": stored.key, "url": stored.url}

    @app.post("/reports", status_code=202)
    async def request_report(company: Company) -> dict[str, str]:
        job_id = await tenantry.services.jobs.generate_report_job(
            company, "files", "2026-01-01", "2026-12-31"
        )
        return {"id": job_id}

    @app.get("/reports/{job_id}")
    async def report_status(job_id: str, company: Company) -> dict[str, Any]:
        status = await tenantry.services.jobs.get_job_status("report", job_id, company)
        return {"state": status.state, "result": status.job.result}

    gate = tenantry.feature_gate("shop-ai-recommendations")
    ai_circuit = tenantry.circuit("ai-service", fallback=NO_RECOMMENDATIONS)

    @app.get("/recommendations", dependencies=[Depends(gate)])
    async def recommendations(
        request: Request, ai: Annotated[Breaker, Depends(ai_circuit)]
    ) -> dict[str, Any]:
        company = tenantry.company(request)
        try:
            items = await ai.call_async(recommender.recommend, company)
        except ConnectionError:  # counted by the breaker; enough of them open it
            return NO_RECOMMENDATIONS
        return {"items": items, "fallback": False}

    return app
