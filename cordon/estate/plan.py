"""One description of the whole NATS estate — central and every region, each one server
or a JetStream cluster — rendered into one cordon/estate/templates/*.conf per server.

`make run` and the tests describe a local estate on free ports
(`cordon_dev.topology.plan`); a deployment describes its own in YAML
(deploy/nats/estate.yaml) and renders it with `cordon nats render`. Both go through
`render`, so the servers under test run what a deployment runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cordon.errors import TemplateError
from cordon.estate import natsconf

__all__ = [
    "ACCOUNTS",
    "CENTRAL_ROLES",
    "REGION_ROLES",
    "Cluster",
    "Estate",
    "Material",
    "Node",
    "NodeTls",
    "identity_names",
    "render",
    "replicas_for",
]

# Each role's NATS identity (cordon/estate/templates/*.conf says what each may do). `provision`
# creates streams, buckets and consumers and is used only by setup.
REGION_ROLES = ("provision", "gateway", "sealer", "audit-api")
CENTRAL_ROLES = ("provision", "replicator", "aggregator", "publisher")
ACCOUNTS = ("audit", "xr")


def replicas_for(servers: int) -> int:
    """How many copies each stream and bucket keeps on a place of `servers` servers:
    one each, up to three (a quorum survives the loss of any one)."""
    return min(3, servers)


@dataclass(frozen=True)
class Node:
    """One nats-server: the name it has in its cluster, the address the others dial, its
    zone (replicas of a stream land in different zones) and its ports."""

    name: str
    host: str
    zone: str
    client_port: int
    monitor_port: int
    cluster_port: int
    store_dir: str
    leaf_port: int = 0  # central's nodes: where regions' leaf connections arrive

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"


@dataclass(frozen=True)
class Cluster:
    """Central or one region: a single server, or a JetStream cluster of three or more."""

    name: str
    nodes: tuple[Node, ...]

    @property
    def replicas(self) -> int:
        return replicas_for(len(self.nodes))

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated: what a process is told to dial."""
        return ",".join(node.url for node in self.nodes)


@dataclass(frozen=True)
class Estate:
    central: Cluster
    regions: Mapping[str, Cluster]
    bind: str = "0.0.0.0"  # the address every server listens on
    # region -> the leaf URLs it dials instead of every central node's (a load balancer
    # in front of central, or in tests a `cordon_dev.wan.WanLink`)
    leaf_dial: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeTls:
    """Files a node's config names: the leaf CA and the node's leaf certificate, and for
    a clustered node its route certificate, key and the cluster's route CA."""

    leaf_ca: str
    leaf_cert: str
    leaf_key: str
    route: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class Material:
    """What the configs name but the description does not hold."""

    public_keys: Mapping[str, str]  # identity name (`identity_names`) -> public nkey
    leaf_seeds: Mapping[str, str]  # region -> the value after `nkey:` in its leaf remote
    tls: Mapping[str, NodeTls]  # node name -> its files


def identity_names(regions: Iterable[str]) -> list[str]:
    """Every nkey user the estate's configs name."""
    names = ["sys", *(f"central-{role}" for role in CENTRAL_ROLES)]
    for region in regions:
        names.append(f"leaf-{region}")
        names += [f"{region}-{a}-{r}" for a in ACCOUNTS for r in REGION_ROLES]
    return names


def render(estate: Estate, material: Material) -> dict[str, str]:
    """Node name -> its rendered config, for every node of the estate."""
    missing = set(identity_names(estate.regions)) - set(material.public_keys)
    if missing:
        raise TemplateError(f"no public key for {', '.join(sorted(missing))}")
    configs = {node.name: _render_central(estate, node, material) for node in estate.central.nodes}
    for region, cluster in estate.regions.items():
        for node in cluster.nodes:
            configs[node.name] = _render_region(estate, region, node, material)
    return configs


def _common(estate: Estate, cluster: Cluster, node: Node, material: Material) -> dict[str, Any]:
    tls = material.tls[node.name]
    routes = [f"{n.host}:{n.cluster_port}" for n in cluster.nodes] if len(cluster.nodes) > 1 else []
    return {
        "server_name": node.name,
        "zone": node.zone,
        "host": estate.bind,
        "client_port": node.client_port,
        "monitor_port": node.monitor_port,
        "store_dir": node.store_dir,
        "sys_nkey": material.public_keys["sys"],  # monitoring only; nothing uses it
        "leaf_ca_file": tls.leaf_ca,
        "leaf_cert_file": tls.leaf_cert,
        "leaf_key_file": tls.leaf_key,
        "cluster": natsconf.cluster_block(
            cluster.name, f"{estate.bind}:{node.cluster_port}", routes, tls.route
        ),
    }


