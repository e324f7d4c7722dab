"""`make run`: the whole topology on one machine, and the test harness's too.

Central + regions on real nats-server processes, streams and buckets provisioned,
a mock provider, the dev MCP tool server (which every gateway fronts), and per region
a gateway, a sealer and an audit API; centrally the replicator and the aggregator.
Every process is a real `cordon ...` child.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cordon.errors import ProcessStartError
from cordon.estate.plan import ACCOUNTS, CENTRAL_ROLES, REGION_ROLES
from cordon.files import write_private
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey, public_bytes
from cordon.nats.provision import Targets, provision
from cordon.tokens import ROLES, grant_settings, new_token
from cordon_dev import certs, mock_provider
from cordon_dev.procs import ManagedProcess, free_port, port_is_free, stop_all, wait_for_http
from cordon_dev.topology import (
    DEFAULT_REGIONS,
    NatsTopology,
    TopologyPlan,
    plan,
)
from cordon_dev.wan import WanLink

DEV_API_KEY = "cordon-dev-key"
# Who DEV_API_KEY is: the baseline pack keeps some tools from this role.
DEV_APP: dict[str, Any] = {"agent": "dev-app", "roles": ["developer"], "scopes": ["chat"]}
BASELINE_PACK = Path(__file__).resolve().parents[1] / "deploy" / "packs" / "default.yaml"
DEFAULT_PORTS = {
    "mock": 8600,
    "tool-server": 8700,
    "aggregator": 8500,
    "eu-west": 8401,
    "us-east": 8402,
    "nats-metrics": 7777,  # prometheus-nats-exporter's default port
}
DEV_TOOLS = "dev-tools"  # the baseline pack's name for the dev MCP tool server
# The readiness probe of the tool server: MCP's first request (its one endpoint has no GET).
MCP_INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "cordon-dev-stack", "version": "1"},
        },
    }
).encode()
MCP_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
}


@dataclass
class Endpoints:
    gateways: dict[str, str] = field(default_factory=dict)
    audit_apis: dict[str, str] = field(default_factory=dict)
    regional_public_keys: dict[str, str] = field(default_factory=dict)
    aggregator: str = ""
    replicator_metrics: str = ""
    nats_metrics: str = ""  # every NATS server's metrics, as prometheus-nats-exporter's
    mock_provider: str = ""
    tool_server: str = ""  # the dev MCP tool server's own /mcp URL (ungoverned)
    api_key: str = DEV_API_KEY

    @property
    def mcp(self) -> dict[str, dict[str, str]]:
        """Per region, each tool server the baseline pack declares, at its gateway."""
        return {
            region: {DEV_TOOLS: f"{url}/mcp/{DEV_TOOLS}"} for region, url in self.gateways.items()
        }


def provision_targets(topology: TopologyPlan, pack_trust: list[str]) -> Targets:
    """The dev topology, as setup's provisioning identity sees it."""
    return Targets(
        central=topology.central_provision,
        regions={name: (r.audit_endpoint, r.xr_endpoint) for name, r in topology.regions.items()},
        pack_trust=tuple(pack_trust),
        replicas={name: r.replicas for name, r in topology.regions.items()},
    )


def _load_or_create_key(path: Path) -> SigningKey:
    return SigningKey.load_or_create(path)


def _load_or_create_secret(path: Path) -> str:
    if not path.exists():
        write_private(path, secrets.token_hex(32))
    return path.read_text().strip()


