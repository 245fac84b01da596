"""API requests per minute per company: every key of the company together, shared by
every process through Redis (and in-process without it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tenantry.tenants.rate import RequestRate, TooManyRequests


@pytest.fixture(params=["redis", "in-process"])
async def rates(request: pytest.FixtureRequest) -> AsyncIterator[list[RequestRate]]:
    if request.param == "in-process":
        yield [RequestRate()]
        return
    url = request.getfixturevalue("redis_url")
    # Two limiters on two clients of one Redis: two processes sharing the count.
    clients = [Redis.from_url(url), Redis.from_url(url)]
    yield [RequestRate(client) for client in clients]
    for client in clients:
        await client.aclose()


async def test_a_company_over_its_rate_gets_429_with_retry_after(
    rates: list[RequestRate],
) -> None:
    for index in range(10):
        await rates[index % len(rates)].hit("acme", 10)
    with pytest.raises(TooManyRequests) as refused:
        await rates[-1].hit("acme", 10)
    assert refused.value.status_code == 429
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    assert refused.value.details == {"limit": "apiRequestsPerMinute", "allowed": 10}
    await rates[0].hit("globex", 10)  # another company is not held back
    await rates[0].hit("acme", None)  # unlimited: never refused
