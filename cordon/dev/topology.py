"""The local multi-region NATS topology: central plus regions, on free ports.

`plan()` picks ports, makes an nkey identity per role (the seed in a 0600 file, the
public key in the server config) and renders deploy/nats/*.conf into a directory;
`NatsTopology` starts, stops and restarts the servers. Tests and `cordon dev up` share
it, so both run the configs a deployment would.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nkeys

from cordon.dev import certs, natsconf
from cordon.dev.procs import (
    ManagedProcess,
    free_port,
    nats_server_binary,
    stop_all,
    wait_for_http,
)
from cordon.files import write_private
from cordon.nats.endpoint import Endpoint

DEFAULT_REGIONS = ("eu-west", "us-east")


@dataclass(frozen=True)
class Identity:
    """A NATS user: the public nkey its server knows, and the file with its seed."""

    public_key: str
    seed_file: str


def new_identity(seed_file: Path) -> Identity:
    """A fresh nkey user; the seed is written 0600 from the start."""
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    write_private(seed_file, seed.decode())
    return Identity(nkeys.from_seed(bytearray(seed)).public_key.decode(), str(seed_file))


@dataclass(frozen=True)
class ServerPlan:
    name: str
    host: str
    client_port: int
    monitor_port: int
    store_dir: str
    conf_path: str

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    def endpoint(self, identity: Identity) -> Endpoint:
        return Endpoint(self.url, Path(identity.seed_file))

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"


# Each role's NATS identity (deploy/nats/*.conf says what each may do). `provision`
# creates streams, buckets and consumers and is used only by setup.
REGION_ROLES = ("provision", "gateway", "sealer", "audit-api")
CENTRAL_ROLES = ("provision", "replicator", "aggregator", "publisher")
ACCOUNTS = ("audit", "xr")


@dataclass(frozen=True)
class RegionPlan:
    name: str
    server: ServerPlan
    identities: dict[str, Identity]  # "<account>-<role>" -> its nkey user

    def endpoint(self, account: str, role: str) -> Endpoint:
        """`role`'s identity in `account`: AUDIT (full records, only in-region
        processes) or XR (what may cross regions)."""
        return self.server.endpoint(self.identities[f"{account}-{role}"])

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _server_plan(name: str, root: Path, host: str) -> ServerPlan:
    store = root / "nats" / name / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    return ServerPlan(
        name=name,
        host=host,
        client_port=free_port(host),
        monitor_port=free_port(host),
        store_dir=str(store),
        conf_path=str(root / "nats" / f"{name}.conf"),
    )


def plan(
    root: Path,
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    host: str = "127.0.0.1",
    leaf_dial_ports: Mapping[str, int] | None = None,
) -> TopologyPlan:
    """Choose ports and identities and write the rendered server configs under `root`.

    `leaf_dial_ports`: for a region, the port its leaf connection dials instead of
    central's leaf port (a `cordon.dev.wan.WanLink` in between)."""
    keys = root / "nkeys"

    def identity(name: str) -> Identity:
        return new_identity(keys / f"{name}.nk")

    central = _server_plan("central", root, host)
    leaf_port = free_port(host)
    leaves = {region: identity(f"leaf-{region}") for region in regions}
    topology = TopologyPlan(
        root=str(root),
        host=host,
        central=central,
        central_identities={role: identity(f"central-{role}") for role in CENTRAL_ROLES},
        leaf_port=leaf_port,
        regions={
            region: RegionPlan(
                region,
                _server_plan(region, root, host),
                {f"{a}-{r}": identity(f"{region}-{a}-{r}") for a in ACCOUNTS for r in REGION_ROLES},
            )
            for region in regions
        },
    )
    pki = certs.leaf_pki(root / "pki", host, regions)
    common = {
        "host": host,
        "sys_nkey": identity("sys").public_key,  # monitoring only; nothing uses it
        "leaf_ca_file": pki.ca_file,
    }
    write_private(
        Path(central.conf_path),
        natsconf.render_file(
            "central.conf",
            {
                **common,
                "client_port": central.client_port,
                "monitor_port": central.monitor_port,
                "store_dir": central.store_dir,
                **{
                    f"{role}_nkey": each.public_key
                    for role, each in topology.central_identities.items()
                },
                "leaf_port": leaf_port,
                "leaf_cert_file": pki.central.cert_file,
                "leaf_key_file": pki.central.key_file,
                "leaf_users": natsconf.leaf_users_block(
                    {region: each.public_key for region, each in leaves.items()}
                ),
                "replicator_region_subjects": natsconf.replicator_region_subjects(regions),
                "publisher_region_subjects": natsconf.publisher_region_subjects(regions),
            },
        ),
    )
    for region, region_plan in topology.regions.items():
        server = region_plan.server
        write_private(
            Path(server.conf_path),
            natsconf.render_file(
                "region.conf",
                {
                    **common,
                    "region": region,
                    "client_port": server.client_port,
                    "monitor_port": server.monitor_port,
                    "store_dir": server.store_dir,
                    **{
                        f"{user.replace('-', '_')}_nkey": each.public_key
                        for user, each in region_plan.identities.items()
                    },
                    # The one seed in a server config (0600): what the leaf logs in with.
                    "leaf_seed": Path(leaves[region].seed_file).read_text().strip(),
                    "leaf_cert_file": pki.regions[region].cert_file,
                    "leaf_key_file": pki.regions[region].key_file,
                    "central_host": host,
                    "central_leaf_port": (leaf_dial_ports or {}).get(region, leaf_port),
                },
            ),
        )
    return topology


class NatsTopology:
    """The running nats-server processes of a `TopologyPlan`."""

    def __init__(self, topology: TopologyPlan) -> None:
        self.plan = topology
        root = Path(topology.root)
        servers = [topology.central, *(r.server for r in topology.regions.values())]
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
            wait_for_http(
                f"{server.monitor_url}/healthz?js-enabled-only=true",
                timeout,
                self.processes[each].proc,
            )

    def stop(self, name: str | None = None) -> None:
        names = [name] if name else list(self.processes)
        stop_all(self.processes[each] for each in names)

    def wait_leafnodes(self, timeout: float = 15.0) -> None:
        """Block until central sees one leaf connection per region."""
        import json
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        url = f"{self.plan.central.monitor_url}/leafz"
        want = len(self.plan.regions)
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url, timeout=1) as response:
                if json.load(response).get("leafnodes", 0) >= want:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"central did not see {want} leaf connections in {timeout}s")
