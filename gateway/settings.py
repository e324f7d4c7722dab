"""Gateway settings: one JSON (or YAML) file per replica, validated at start."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gateway.errors import ConfigError

T = TypeVar("T")


def load_json(path: Path, build: Callable[[dict[str, Any]], T]) -> T:
    """Read a JSON settings file and `build` settings from it.

    Any problem (unreadable file, bad JSON, missing or mistyped key) becomes one
    `ConfigError` that names the file, so every process fails the same clear way.
    """
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("settings must be a JSON object")
        return build(raw)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"invalid settings {path}: {exc}") from exc


@dataclass(frozen=True)
class ApiKeyIdentity:
    """The service identity a gateway API key stands for."""

    agent: str
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    person: str | None = None


@dataclass(frozen=True)
class UpstreamTarget:
    id: str
    base_url: str
    api_key: str = ""


@dataclass(frozen=True)
class GatewaySettings:
    region: str
    replica: str
    audit_nats_url: str
    xr_nats_url: str
    upstream: UpstreamTarget
    signing_key_file: Path
    enrolment_file: Path
    state_dir: Path
    api_keys: dict[str, ApiKeyIdentity] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8080
    commit_timeout_s: float = 2.0
    upstream_timeout_s: float = 60.0
    max_body_bytes: int = 4 * 1024 * 1024
    pseudonym_key: str = ""
    pack_name: str = "default"


def _require(raw: dict[str, Any], name: str) -> Any:
    if name not in raw:
        raise ConfigError(f"setting {name!r} is required")
    return raw[name]


def from_mapping(raw: dict[str, Any], base: Path = Path()) -> GatewaySettings:
    try:
        upstream = _require(raw, "upstream")
        keys = {
            key: ApiKeyIdentity(
                agent=str(v["agent"]),
                roles=tuple(v.get("roles", ())),
                scopes=tuple(v.get("scopes", ())),
                person=v.get("person"),
            )
            for key, v in raw.get("api_keys", {}).items()
        }
        return GatewaySettings(
            region=str(_require(raw, "region")),
            replica=str(_require(raw, "replica")),
            audit_nats_url=str(_require(raw, "audit_nats_url")),
            xr_nats_url=str(_require(raw, "xr_nats_url")),
            upstream=UpstreamTarget(
                id=str(upstream.get("id", "default")),
                base_url=str(upstream["base_url"]).rstrip("/"),
                api_key=str(upstream.get("api_key", "")),
            ),
            signing_key_file=base / _require(raw, "signing_key_file"),
            enrolment_file=base / _require(raw, "enrolment_file"),
            state_dir=base / raw.get("state_dir", "state"),
            api_keys=keys,
            host=str(raw.get("host", "127.0.0.1")),
            port=int(raw.get("port", 8080)),
            commit_timeout_s=float(raw.get("commit_timeout_s", 2.0)),
            upstream_timeout_s=float(raw.get("upstream_timeout_s", 60.0)),
            max_body_bytes=int(raw.get("max_body_bytes", 4 * 1024 * 1024)),
            pseudonym_key=str(raw.get("pseudonym_key", "")),
            pack_name=str(raw.get("pack_name", "default")),
        )
    except (KeyError, TypeError, ValueError) as exc:
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
