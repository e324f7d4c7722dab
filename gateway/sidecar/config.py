"""A sidecar's configuration: the files our users already have (a pack with a
`gateway:` block, fragments merged in order), checked as `cordon policy lint` checks
them, and turned into the gateway settings of one local replica.

Anything in the files that Cordon cannot honour is a start-up error naming the file,
the line and the key (`ConfigError`), never a setting silently dropped.

In region mode (`mode: region`) the sidecar is a replica of a region: its gateway
settings are that replica's settings file (`region_settings`), its packs come from the
region's policy KV, and the `gateway:` block keeps only what is the sidecar's own
(where it listens, its local log, how it ships).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cordon.errors import ConfigError, DocumentError
from cordon.packs import config_file, lint
from gateway import settings as gateway_settings
from gateway.identity import Identity
from gateway.settings import GatewaySettings

__all__ = ["REGION_MODE_KEYS", "GitSpec", "SidecarConfig", "read_fragments"]

log = logging.getLogger("cordon.sidecar")

# A local sidecar dials no NATS; the settings type still names the region's endpoints.
UNUSED_NATS = {"url": "nats://unused.invalid:4222"}
DEFAULT_PORT = 41002  # the seeds' `listen_port`
DEFAULT_LOG_MAX_BYTES = 1024**3
# The newest segment is scanned whole when the log opens: 16 MiB keeps that within the
# sidecar's 1 s to ready (docs/performance.md, "Local log").
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
WORKER = "{worker}"  # in region_settings: the in-process SDK's worker slot
CALLER_KEY_FILE = "caller.key"  # in state_dir: the key callers send when none is configured
LOCAL_AGENT = "local-app"
# Settings a `gateway:` block passes to the replica as they are (gateway.settings).
PASSED_THROUGH = (
    "host",
    "replica",
    "api_keys",
    "delegation_issuers",
    "workload_issuers",
    "admin_tokens",
    "secret_store_dir",
    "allowed_upstreams",
    "allow_loopback_upstreams",
    "allowed_env",
    "ca_bundle",
    "commit_timeout_s",
    "max_body_bytes",
    "max_response_bytes",
    "max_stream_bytes",
    "max_event_bytes",
    "max_record_bytes",
    "max_concurrent_calls",
    "breaker_threshold",
    "breaker_cooldown_s",
    "public_url",
)
# The `gateway:` keys a region-mode sidecar honours: its own listener, local log and
# shipping. Gateway settings belong in the region settings file (refused here, so the
# two never disagree); the keys about the file's own pack are not used (logged).
REGION_MODE_KEYS = frozenset(
    {
        "mode",
        "region_settings",
        "listen_port",
        "host",
        "unix_socket",
        "state_dir",
        "ship_retry_interval",
        "log_max_bytes",
        "log_segment_bytes",
        "log_fsync",
        "audit_tokens",
    }
)
FILE_PACK_KEYS = frozenset(
    {
        "policy_url",
        "policy_token_env",
        "policy_poll_interval",
        "config_reload",
        "config_watch_interval",
        "config_poll_interval",
        "config_source",
        "pack_trust",
    }
)


@dataclass(frozen=True)
class GitSpec:
    """The repository a sidecar follows: where, which branch or tag, which file in it."""

    source: str
    ref: str
    path: str


@dataclass(frozen=True)
class PolicyUrl:
    """A gateway or sidecar whose signed active pack this one follows (`policy_url`),
    with the `policy` token read from the environment."""

    url: str
    token: str = field(repr=False)
    poll_interval_s: float = 10.0


DEFAULT_POLICY_TOKEN_ENV = "CORDON_POLICY_TOKEN"


@dataclass(frozen=True)
class SidecarConfig:
    files: tuple[Path, ...]
    fragments: tuple[dict[str, Any], ...]  # each file as read
    texts: tuple[bytes, ...]  # each file's bytes (their digest is the policy's origin)
    gateway: dict[str, Any]  # the merged `gateway:` block
    pack: dict[str, Any]  # the pack document (everything else)
    settings: GatewaySettings
    mode: str
    reload: bool
    watch_interval_s: float
    poll_interval_s: float | None
    git: GitSpec | None
    unix_socket: Path | None
    log_max_bytes: int
    log_segment_bytes: int
    # None: each record fsynced before its answer; else written in-line, fsynced this often.
    log_sync_interval_s: float | None = None
    # Region mode: how long the shipper waits before dialling the region again.
    ship_retry_interval_s: float = 1.0
    policy_url: PolicyUrl | None = None

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    @classmethod
    def load(
        cls, files: Sequence[Path], config_source: str | None = None, worker: int | None = None
    ) -> SidecarConfig:
        """`worker`: the in-process SDK's worker slot, for a `region_settings` path that
        names `{worker}` (each worker of an application is a replica of its own)."""
        fragments, texts = read_fragments(files)
        gateway, pack = config_file.split(config_file.merge(fragments), str(files[0]))
        if config_source:
            gateway["config_source"] = config_source
        signed_from_repository = gateway.get("pack_trust") and (
            gateway.get("config_poll_interval") or gateway.get("policy_url")
        )
        if not pack and gateway.get("mode") != "region" and not signed_from_repository:
            raise ConfigError(
                f"{', '.join(map(str, files))}: no policy: these files hold only gateway settings"
            )
        try:
            config_file.check_gateway(gateway)
        except DocumentError as exc:
            raise ConfigError(f"{files[0]}: {'.'.join(map(str, exc.path))}: {exc}") from exc
        first, base = files[0], files[0].parent
        mode = _region_mode(gateway, first, worker) if gateway.get("mode") == "region" else None
        return cls(
            files=tuple(files),
            fragments=tuple(fragments),
            texts=tuple(texts),
            gateway=gateway,
            pack=pack,
            unix_socket=base / gateway["unix_socket"] if gateway.get("unix_socket") else None,
            log_max_bytes=int(gateway.get("log_max_bytes", DEFAULT_LOG_MAX_BYTES)),
            log_segment_bytes=int(gateway.get("log_segment_bytes", DEFAULT_SEGMENT_BYTES)),
            log_sync_interval_s=config_file.log_sync_interval(
                gateway.get("log_fsync", config_file.PER_CALL)
            ),
            **(mode or _local_mode(gateway, pack, first)),
        )


def _local_mode(gateway: dict[str, Any], pack: dict[str, Any], first: Path) -> dict[str, Any]:
    """A local sidecar's own settings, and where its policy comes from."""
    poll = gateway.get("config_poll_interval")
    return {
        "settings": _settings(gateway, pack, first.parent),
        "mode": "local",
        "reload": bool(gateway.get("config_reload", False)),
        "watch_interval_s": _interval(gateway, "config_watch_interval", 1.0),
        "poll_interval_s": _interval(gateway, "config_poll_interval", 0) if poll else None,
        "git": _git(gateway, first, first.parent) if poll else None,
        "policy_url": _policy_url(gateway, first) if gateway.get("policy_url") else None,
    }