def _render_central(estate: Estate, node: Node, material: Material) -> str:
    keys = material.public_keys
    regions = list(estate.regions)
    values = {
        **_common(estate, estate.central, node, material),
        **{f"{role}_nkey": keys[f"central-{role}"] for role in CENTRAL_ROLES},
        "leaf_port": node.leaf_port,
        "leaf_users": natsconf.leaf_users_block({r: keys[f"leaf-{r}"] for r in regions}),
        "replicator_region_subjects": natsconf.replicator_region_subjects(regions),
        "publisher_region_subjects": natsconf.publisher_region_subjects(regions),
    }
    return natsconf.render_file("central.conf", values)


def _render_region(estate: Estate, region: str, node: Node, material: Material) -> str:
    keys = material.public_keys
    leaf_urls = estate.leaf_dial.get(region) or tuple(
        f"nats-leaf://{n.host}:{n.leaf_port}" for n in estate.central.nodes
    )
    values = {
        **_common(estate, estate.regions[region], node, material),
        "region": region,
        **{
            f"{a}_{r.replace('-', '_')}_nkey": keys[f"{region}-{a}-{r}"]
            for a in ACCOUNTS
            for r in REGION_ROLES
        },
        "leaf_seed": material.leaf_seeds[region],
        "central_leaf_urls": natsconf.quoted_list(leaf_urls),
    }
    return natsconf.render_file("region.conf", values)


# -- a deployment's description (deploy/nats/estate.yaml) ---------------------------------


@dataclass(frozen=True)
class Description:
    """An estate as a deployment describes it, and where its servers find their TLS files."""

    estate: Estate
    tls_dir: str

    def node_tls(self) -> dict[str, NodeTls]:
        """The same file names in every server (each mounts its own at `tls_dir`)."""
        d = self.tls_dir.rstrip("/")
        leaf = (f"{d}/leaf-ca.crt", f"{d}/leaf.crt", f"{d}/leaf.key")
        route = (f"{d}/route.crt", f"{d}/route.key", f"{d}/route-ca.crt")
        tls = {}
        for cluster in (self.estate.central, *self.estate.regions.values()):
            for node in cluster.nodes:
                tls[node.name] = NodeTls(*leaf, route if len(cluster.nodes) > 1 else None)
        return tls


def describe(raw: object) -> Description:
    """The estate a parsed estate.yaml describes; `TemplateError` naming what is wrong."""
    doc = _mapping(raw, "the estate")
    ports = _mapping(doc.get("ports", {}), "ports")
    port = {k: int(ports.get(k, v)) for k, v in _DEFAULT_PORTS.items()}
    store_dir = str(doc.get("store_dir", "/data/jetstream"))
    central_doc = _mapping(doc.get("central"), "central")
    regions_doc = _mapping(doc.get("regions"), "regions")
    central = _cluster("central", central_doc, port, store_dir, leaf=True)
    leaf_urls = tuple(str(u) for u in central_doc.get("leaf_urls", ()))
    regions = {
        str(r): _cluster(str(r), _mapping(c, r), port, store_dir) for r, c in regions_doc.items()
    }
    names = [n.name for c in (central, *regions.values()) for n in c.nodes]
    if len(set(names)) != len(names):
        raise TemplateError("every node needs a name of its own across the estate")
    estate = Estate(
        central,
        regions,
        str(doc.get("bind", "0.0.0.0")),
        {r: leaf_urls for r in regions} if leaf_urls else {},
    )
    return Description(estate, str(doc.get("tls_dir", "/etc/nats/tls")))


_DEFAULT_PORTS = {"client": 4222, "cluster": 6222, "monitor": 8222, "leaf": 7422}


def _mapping(raw: object, what: object) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise TemplateError(f"{what}: expected a mapping")
    return raw


def _cluster(
    name: str, doc: Mapping[str, Any], port: Mapping[str, int], store_dir: str, leaf: bool = False
) -> Cluster:
    nodes_doc = doc.get("nodes")
    if not isinstance(nodes_doc, list) or len(nodes_doc) not in (1, 3, 5):
        raise TemplateError(f"{name}: nodes must list 1, 3 or 5 servers (a Raft quorum)")
    nodes = []
    for raw in nodes_doc:
        node = _mapping(raw, f"{name}: a node")
        missing = [k for k in ("name", "host", "zone") if not node.get(k)]
        if missing:
            raise TemplateError(f"{name}: a node without {', '.join(missing)}")
        nodes.append(
            Node(
                str(node["name"]),
                str(node["host"]),
                str(node["zone"]),
                port["client"],
                port["monitor"],
                port["cluster"],
                store_dir,
                port["leaf"] if leaf else 0,
            )
        )
    if len(nodes) > 1 and len({n.zone for n in nodes}) < len(nodes):
        raise TemplateError(f"{name}: put each node in a zone of its own (unique_tag)")
    return Cluster(name, tuple(nodes))
