"""Leasing a Redis logical database (1-15) to one user: a test, or a benchmark run.

Leases are keys in db 0 set with NX and a 15-minute expiry, so concurrent pytest
processes and benchmarks on one Redis server never share a database.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis as redis_sync


@contextmanager
def leased_redis_db(server_url: str, owner: str = "test") -> Iterator[str]:
    """The URL of a database nobody else holds on `server_url`, flushed before and after."""
    control = redis_sync.Redis.from_url(f"{server_url}/0")
    lease = f"tenantry-{owner}-lease:{os.getpid()}:{uuid.uuid4().hex}"
    db = None
    deadline = time.monotonic() + 120
    while db is None:
        for candidate in random.sample(range(1, 16), 15):
            if control.set(f"tenantry-test-db:{candidate}", lease, nx=True, ex=900):
                db = candidate
                break
        else:
            if time.monotonic() > deadline:
                raise RuntimeError("no free Redis db in 120 s")
            time.sleep(0.2)
    url = f"{server_url}/{db}"
    client = redis_sync.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if control.get(f"tenantry-test-db:{db}") == lease.encode():
            control.delete(f"tenantry-test-db:{db}")
        control.close()