def _policy_url(gateway: Mapping[str, Any], first: Path) -> PolicyUrl:
    """The pack server followed: only its owners' signatures make a pack enforced here."""
    import os

    if not gateway.get("pack_trust"):
        raise ConfigError(
            f"{first}: gateway.policy_url: a pack read over the network is enforced only if "
            "its owners signed it: name their keys in gateway.pack_trust"
        )
    env = str(gateway.get("policy_token_env", DEFAULT_POLICY_TOKEN_ENV))
    token = os.environ.get(env, "")
    if not token:
        raise ConfigError(
            f"{first}: gateway.policy_url: set {env} to a token with the policy role "
            "(cordon token new --role policy)"
        )
    interval = _interval(gateway, "policy_poll_interval", 10.0)
    return PolicyUrl(str(gateway["policy_url"]), token, interval)


def _region_mode(gateway: dict[str, Any], first: Path, worker: int | None) -> dict[str, Any]:
    """A replica of the region: its settings file, its packs from the region's KV."""
    _refuse_gateway_settings(gateway, first)
    named = str(gateway["region_settings"])
    if WORKER in named:
        if worker is None:
            raise ConfigError(
                f"{first}: gateway.region_settings: {WORKER} names an in-process SDK "
                "worker's replica; a sidecar is one replica: name its settings file"
            )
        gateway = {**gateway, "region_settings": named.replace(WORKER, str(worker))}
    unused = sorted(FILE_PACK_KEYS & gateway.keys())  # the file's policies: an overlay
    if unused:
        log.warning(
            "%s: region mode enforces the region's policy KV; %s of this file not used",
            first,
            ", ".join(unused),
        )
    return {
        "settings": _region_settings(gateway, first.parent),
        "mode": "region",
        "reload": False,
        "watch_interval_s": 1.0,
        "poll_interval_s": None,
        "git": None,
        "ship_retry_interval_s": _interval(gateway, "ship_retry_interval", 1.0),
    }


def _refuse_gateway_settings(gateway: Mapping[str, Any], first: Path) -> None:
    misplaced = sorted(gateway.keys() - REGION_MODE_KEYS - FILE_PACK_KEYS)
    if misplaced:
        raise ConfigError(
            f"{first}: gateway.{misplaced[0]}: in region mode the gateway settings are the "
            f"region settings file's ({gateway['region_settings']}); set "
            f"{', '.join(misplaced)} there"
        )


