from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from tests.faults.servers import S3_ACCESS_KEY, S3_SECRET_KEY, OwnPostgres, OwnRedis, OwnSeaweed
from tests.storage.conftest import s3_admin


def test_own_servers_start_stop_restart(tmp_path: Path) -> None:
    pg = OwnPostgres()
    try:
        pg.init()
        pg.start()
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        pg.stop()
        pg.start()
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("select 2").fetchone() == (2,)
    finally:
        pg.remove()
    r = OwnRedis(tmp_path / "redis")
    try:
        r.start()
        client = redis.Redis.from_url(r.url)
        client.set("k", "v")
        r.stop()
        r.start()
        assert client.get("k") == b"v"
    finally:
        r.stop()


def test_own_s3_server_keeps_its_objects_across_a_restart(tmp_path: Path) -> None:
    s3 = OwnSeaweed(tmp_path / "seaweed")
    try:
        s3.start()
        client = s3_admin(s3.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)
        client.create_bucket(Bucket="smoke-test")
        client.put_object(Bucket="smoke-test", Key="k", Body=b"v")
        s3.stop()
        with pytest.raises(httpx.TransportError):
            httpx.get(s3.endpoint, timeout=1)
        s3.start()
        assert client.get_object(Bucket="smoke-test", Key="k")["Body"].read() == b"v"
    finally:
        s3.stop()
