from pathlib import Path

import psycopg
import redis

from tests.faults.servers import OwnPostgres, OwnRedis


def test_own_servers_start_stop_restart(tmp_path: Path) -> None:
    pg = OwnPostgres()
    pg.init()
    pg.start()
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    pg.stop()
    pg.start()
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("select 2").fetchone() == (2,)
    pg.remove()
    r = OwnRedis(tmp_path / "redis")
    r.start()
    client = redis.Redis.from_url(r.url)
    client.set("k", "v")
    r.stop()
    r.start()
    assert client.get("k") == b"v"
    r.stop()