def _region_settings(gateway: Mapping[str, Any], base: Path) -> GatewaySettings:
    """The region's replica settings, listening and keeping state where the block says."""
    path = base / str(gateway["region_settings"])
    settings = gateway_settings.load(path)
    if not settings.pack_trust:
        raise ConfigError(
            f"{path}: a region-mode sidecar enforces the region's packs: name their "
            "owners' keys in pack_trust"
        )
    changes: dict[str, Any] = {"place": "sidecar"}
    if "listen_port" in gateway:
        changes["port"] = int(gateway["listen_port"])
    if "host" in gateway:
        changes["host"] = str(gateway["host"])
    if "state_dir" in gateway:
        changes["state_dir"] = base / str(gateway["state_dir"])
    if not (settings.api_keys or settings.workload_issuers or settings.delegation_issuers):
        state = Path(changes.get("state_dir", settings.state_dir))
        changes["api_keys"] = {_caller_key(state): Identity(agent=LOCAL_AGENT)}
    return replace(settings, **changes)


def read_fragments(files: Sequence[Path]) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Each file read and checked on its own, so a problem names its own file and line;
    the documents and the bytes they were read from."""
    if not files:
        raise ConfigError("no configuration file given")
    fragments: list[dict[str, Any]] = []
    texts: list[bytes] = []
    for path in files:
        document, problems = lint.check_file(path)
        if problems:
            raise ConfigError("\n".join(str(problem) for problem in problems))
        if not isinstance(document, dict):
            raise ConfigError(f"{path}: a configuration file is a map")
        fragments.append(document)
        texts.append(path.read_bytes())
    return fragments, texts


def _interval(gateway: Mapping[str, Any], key: str, default: float) -> float:
    if key not in gateway:
        return default
    return config_file.parse_interval(gateway[key], key)


def _git(gateway: Mapping[str, Any], first: Path, base: Path) -> GitSpec:
    raw = gateway.get("config_source")
    if not raw:
        raise ConfigError(
            f"{first}: gateway.config_poll_interval polls a git repository: name it with "
            "gateway.config_source (or --config-source)"
        )
    spec = raw if isinstance(raw, dict) else {"url": raw}
    source = str(spec["url"])
    if "://" not in source and not source.startswith("git@"):
        source = str(base / source)  # a local repository, relative to the file
    return GitSpec(source, str(spec.get("ref", "main")), str(spec.get("path", first.name)))


def _settings(gateway: Mapping[str, Any], pack: Mapping[str, Any], base: Path) -> GatewaySettings:
    state = str(gateway.get("state_dir", ".cordon"))
    raw: dict[str, Any] = {
        "region": str(gateway.get("region", "local")),
        "replica": "sidecar-{hostname}",
        "audit_nats": UNUSED_NATS,
        "xr_nats": UNUSED_NATS,
        "signing_key_file": f"{state}/keys/sidecar.key",
        "enrolment_file": f"{state}/keys/sidecar.enrolment",
        "state_dir": state,
        "port": int(gateway.get("listen_port", DEFAULT_PORT)),
        "pack_name": str(pack["pack"]["name"]) if pack else _pack_name(gateway),
        "pack_trust": list(gateway.get("pack_trust", ())),
        "place": "sidecar",
    }
    raw.update({key: gateway[key] for key in PASSED_THROUGH if key in gateway})
    if not any(gateway.get(k) for k in ("api_keys", "workload_issuers", "delegation_issuers")):
        # No caller credential configured: one key, made on the first start, for the
        # application beside the sidecar (it reads the file; nobody else can).
        raw["api_keys"] = {_caller_key(base / state): {"agent": LOCAL_AGENT}}
    return gateway_settings.from_mapping(raw, base)


def _caller_key(state_dir: Path) -> str:
    path = state_dir / CALLER_KEY_FILE
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the log and keys live here
    if not path.exists():
        import secrets

        from cordon.files import write_private

        write_private(path, f"sk-sidecar-{secrets.token_urlsafe(32)}\n")
    return path.read_text().strip()


def _pack_name(gateway: Mapping[str, Any]) -> str:
    """The pack a sidecar whose files hold none enforces (signed packs from its
    repository, or the region's): `pack_name`, else the repository file's name."""
    if gateway.get("pack_name"):
        return str(gateway["pack_name"])
    source = gateway.get("config_source")
    path = source.get("path") if isinstance(source, dict) else None
    return config_file.default_name(str(path or "default"))
