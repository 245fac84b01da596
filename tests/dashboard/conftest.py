from __future__ import annotations

import re

import pytest
from httpx import AsyncClient

from tests.conftest import ADMIN_TOKEN


async def log_in(client: AsyncClient) -> str:
    """Log the client in; returns the page's CSRF token."""
    response = await client.post("/admin/login", data={"key": ADMIN_TOKEN, "next": "/admin"})
    assert response.status_code == 303
    page = await client.get("/admin")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, "the page carries a CSRF token"
    return match.group(1)


@pytest.fixture
async def csrf(client: AsyncClient) -> str:
    return await log_in(client)
