"""The local multi-region NATS topology: central plus regions, on free ports.

`plan()` picks ports, makes an nkey identity per role (the seed in a 0600 file, the
public key in the server config) and renders cordon/estate/templates/*.conf into a directory;
`NatsTopology` starts, stops and restarts the servers. Tests and `make run` share
it, so both run the configs a deployment would.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cordon.errors import ProcessStartError
from cordon.estate.identities import Identity, new_identity
from cordon.estate.plan import (
    ACCOUNTS,
    CENTRAL_ROLES,
    REGION_ROLES,
    Cluster,
    Estate,
    Material,
    Node,
    NodeTls,
    identity_names,
    replicas_for,
)
from cordon.estate.plan import render as estate_render
from cordon.files import write_private
from cordon.nats.endpoint import Endpoint
from cordon_dev import certs
from cordon_dev.procs import (
    ManagedProcess,
    free_port,
    nats_server_binary,
    stop_all,
    wait_for_http,
)

DEFAULT_REGIONS = ("eu-west", "us-east")


@dataclass(frozen=True)
class ServerPlan:
    name: str
    host: str
    client_port: int
    monitor_port: int
    store_dir: str
    conf_path: str
    zone: str = "a"
    cluster_port: int = 0

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    def endpoint(self, identity: Identity) -> Endpoint:
        return Endpoint(self.url, Path(identity.seed_file))

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    def node(self, leaf_port: int = 0) -> Node:
        return Node(
            self.name,
            self.host,
            self.zone,
            self.client_port,
            self.monitor_port,
            self.cluster_port,
            self.store_dir,
            leaf_port,
        )


@dataclass(frozen=True)
class RegionPlan:
    name: str
    nodes: tuple[ServerPlan, ...]  # one server, or a JetStream cluster
    identities: dict[str, Identity]  # "<account>-<role>" -> its nkey user

    @property
    def server(self) -> ServerPlan:
        """The first node (the only one of an unclustered region)."""
        return self.nodes[0]

    @property
    def replicas(self) -> int:
        return replicas_for(len(self.nodes))

    def endpoint(self, account: str, role: str) -> Endpoint:
        """`role`'s identity in `account`: AUDIT (full records, only in-region
        processes) or XR (what may cross regions). It dials every node of the region."""
        urls = ",".join(node.url for node in self.nodes)
        return Endpoint(urls, Path(self.identities[f"{account}-{role}"].seed_file))

    @property
    def audit_endpoint(self) -> Endpoint:
        """Setup's identity in the AUDIT account."""
        return self.endpoint("audit", "provision")

    @property
    def xr_endpoint(self) -> Endpoint:
        """Setup's identity in the region's XR account."""
        return self.endpoint("xr", "provision")


@dataclass(frozen=True)
class TopologyPlan:
    root: str
    host: str
    central: ServerPlan
    central_identities: dict[str, Identity]  # role -> its nkey user
    leaf_port: int
    regions: dict[str, RegionPlan] = field(default_factory=dict)

    def central_endpoint(self, role: str) -> Endpoint:
        return self.central.endpoint(self.central_identities[role])

    @property
    def central_provision(self) -> Endpoint:
        """Setup's identity at central."""
        return self.central_endpoint("provision")

    @property
    def servers(self) -> list[ServerPlan]:
        return [self.central, *(n for r in self.regions.values() for n in r.nodes)]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _server_plan(
    name: str, root: Path, host: str, zone: str = "a", clustered: bool = False
) -> ServerPlan:
    store = root / "nats" / name / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    return ServerPlan(
        name=name,
        host=host,
        client_port=free_port(host),
        monitor_port=free_port(host),
        store_dir=str(store),
        conf_path=str(root / "nats" / f"{name}.conf"),
        zone=zone,
        cluster_port=free_port(host) if clustered else 0,
    )


def _region_nodes(region: str, root: Path, host: str, size: int) -> tuple[ServerPlan, ...]:
    """`size` 1: one server named after the region; more: `<region>-a`, `-b`, ... each
    in its own zone."""
    if size == 1:
        return (_server_plan(region, root, host),)
    zones = string.ascii_lowercase[:size]
    return tuple(_server_plan(f"{region}-{z}", root, host, z, clustered=True) for z in zones)