class DevStack:
    def __init__(
        self,
        root: Path,
        regions: tuple[str, ...] = DEFAULT_REGIONS,
        host: str = "127.0.0.1",
        fixed_ports: bool = False,
        wan: bool = False,
        aggregator_store_dsn: str | None = None,
        cluster_sizes: dict[str, int] | None = None,
    ) -> None:
        """`wan`: route each region's leaf connection through a `WanLink` (`self.wan`),
        which tests delay and partition. `aggregator_store_dsn`: the central view on
        PostgreSQL instead of SQLite. `cluster_sizes`: regions whose NATS is a JetStream
        cluster of that many nodes (`<region>-a`, `-b`, ...; R3 streams and buckets)."""
        self.root = root.resolve()
        self.regions = regions
        self.host = host
        self.fixed_ports = fixed_ports
        self.endpoints = Endpoints()
        self.processes: dict[str, ManagedProcess] = {}
        self.topology: TopologyPlan | None = None
        self.wan_enabled = wan
        self.aggregator_store_dsn = aggregator_store_dsn
        self.cluster_sizes = cluster_sizes or {}
        self.wan: dict[str, WanLink] = {}
        self.nats: NatsTopology | None = None
        # Dev bearer tokens per role (endpoints.json); settings get only their digests.
        self.tokens = {role: new_token() for role in ROLES}  # auditor, sre, admin, policy
        self.tokens |= {f"auditor-{region}": new_token() for region in regions}

    # -- helpers -------------------------------------------------------------
    def _grants(self) -> list[dict[str, Any]]:
        """Every dev token, as the APIs' settings hold them; each API decides by role."""
        grants = [grant_settings(f"dev-{role}", self.tokens[role], [role], ["*"]) for role in ROLES]
        return grants + [
            grant_settings(f"dev-auditor-{r}", self.tokens[f"auditor-{r}"], ["auditor"], [r])
            for r in self.regions
        ]

    def _port(self, name: str) -> int:
        if not (self.fixed_ports and name in DEFAULT_PORTS):
            return free_port(self.host)
        port = DEFAULT_PORTS[name]
        if not port_is_free(self.host, port):
            raise ProcessStartError(
                f"port {port} ({name}) is in use: is another `make run` running?"
            )
        return port

    def _write_config(self, name: str, config: dict[str, Any]) -> Path:
        path = self.root / "config" / f"{name}.json"
        write_private(path, json.dumps(config, indent=2))
        return path

    def _spawn(
        self, name: str, *args: str, env: dict[str, str] | None = None, module: str = "cordon_cli"
    ) -> ManagedProcess:
        """Run `python -m <module> <args>`: the product's CLI, or (for the mock provider)
        this harness, which is not installed: its source folder goes on the path."""
        if module == "cordon_dev":
            env = {**(env or {}), "PYTHONPATH": _with_source_folder(os.environ.get("PYTHONPATH"))}
        proc = ManagedProcess(
            name, [sys.executable, "-m", module, *args], self.root / "logs" / f"{name}.log", env
        )
        proc.start()
        self.processes[name] = proc
        return proc

    # -- lifecycle -------------------------------------------------------------
    @property
    def policy_owner_key(self) -> Path:
        return self.root / "keys" / "policy-owner.key"

    def _pack_trust(self) -> list[str]:
        return [public_bytes(_load_or_create_key(self.policy_owner_key).public_key).hex()]

    def start(self) -> Endpoints:
        dial = {region: free_port(self.host) for region in self.regions} if self.wan_enabled else {}
        self.topology = plan(self.root / "run", self.regions, self.host, dial, self.cluster_sizes)
        for region, port in dial.items():
            self.wan[region] = WanLink(self.host, port, self.topology.leaf_port)
            self.wan[region].start()
        self.provider_pki = certs.provider_pki(self.root / "run" / "provider-pki", self.host)
        self.nats = NatsTopology(self.topology)
        self.nats.start()
        self.nats.wait_leafnodes()
        asyncio.run(provision(provision_targets(self.topology, self._pack_trust())))
        self._start_nats_metrics()  # `_wait_ready` waits for it
        tool_server = self._start_tool_server()  # it boots while the mock does
        mock_port = self._port("mock")
        self.endpoints.mock_provider = f"http://{self.host}:{mock_port}/v1"
        mock = self._spawn(
            "mock-provider",
            "mock-provider",
            "--host",
            self.host,
            "--port",
            str(mock_port),
            module="cordon_dev",
        )
        wait_for_http(f"http://{self.host}:{mock_port}/healthz", 20, mock.proc)
        wait_for_http(self.endpoints.tool_server, 20, tool_server.proc, MCP_INITIALIZE, MCP_HEADERS)
        for region in self.regions:
            self._start_region(region)
        self._start_central()
        self._wait_ready()
        self._enforce_baseline()
        # It holds every role's credentials: for the person who ran `make run` only.
        write_private(self.root / "endpoints.json", json.dumps(self.describe(), indent=2))
        return self.endpoints

    def start_gateway(
        self,
        region: str,
        replica: str,
        upstream_base_url: str,
        port: int | None = None,
        pack_name: str = "default",
        extra: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Start one more gateway replica in `region`, enrolled by the regional key."""
        port = port or free_port(self.host)
        name = f"gateway-{region}" if replica == "gw-1" else f"gateway-{region}-{replica}"
        config = self.gateway_config(
            region, replica, upstream_base_url, port, pack_name=pack_name, extra=extra
        )
        self._spawn(name, "gateway", "run", "--config", str(config), env=env)
        return f"http://{self.host}:{port}"

    def gateway_config(
        self,
        region: str,
        replica: str,
        upstream_base_url: str,
        port: int,
        pack_name: str = "default",
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """The settings file of a replica of `region` (its key enrolled by the regional
        key), for `start_gateway` or a test that runs the replica in-process."""
        assert self.topology is not None
        region_plan = self.topology.regions[region]
        keys = self.root / "keys" / region
        regional_key = _load_or_create_key(keys / "regional.key")
        replica_key = _load_or_create_key(keys / f"{replica}.key")
        enrolment_path = keys / f"{replica}.enrolment"
        enrolment_path.write_bytes(enrol(regional_key, region, replica, replica_key))
        name = f"gateway-{region}" if replica == "gw-1" else f"gateway-{region}-{replica}"
        return self._write_config(
            name,
            {
                "region": region,
                "replica": replica,
                "host": self.host,
                "port": port,
                "audit_nats": region_plan.endpoint("audit", "gateway").to_settings(),
                "xr_nats": region_plan.endpoint("xr", "gateway").to_settings(),
                "targets": mock_provider.targets(upstream_base_url),
                "signing_key_file": str(keys / f"{replica}.key"),
                "enrolment_file": str(enrolment_path),
                "state_dir": str(self.root / "state" / name),
                "api_keys": {DEV_API_KEY: DEV_APP},
                "commit_timeout_s": 1.0,
                "pack_name": pack_name,
                "pack_trust": self._pack_trust(),
                "admin_tokens": self._grants(),
                # Dev providers (the mock, a test's classifier) are on this machine.
                "allowed_upstreams": [f"http://{self.host}:*", "https://*"],
                "allow_loopback_upstreams": True,
                "ca_bundle": self.provider_pki.ca_file,
                "allowed_env": ["CORDON_*", "CLASSIFIER_*", "OPENAI_*", "ANTHROPIC_*"],
                **(extra or {}),
            },
        )

    def start_mock(self, name: str, behaviour: str = "ok", tls: str | None = None) -> str:
        """Start one more mock provider; returns its base URL (ending in /v1). With `tls`
        ("valid", or "wrong-host": a certificate for another name) it serves HTTPS with a
        certificate from the dev provider CA, which the gateways trust (`ca_bundle`)."""
        port = free_port(self.host)
        args = ["--host", self.host, "--port", str(port), "--behaviour", behaviour]
        if tls is not None:
            pair = self.provider_pki.server if tls == "valid" else self.provider_pki.wrong_host
            args += ["--tls-cert", pair.cert_file, "--tls-key", pair.key_file]
        proc = self._spawn(name, "mock-provider", *args, module="cordon_dev")
        scheme = "https" if tls is not None else "http"
        wait_for_http(f"{scheme}://{self.host}:{port}/healthz", 20, proc.proc)
        return f"{scheme}://{self.host}:{port}/v1"

    def _start_nats_metrics(self) -> None:
        """One `cordon nats exporter` over every server of the topology: what Kubernetes
        gets from prometheus-nats-exporter beside each server, under the same names."""
        assert self.topology is not None
        port = self._port("nats-metrics")
        servers = self.topology.servers
        urls = [arg for s in servers for arg in ("--url", f"{s.name},{s.monitor_url}")]
        args = ["nats", "exporter", *urls, "--host", self.host, "--port", str(port)]
        self._spawn("nats-metrics", *args)
        self.endpoints.nats_metrics = f"http://{self.host}:{port}/metrics"

    def _start_tool_server(self) -> ManagedProcess:
        """The dev MCP tool server (`start` waits for it before the gateways that front
        it start)."""
        port = self._port("tool-server")
        self.endpoints.tool_server = f"http://{self.host}:{port}/mcp"
        args = ["--host", self.host, "--port", str(port)]
        return self._spawn("tool-server", "tool-server", *args, module="cordon_dev")

    @property
    def baseline_pack(self) -> Path:
        """The baseline pack as this stack publishes it (`render_baseline`)."""
        return self.root / "packs" / BASELINE_PACK.name

    def _start_region(self, region: str) -> None:
        assert self.topology is not None
        region_plan = self.topology.regions[region]
        keys = self.root / "keys" / region
        regional_key = _load_or_create_key(keys / "regional.key")
        self.endpoints.regional_public_keys[region] = public_bytes(regional_key.public_key).hex()
        pseudonym_key = _load_or_create_secret(keys / "pseudonym.secret")
        self.endpoints.gateways[region] = self.start_gateway(
            region, "gw-1", self.endpoints.mock_provider, self._port(region)
        )
        sealer_key = _load_or_create_key(keys / "sealer.key")
        (keys / "sealer.enrolment").write_bytes(enrol(regional_key, region, "sealer", sealer_key))
        sealer_config = self._write_config(
            f"sealer-{region}",
            {
                "region": region,
                "audit_nats": region_plan.endpoint("audit", "sealer").to_settings(),
                "xr_nats": region_plan.endpoint("xr", "sealer").to_settings(),
                "pseudonym_key": pseudonym_key,
                "signing_key_file": str(keys / "sealer.key"),
                "enrolment_file": str(keys / "sealer.enrolment"),
            },
        )
        self._spawn(f"sealer-{region}", "gateway", "seal", "--config", str(sealer_config))
        audit_port = free_port(self.host)
        audit_key = _load_or_create_key(keys / "audit-api.key")
        (keys / "audit-api.enrolment").write_bytes(
            enrol(regional_key, region, "audit-api", audit_key)
        )
        audit_config = self._write_config(
            f"audit-api-{region}",
            {
                "region": region,
                "audit_nats": region_plan.endpoint("audit", "audit-api").to_settings(),
                "regional_public_key": self.endpoints.regional_public_keys[region],
                "signing_key_file": str(keys / "audit-api.key"),
                "enrolment_file": str(keys / "audit-api.enrolment"),
                "xr_nats": region_plan.endpoint("xr", "audit-api").to_settings(),
                "index_path": str(self.root / "state" / f"audit-index-{region}.sqlite3"),
                "host": self.host,
                "port": audit_port,
                "tokens": self._grants(),
            },
        )
        self._spawn(f"audit-api-{region}", "gateway", "audit-api", "--config", str(audit_config))
        self.endpoints.audit_apis[region] = f"http://{self.host}:{audit_port}"

    def start_replicator(self, instance: str = "replicator-1", name: str = "replicator") -> str:
        """Start one replicator instance (more than one: they share the work by lease);
        returns its /metrics URL."""
        assert self.topology is not None
        metrics_port = free_port(self.host)
        config = self._write_config(
            name,
            {
                "central_nats": self.topology.central_endpoint("replicator").to_settings(),
                "regions": list(self.regions),
                "metrics_host": self.host,
                "metrics_port": metrics_port,
                "pack_trust": self._pack_trust(),
                "instance": instance,
            },
        )
        self._spawn(name, "replicator", "run", "--config", str(config))
        return f"http://{self.host}:{metrics_port}/metrics"

    def _start_central(self) -> None:
        assert self.topology is not None
        self.endpoints.replicator_metrics = self.start_replicator()
        port = self._port("aggregator")
        witness_key = self.root / "keys" / "central" / "witness.key"
        _load_or_create_key(witness_key)
        aggregator_config = self._write_config(
            "aggregator",
            {
                "central_nats": self.topology.central_endpoint("aggregator").to_settings(),
                "regions": list(self.regions),
                "store_path": str(self.root / "state" / "aggregator.sqlite3"),
                "store_dsn": self.aggregator_store_dsn,
                "audit_apis": self.endpoints.audit_apis,
                "host": self.host,
                "port": port,
                "regional_public_keys": self.endpoints.regional_public_keys,
                "witness_key_file": str(witness_key),
                "tokens": self._grants(),
            },
        )
        self._spawn("aggregator", "aggregator", "run", "--config", str(aggregator_config))
        self.endpoints.aggregator = f"http://{self.host}:{port}"

    def _wait_ready(self) -> None:
        checks = {f"gateway-{r}": f"{url}/readyz" for r, url in self.endpoints.gateways.items()}
        checks |= {
            f"audit-api-{r}": f"{url}/healthz" for r, url in self.endpoints.audit_apis.items()
        }
        checks["aggregator"] = f"{self.endpoints.aggregator}/healthz"
        checks["replicator"] = self.endpoints.replicator_metrics
        checks["nats-metrics"] = self.endpoints.nats_metrics
        for name, url in checks.items():
            proc = self.processes[name]
            try:
                wait_for_http(url, 30, proc.proc)
            except Exception as exc:
                raise type(exc)(f"{name}: {exc}\n{proc.log_tail()}") from exc

    def _enforce_baseline(self, timeout: float = 30.0) -> None:
        """Sign `deploy/packs/default.yaml` (pointed at this stack's tool server) as the
        dev policy owner and publish it, then wait until every gateway enforces it: the
        first call is already screened."""
        assert self.topology is not None
        self.baseline_pack.parent.mkdir(parents=True, exist_ok=True)
        self.baseline_pack.write_text(render_baseline(self.endpoints.tool_server))
        publisher = self.topology.central_endpoint("publisher")
        pack = str(self.baseline_pack)
        publish = [sys.executable, "-m", "cordon_cli", "policy", "publish", pack]
        identity = ["--nats-url", publisher.url, "--nats-seed", str(publisher.seed_file)]
        published = subprocess.run(
            [*publish, *identity, "--key", str(self.policy_owner_key)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if published.returncode != 0:
            raise ProcessStartError(f"publishing the baseline pack failed: {published.stderr}")
        deadline = time.monotonic() + timeout
        for region, url in self.endpoints.gateways.items():
            while self._active_pack(url) != "default":
                if time.monotonic() > deadline:
                    raise ProcessStartError(f"gateway-{region} never activated the baseline pack")
                time.sleep(0.05)

    def _active_pack(self, gateway: str) -> str | None:
        request = urllib.request.Request(
            gateway + "/v1/cordon/policy",
            headers={"authorization": f"Bearer {self.tokens['admin']}"},
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            status = json.load(response)
        return str(status["pack"]) if status.get("active_revision") else None

    def describe(self) -> dict[str, Any]:
        assert self.topology is not None
        return {
            "gateways": self.endpoints.gateways,
            "audit_apis": self.endpoints.audit_apis,
            "aggregator": self.endpoints.aggregator,
            "replicator_metrics": self.endpoints.replicator_metrics,
            # Every NATS server's metrics, named as prometheus-nats-exporter names them.
            "nats_metrics": self.endpoints.nats_metrics,
            "mock_provider": self.endpoints.mock_provider,
            # Per region, each tool server at that region's gateway; and the dev tool
            # server itself, ungoverned (benchmarks' baseline, reading its digests).
            "mcp": self.endpoints.mcp,
            "tool_server": self.endpoints.tool_server,
            "api_key": self.endpoints.api_key,
            # Bearer tokens: auditor (every region), auditor-<region>, sre, admin.
            "tokens": self.tokens,
            "regional_public_keys": self.endpoints.regional_public_keys,
            "policy_owner_key": str(self.policy_owner_key),
            "pack_trust": self._pack_trust(),
            # Each role's NATS endpoint: the server URL and the file with the role's nkey
            # seed. `provision` is setup's, for streams and buckets.
            "nats": {
                "central": {
                    role: self.topology.central_endpoint(role).to_settings()
                    for role in CENTRAL_ROLES
                },
                "regions": {
                    name: {
                        account: {
                            role: r.endpoint(account, role).to_settings() for role in REGION_ROLES
                        }
                        for account in ACCOUNTS
                    }
                    for name, r in self.topology.regions.items()
                },
            },
            "logs": str(self.root / "logs"),
        }

    def stop(self) -> None:
        """Every Cordon process at once, then the NATS servers they were writing to."""
        stop_all(self.processes.values())
        if self.nats is not None:
            self.nats.stop()
        for link in self.wan.values():
            link.stop()


def render_baseline(tool_server: str) -> str:
    """`deploy/packs/default.yaml` with only `dev-tools`' url replaced by `tool_server`:
    the file keeps the URL a reader would write, the stack's port is chosen at start."""
    text = BASELINE_PACK.read_text()
    servers = yaml.safe_load(text)["tools"]["servers"]
    written = next(s["url"] for s in servers if s["name"] == DEV_TOOLS)
    if text.count(written) != 1:  # a plain replace must touch that one line only
        raise ProcessStartError(f"{BASELINE_PACK}: {written} must appear exactly once")
    return text.replace(written, tool_server)


def _with_source_folder(pythonpath: str | None) -> str:
    """`pythonpath` with the folder holding `cordon_dev` first."""
    source = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join([source, *([pythonpath] if pythonpath else [])])
