"""A plain worker process: Tenantry's workers running one handler of the application's.

    REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgresql://... \\
        python -m examples.worker.worker

Processes the `ai-processing` queue until SIGTERM (or SIGINT), then lets the job in hand
finish and exits. The handler reaches the application's own object (`prices`, a
closure here) and Tenantry's services (`tenantry.services`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tenantry import JobContext, PermanentJobError, Tenantry, load_settings


class PriceBook:
    """The application's own object the handler needs (a client, a repository...)."""

    def __init__(self, prices: dict[str, int]) -> None:
        self.prices = prices

    def total(self, items: list[str]) -> int:
        return sum(self.prices[item] for item in items)


def create_worker(prices: PriceBook) -> Tenantry:
    """Tenantry with the application's handler registered on it."""
    tenantry = Tenantry(load_settings())

    @tenantry.job_handler("ai-processing", "price-basket")
    async def price_basket(job: JobContext) -> dict[str, Any]:
        items = job.data["input"].get("items")
        if not isinstance(items, list) or not all(item in prices.prices for item in items):
            raise PermanentJobError("unknown items")  # fails at once, no retry
        await job.log(f"pricing {len(items)} items for {job.company_id}")
        usage = await tenantry.services.storage.usage_of([job.company_id])
        return {"total": prices.total(items), "files": sum(u.total_files for u in usage)}

    return tenantry


def main() -> None:
    worker = create_worker(PriceBook({"apple": 3, "pear": 4}))
    asyncio.run(worker.run_worker(["ai-processing"]))


if __name__ == "__main__":
    main()