def plan(
    root: Path,
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    host: str = "127.0.0.1",
    leaf_dial_ports: Mapping[str, int] | None = None,
    cluster_sizes: Mapping[str, int] | None = None,
) -> TopologyPlan:
    """Choose ports and identities and write the rendered server configs under `root`.

    `leaf_dial_ports`: for a region, the port its leaf connection dials instead of
    central's leaf port (a `cordon_dev.wan.WanLink` in between). `cluster_sizes`: the
    regions that run as a JetStream cluster of that many nodes (the rest: one server)."""
    keys = root / "nkeys"
    identities = {name: new_identity(keys / f"{name}.nk") for name in identity_names(regions)}
    central = _server_plan("central", root, host)
    leaf_port = free_port(host)
    sizes = cluster_sizes or {}
    topology = TopologyPlan(
        root=str(root),
        host=host,
        central=central,
        central_identities={role: identities[f"central-{role}"] for role in CENTRAL_ROLES},
        leaf_port=leaf_port,
        regions={
            region: RegionPlan(
                region,
                _region_nodes(region, root, host, sizes.get(region, 1)),
                {
                    f"{a}-{r}": identities[f"{region}-{a}-{r}"]
                    for a in ACCOUNTS
                    for r in REGION_ROLES
                },
            )
            for region in regions
        },
    )
    estate = Estate(
        central=Cluster("central", (central.node(leaf_port),)),
        regions={
            r: Cluster(r, tuple(n.node() for n in p.nodes)) for r, p in topology.regions.items()
        },
        bind=host,
        leaf_dial={
            region: (f"nats-leaf://{host}:{port}",)
            for region, port in (leaf_dial_ports or {}).items()
        },
    )
    material = Material(
        public_keys={name: each.public_key for name, each in identities.items()},
        # The one seed in a server config (0600): what the leaf logs in with.
        leaf_seeds={
            r: '"' + Path(identities[f"leaf-{r}"].seed_file).read_text().strip() + '"'
            for r in regions
        },
        tls=_dev_tls(root / "pki", host, topology),
    )
    configs = estate_render(estate, material)
    for server in topology.servers:
        write_private(Path(server.conf_path), configs[server.name])
    return topology


def _dev_tls(out: Path, host: str, topology: TopologyPlan) -> dict[str, NodeTls]:
    """Fresh development PKIs: the leaf CA, and a route CA per clustered region."""
    leaf = certs.leaf_pki(out, host, tuple(topology.regions))
    tls = {
        topology.central.name: NodeTls(leaf.ca_file, leaf.central.cert_file, leaf.central.key_file)
    }
    for region, region_plan in topology.regions.items():
        pair = leaf.regions[region]
        names = tuple(node.name for node in region_plan.nodes)
        routes = certs.route_pki(out / region, host, region, names) if len(names) > 1 else None
        for name in names:
            route = routes and routes.nodes[name]
            tls[name] = NodeTls(
                leaf.ca_file,
                pair.cert_file,
                pair.key_file,
                (route.cert_file, route.key_file, routes.ca_file) if routes and route else None,
            )
    return tls


class NatsTopology:
    """The running nats-server processes of a `TopologyPlan`."""

    def __init__(self, topology: TopologyPlan) -> None:
        self.plan = topology
        root = Path(topology.root)
        servers = topology.servers
        self.servers = {s.name: s for s in servers}
        self.processes = {
            s.name: ManagedProcess(
                f"nats-{s.name}",
                [nats_server_binary(), "-c", s.conf_path],
                root / "logs" / f"nats-{s.name}.log",
            )
            for s in servers
        }

    def start(self, name: str | None = None, timeout: float = 15.0) -> None:
        names = [name] if name else list(self.processes)
        for each in names:
            self.processes[each].start()
        for each in names:
            server = self.servers[each]
            # A cluster answers JetStream requests once it has a meta leader, which the
            # full health check waits for; until then requests go unanswered.
            check = "" if server.cluster_port else "?js-enabled-only=true"
            try:
                wait_for_http(
                    f"{server.monitor_url}/healthz{check}",
                    timeout,
                    self.processes[each].proc,
                )
            except ProcessStartError as exc:
                tail = self.processes[each].log_tail(10)
                raise ProcessStartError(f"nats-{each}: {exc}\n{tail}") from exc

    def stop(self, name: str | None = None) -> None:
        names = [name] if name else list(self.processes)
        stop_all(self.processes[each] for each in names)

    def wait_leafnodes(self, timeout: float = 15.0) -> None:
        """Block until central sees one leaf connection per regional server."""
        import json
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        url = f"{self.plan.central.monitor_url}/leafz"
        want = sum(len(region.nodes) for region in self.plan.regions.values())
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url, timeout=1) as response:
                if json.load(response).get("leafnodes", 0) >= want:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"central did not see {want} leaf connections in {timeout}s")
