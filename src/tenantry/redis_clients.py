"""Every Redis client Tenantry opens is made here, from one URL (see redis_url.py).

`client(url, **options)` gives a `Redis` for a server URL and a `RedisCluster` for a
cluster URL, each with the caller's own options (timeouts, retries). On a cluster:

- every multi-key command and script keeps to one slot, by a hash tag in its keys:
  `{<company>}` for a company's cache and rate keys, `{<queue>}` for a BullMQ queue,
  `{tenantry:queries}` for the query figures (`redis_url.one_slot`);
- pub/sub: redis-py's asyncio `RedisCluster` has none, and needs none: a PUBLISH on any
  node reaches every node, so `pubsub()` subscribes on one node, chosen afresh (among
  those that answer) each time, so a listener that lost its node moves to another;
- "Redis is down" (`REDIS_DOWN`) includes a cluster between a master's death and its
  replica's promotion (CLUSTERDOWN, TRYAGAIN, a slot no node serves);
- after a failover the promoted replica is known as the master it now is, and a client
  finding its way back costs no more than a CLUSTER SLOTS (`_Cluster`);
- writes that go together go in one `Batch` (a script), not in a MULTI/EXEC pipeline:
  redis-py 7.4's asyncio cluster pipeline runs each command queued in a transaction in
  a thread and event loop of its own, blocking the caller's loop meanwhile.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeAlias, cast

from redis._parsers import AsyncCommandsParser
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.cluster import PRIMARY, REPLICA
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tenantry.redis_url import ClusterUrl, is_cluster_url

AnyRedis: TypeAlias = Redis | RedisCluster

# ClusterError covers CLUSTERDOWN (and MASTERDOWN) and redis-py's "TTL exhausted" after
# redirections that never settled: all of them pass once a replica has taken over.
REDIS_DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
)

# Options of a single-server client that a cluster client does not take.
_SERVER_ONLY = ("single_connection_client",)


def client(url: str, **options: Any) -> AnyRedis:
    """A client for `url` with `options` (redis-py's keyword arguments)."""
    if not is_cluster_url(url):
        return Redis.from_url(url, **options)
    cluster = ClusterUrl.parse(url)
    for name in _SERVER_ONLY:
        options.pop(name, None)
    made = _Cluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.tls,
        **options,
    )
    made.commands_parser = _CommandTable(url)
    return made


class _Cluster(RedisCluster):
    """A RedisCluster whose nodes have the roles the cluster last reported.

    redis-py 7.4 keeps a node's cached object across re-initializations, role and all
    (`NodesManager.set_nodes`): a replica the client saw during a failover stays a
    "replica" once promoted, so what goes to every primary misses it: SCRIPT LOAD after
    a NOSCRIPT above all, so every script on its slots (BullMQ's too) fails for good.
    """

    async def initialize(self) -> RedisCluster:
        await super().initialize()
        manager = self.nodes_manager
        # slots_cache holds each slot's nodes as just reported, its primary first.
        for nodes in {id(nodes): nodes for nodes in manager.slots_cache.values()}.values():
            for index, node in enumerate(nodes):
                cached = manager.nodes_cache.get(node.name)
                if cached is not None:
                    cached.server_type = REPLICA if index else PRIMARY
        return self


class _CommandTable(AsyncCommandsParser):
    """Redis's command table (where each command's keys are), fetched once per process
    and cluster. redis-py 7.4 fetches it (COMMAND: some 240 entries, parsed in Python,
    ~90 ms on a busy machine) at every re-initialization, and a cluster client
    re-initializes after each failed call: during a failover, a process with a dozen
    clients had its event loop blocked for seconds."""

    __slots__ = ("_cluster",)
    _tables: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, cluster: str) -> None:
        super().__init__()
        self._cluster = cluster

    async def initialize(self, node: ClusterNode | None = None) -> None:
        table = self._tables.get(self._cluster)
        if table is None:
            await super().initialize(node)
            table = self._tables[self._cluster] = self.commands
        elif node is not None:
            self.node = node
        self.commands = table


# ARGV: n, command, its n - 1 arguments, n, command, ... (KEYS: every key they write).
_BATCH = """
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


class Batch:
    """Writes applied together by one script call: atomic, as MULTI/EXEC would be; on a
    cluster their keys must share one slot."""

    def __init__(self) -> None:
        self.keys: dict[str, None] = {}
        self.args: list[str | int] = []

    def add(self, command: str, key: str, *args: str | int) -> None:
        self.keys[key] = None
        self.args += [2 + len(args), command, key, *args]

    async def run(self, redis: AnyRedis) -> None:
        if self.args:
            await script(redis, _BATCH)(keys=list(self.keys), args=self.args)


def script(redis: AnyRedis, source: str) -> AsyncScript:
    """A Lua script run by EVALSHA (loaded on first use), on a cluster on the node of the
    slot of its keys: they must share one slot, by a hash tag."""
    # redis-py types register_script for Redis alone; RedisCluster has it and runs it.
    return AsyncScript(cast(Redis, redis), source)


def is_cluster(redis: AnyRedis | None) -> bool:
    return isinstance(redis, RedisCluster)


def database(redis: AnyRedis) -> int:
    """The logical database a client uses (a cluster has database 0 only)."""
    if isinstance(redis, RedisCluster):
        return 0
    return int(redis.connection_pool.connection_kwargs.get("db", 0))


async def ping(redis: AnyRedis) -> None:
    """Every master answers (a cluster is only whole when each of its masters is)."""
    if isinstance(redis, RedisCluster):
        await redis.ping(target_nodes=RedisCluster.PRIMARIES)  # type: ignore[misc]
    else:
        await redis.ping()  # type: ignore[misc]  # redis-py types ping as sync|async


async def publish(redis: AnyRedis, channel: str, message: str) -> None:
    # RedisCluster has no publish(); the command itself goes to any node.
    await redis.execute_command("PUBLISH", channel, message)


@asynccontextmanager
async def pubsub(redis: AnyRedis) -> AsyncIterator[PubSub]:
    """A pub/sub connection; on a cluster, to one node that answers (see above)."""
    if not isinstance(redis, RedisCluster):
        async with redis.pubsub() as subscription:
            yield subscription
        return
    node_client = await _answering_node(redis)
    try:
        async with node_client.pubsub() as subscription:
            yield subscription
    finally:
        await node_client.aclose()


async def _answering_node(cluster: RedisCluster) -> Redis:
    await cluster.initialize()
    nodes = cluster.get_nodes()
    random.shuffle(nodes)
    failure: Exception = RedisConnectionError("the cluster has no node")
    for node in nodes:
        # The node's own connection settings (credentials, TLS), as the cluster uses them.
        pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
        node_client = Redis.from_pool(pool)
        try:
            await node_client.ping()  # type: ignore[misc]
            return node_client
        except REDIS_DOWN as exc:
            failure = exc
            await node_client.aclose()
    raise failure
