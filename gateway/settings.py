"""Gateway settings: one JSON (or YAML) file per replica, validated at start."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cordon.errors import ConfigError
from cordon.nats import Endpoint
from cordon.tokens import Tokens
from gateway.identity import Identity
from gateway.identity.delegation import Issuer, IssuerKey
from gateway.identity.workload import WorkloadIssuer
from gateway.upstream.egress import DEFAULT_ALLOWED_ENV, DEFAULT_ALLOWED_UPSTREAMS


@dataclass(frozen=True)
class ConnectionLimits:
    """What the connection guard allows a caller: a request's headers must arrive within
    header_timeout_s of its first byte (or of the connection) and hold at most
    max_header_bytes, its body may pause at most body_idle_timeout_s, a caller that
    reads nothing of its answers for send_timeout_s is cut off; open connections beyond
    max_connections are answered 503 with retry-after and closed."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    body_idle_timeout_s: float = 10.0
    send_timeout_s: float = 30.0
    max_connections: int = 1024


@dataclass(frozen=True)
class GatewaySettings:
    region: str
    replica: str
    audit_nats: Endpoint
    xr_nats: Endpoint
    signing_key_file: Path
    enrolment_file: Path
    state_dir: Path
    # Provider targets used until a pack names its own (same shape as a pack's).
    targets: tuple[dict[str, Any], ...] = ()
    secret_store_dir: Path | None = None
    api_keys: dict[str, Identity] = field(default_factory=dict)
    delegation_issuers: tuple[Issuer, ...] = ()
    # Kubernetes and SPIFFE issuers whose workload tokens are verified against a JWKS.
    workload_issuers: tuple[WorkloadIssuer, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    commit_timeout_s: float = 2.0
    max_body_bytes: int = 4 * 1024 * 1024
    # What a provider may send: a whole answer, a whole stream, one stream event.
    max_response_bytes: int = 16 * 1024 * 1024
    max_stream_bytes: int = 64 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    # Calls in flight at once; beyond it a call is refused at once (503, retry-after).
    max_concurrent_calls: int = 512
    # The URL agents reach this gateway at (behind a proxy), for the MCP endpoint's
    # protected-resource metadata; by default the request's own Host.
    public_url: str = ""
    # Slow, stalled and surplus callers (gateway.http.connections); flat keys in the file.
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    # A record larger than this keeps its content only as a digest (0: the server's
    # max_payload, which the NATS templates (cordon/estate/templates) set to 8 MB).
    max_record_bytes: int = 0
    # Egress (gateway.upstream.egress): origins a pack's providers and classifier may
    # be at, whether loopback is one of them, and the environment a pack may read.
    allowed_upstreams: tuple[str, ...] = DEFAULT_ALLOWED_UPSTREAMS
    allow_loopback_upstreams: bool = False
    allowed_env: tuple[str, ...] = DEFAULT_ALLOWED_ENV
    # The CAs providers' certificates must chain to, instead of the system's store.
    ca_bundle: Path | None = None
    pack_name: str = "default"
    # Hex raw Ed25519 public keys of the policy owners whose packs this replica accepts.
    pack_trust: tuple[str, ...] = ()
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 10.0
    spool_max_bytes: int = 256 * 1024 * 1024
    # Who may read the admin surface (/v1/cordon/policy): tokens with role `admin`.
    admin_tokens: Tokens = field(default_factory=lambda: Tokens({}))
    # Where the pack is enforced, as every record names it: gateway, sidecar or sdk.
    place: str = "gateway"


def _require(raw: dict[str, Any], name: str) -> Any:
    if name not in raw:
        raise ConfigError(f"setting {name!r} is required")
    return raw[name]


def _identity(raw: dict[str, Any]) -> Identity:
    return Identity(
        agent=str(raw["agent"]),
        roles=tuple(raw.get("roles", ())),
        scopes=tuple(raw.get("scopes", ())),
        person=raw.get("person"),
    )


def _issuer(raw: dict[str, Any], base: Path) -> Issuer:
    keys = []
    for key in raw["keys"]:
        pem = key.get("public_key_pem")
        if pem is None:
            pem = (base / key["public_key_file"]).read_text()
        keys.append(IssuerKey(kid=key.get("kid"), public_key_pem=str(pem)))
    return Issuer(issuer=str(raw["issuer"]), audience=str(raw["audience"]), keys=tuple(keys))


def _workload_issuer(raw: dict[str, Any], base: Path) -> WorkloadIssuer:
    jwks_file, issuer, domain = raw.get("jwks_file"), raw.get("issuer"), raw.get("trust_domain")
    return WorkloadIssuer(
        issuer=str(issuer) if issuer else None,
        audience=str(raw["audience"]),
        jwks_file=base / jwks_file if jwks_file else None,
        jwks_url=str(raw["jwks_url"]) if raw.get("jwks_url") else None,
        trust_domain=str(domain) if domain else None,
        kind=raw["kind"],
        refresh_s=float(raw.get("refresh_s", 300.0)),
    )


def _connection_limits(raw: dict[str, Any]) -> ConnectionLimits:
    """The limits the file sets (each greater than 0); the rest keep their defaults."""
    defaults = ConnectionLimits()
    given: dict[str, Any] = {}
    for name in (limit.name for limit in fields(ConnectionLimits) if limit.name in raw):
        value = float(raw[name])
        if not value > 0:
            raise ConfigError(f"setting {name!r} must be greater than 0")
        given[name] = type(getattr(defaults, name))(value)
    return ConnectionLimits(**given)


def _own(value: Any) -> str:
    """`{hostname}` in a replica's name or key paths: one settings file for every pod of
    a StatefulSet, each its own replica with its own key (cordon-gateway-0, -1, ...)."""
    return str(value).replace("{hostname}", socket.gethostname())


def from_mapping(raw: dict[str, Any], base: Path = Path()) -> GatewaySettings:
    try:
        store = raw.get("secret_store_dir")
        return GatewaySettings(
            region=str(_require(raw, "region")),
            replica=_own(_require(raw, "replica")),
            audit_nats=Endpoint.from_settings(_require(raw, "audit_nats"), base),
            xr_nats=Endpoint.from_settings(_require(raw, "xr_nats"), base),
            signing_key_file=base / _own(_require(raw, "signing_key_file")),
            enrolment_file=base / _own(_require(raw, "enrolment_file")),
            state_dir=base / raw.get("state_dir", "state"),
            targets=tuple(raw.get("targets", ())),
            secret_store_dir=base / store if store else None,
            api_keys={key: _identity(v) for key, v in raw.get("api_keys", {}).items()},
            delegation_issuers=tuple(_issuer(i, base) for i in raw.get("delegation_issuers", ())),
            workload_issuers=tuple(
                _workload_issuer(i, base) for i in raw.get("workload_issuers", ())
            ),
            host=str(raw.get("host", "127.0.0.1")),
            port=int(raw.get("port", 8080)),
            commit_timeout_s=float(raw.get("commit_timeout_s", 2.0)),
            max_body_bytes=int(raw.get("max_body_bytes", 4 * 1024 * 1024)),
            max_response_bytes=int(raw.get("max_response_bytes", 16 * 1024 * 1024)),
            max_stream_bytes=int(raw.get("max_stream_bytes", 64 * 1024 * 1024)),
            max_event_bytes=int(raw.get("max_event_bytes", 1024 * 1024)),
            max_concurrent_calls=int(raw.get("max_concurrent_calls", 512)),
            public_url=str(raw.get("public_url", "")),
            connections=_connection_limits(raw),
            max_record_bytes=int(raw.get("max_record_bytes", 0)),
            allowed_upstreams=tuple(
                str(o) for o in raw.get("allowed_upstreams", DEFAULT_ALLOWED_UPSTREAMS)
            ),
            allow_loopback_upstreams=bool(raw.get("allow_loopback_upstreams", False)),
            allowed_env=tuple(str(n) for n in raw.get("allowed_env", DEFAULT_ALLOWED_ENV)),
            ca_bundle=base / raw["ca_bundle"] if raw.get("ca_bundle") else None,
            pack_name=str(raw.get("pack_name", "default")),
            pack_trust=tuple(str(k) for k in raw.get("pack_trust", ())),
            breaker_threshold=int(raw.get("breaker_threshold", 5)),
            breaker_cooldown_s=float(raw.get("breaker_cooldown_s", 10.0)),
            spool_max_bytes=int(raw.get("spool_max_bytes", 256 * 1024 * 1024)),
            admin_tokens=Tokens.from_settings(raw.get("admin_tokens", [])),
            place=str(raw.get("place", "gateway")),
        )
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ConfigError(f"invalid gateway settings: {exc}") from exc


def load(path: Path) -> GatewaySettings:
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read settings {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"settings {path} must be a map")
    return from_mapping(raw, path.parent)
