"""Redis URLs as Tenantry reads them: one server, or the startup nodes of a Redis Cluster.

A server: `redis://`, `rediss://` or `unix://` (redis-py's own format). A cluster:
`redis+cluster://[user:password@]host:port[,host:port...][/0]`, or `rediss+cluster://`
for TLS; the client discovers the rest of the cluster from any node that answers.
Pure parsing (no client library): the settings check every URL at load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

SERVER_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_NODE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d{1,5})$")

Node = tuple[str, int]


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def one_slot(name: str, cluster: bool) -> str:
    """`name` as a hash tag on a cluster, so every key built on it shares one slot;
    unchanged on a server (its keys stay what they always were)."""
    return f"{{{name}}}" if cluster else name


def parse_nodes(text: str) -> tuple[Node, ...]:
    """`host:port,host:port` (IPv6 as `[::1]:7000`); raises ValueError naming the bad one."""
    nodes: list[Node] = []
    for item in (part.strip() for part in text.split(",")):
        match = _NODE.fullmatch(item)
        port = int(match["port"]) if match else 0
        if match is None or not 1 <= port <= 65535:
            raise ValueError(f"{item!r} is not a host:port (port 1-65535)")
        node = (match["v6"] or match["host"], port)
        if node not in nodes:
            nodes.append(node)
    return tuple(nodes)


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    nodes: tuple[Node, ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> ClusterUrl:
        parts = urlsplit(url)
        if parts.scheme.lower() not in CLUSTER_SCHEMES:
            raise ValueError(f"a cluster URL starts with {' or '.join(CLUSTER_SCHEMES)}://")
        if parts.query or parts.fragment:
            raise ValueError("a cluster URL takes no ?options")
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"Redis Cluster has database 0 only, not {parts.path.strip('/')!r}")
        credentials, _, hosts = parts.netloc.rpartition("@")
        username, _, password = credentials.partition(":")
        return cls(
            nodes=parse_nodes(hosts),
            username=unquote(username) or None,
            password=unquote(password) or None,
            tls=parts.scheme.lower() == "rediss+cluster",
        )

    def __str__(self) -> str:
        scheme = CLUSTER_SCHEMES[1] if self.tls else CLUSTER_SCHEMES[0]
        auth = ""
        if self.username or self.password:
            user = quote(self.username or "", safe="")
            auth = f"{user}:{quote(self.password or '', safe='')}@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)
        return f"{scheme}://{auth}{hosts}"


def check_url(url: str) -> None:
    """Raise ValueError unless `url` is a server URL or a cluster URL Tenantry can use."""
    if is_cluster_url(url):
        ClusterUrl.parse(url)
        return
    parts = urlsplit(url)
    if parts.scheme.lower() not in SERVER_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in SERVER_SCHEMES + CLUSTER_SCHEMES)
        raise ValueError(f"a Redis URL starts with one of {schemes}")
    _ = parts.port  # raises ValueError for a port out of range or not a number
