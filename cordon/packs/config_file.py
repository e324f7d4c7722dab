"""A configuration file as our users write it: a policy pack, optionally with a
`gateway:` block saying how the gateway that enforces it runs (the seeds' sidecar,
reverse-proxy and environment-based files), possibly spread over fragments merged in
order (the seeds' `git-synced.yaml` adds its `gateway:` keys to the sidecar file).

`split` separates the block from the pack and names a pack that has no `pack:` (after
its file); `check_gateway` refuses any key it does not know or cannot honour, naming
it (`DocumentError` with its path, which the lint turns into a line). The sidecar
(gateway.sidecar) turns the block into its settings; `cordon policy lint` reports the
same problems it would refuse at start-up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from cordon.errors import DocumentError

__all__ = [
    "GATEWAY_KEYS",
    "MODES",
    "check_gateway",
    "is_config_file",
    "merge",
    "parse_interval",
    "split",
]

MODES = ("local", "region")
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


PER_CALL = "per_call"  # `log_fsync`: every record fsynced before its answer


def log_sync_interval(value: Any) -> float | None:
    """`log_fsync` read: None for `per_call`, else the interval in seconds."""
    return None if value == PER_CALL else parse_interval(value, "log_fsync")


def parse_interval(value: Any, name: str = "interval") -> float:
    """Seconds from `60s`, `5m`, `1h`, `500ms`, `30d` or a plain number of seconds."""
    if isinstance(value, bool):
        raise DocumentError(f"{name} must be a duration such as 60s, not {value!r}", [name])
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _INTERVAL.match(str(value))
        if found is None:
            raise DocumentError(f"{name} must be a duration such as 60s, not {value!r}", [name])
        seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
    if not (math.isfinite(seconds) and seconds > 0):  # zero would spin; inf never polls
        raise DocumentError(f"{name} must be longer than 0 and finite, not {value!r}", [name])
    return seconds


Check = Callable[[Any], bool]


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _is_port(value: Any) -> bool:
    return _is_count(value) and value <= 65535


def _is_interval(value: Any) -> bool:
    try:
        parse_interval(value)
    except DocumentError:
        return False
    return True


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_map(value: Any) -> bool:
    return isinstance(value, dict)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_source(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return (
        isinstance(value, dict)
        and isinstance(value.get("url"), str)
        and set(value) <= {"url", "ref", "path"}
        and all(isinstance(v, str) and v for v in value.values())
    )


# Every key a `gateway:` block may hold: (check, what it must be). Kept with the docs'
# table in docs/sidecar.md; a key missing here is refused, never ignored.
GATEWAY_KEYS: dict[str, tuple[Check, str]] = {
    "listen_port": (_is_port, "a port number"),
    "host": (_is_str, "an address to listen on"),
    "unix_socket": (_is_str, "a path"),
    "mode": (lambda v: v in MODES, f"one of {', '.join(MODES)}"),
    "config_reload": (_is_bool, "true or false"),
    "config_watch_interval": (_is_interval, "a duration such as 1s"),
    "config_poll_interval": (_is_interval, "a duration such as 60s"),
    "config_source": (_is_source, "a repository path or URL, or {url, ref, path}"),
    "policy_url": (_is_str, "the URL of a gateway or sidecar serving its signed pack"),
    "policy_token_env": (_is_str, "the environment variable holding the policy token"),
    "policy_poll_interval": (_is_interval, "a duration such as 10s"),
    "state_dir": (_is_str, "a directory"),
    "replica": (_is_str, "a name"),
    "region": (_is_str, "a region name"),
    "region_settings": (_is_str, "the path of the region's gateway settings file"),
    "ship_retry_interval": (_is_interval, "a duration such as 1s"),
    "api_keys": (_is_map, "a map of keys to identities"),
    "delegation_issuers": (_is_list, "a list of issuers"),
    "workload_issuers": (_is_list, "a list of issuers"),
    "admin_tokens": (_is_list, "a list of tokens"),
    "audit_tokens": (_is_list, "a list of auditor tokens"),
    "secret_store_dir": (_is_str, "a directory"),
    "allowed_upstreams": (_is_names, "a list of origins"),
    "allow_loopback_upstreams": (_is_bool, "true or false"),
    "allowed_env": (_is_names, "a list of variable names or patterns"),
    "ca_bundle": (_is_str, "a file of CA certificates"),
    "pack_trust": (_is_names, "a list of hex public keys"),
    "pack_name": (_is_str, "the name of the pack to enforce"),
    "log_max_bytes": (_is_count, "a number of bytes"),
    "log_segment_bytes": (_is_count, "a number of bytes"),
    "log_fsync": (
        lambda v: v == PER_CALL or _is_interval(v),
        f"{PER_CALL} or a duration such as 100ms",
    ),
    "commit_timeout_s": (_is_number, "seconds"),
    "max_body_bytes": (_is_count, "a number of bytes"),
    "max_response_bytes": (_is_count, "a number of bytes"),
    "max_stream_bytes": (_is_count, "a number of bytes"),
    "max_event_bytes": (_is_count, "a number of bytes"),
    "max_record_bytes": (_is_count, "a number of bytes"),
    "max_concurrent_calls": (_is_count, "a number of calls"),
    "breaker_threshold": (_is_count, "a number of failures"),
    "breaker_cooldown_s": (_is_number, "seconds"),
    "public_url": (_is_str, "a URL"),
}


def is_config_file(document: Any) -> bool:
    """A configuration file (a pack with or without a `gateway:` block, as the seeds
    print them), rather than a regional replica's settings file."""
    return isinstance(document, dict) and (
        "gateway" in document or "policies" in document or "pack" in document
    )


def merge(fragments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fragments in order: `gateway:` keys merge one by one (a later fragment's win);
    any other top-level key a later fragment sets replaces the earlier one's."""
    merged: dict[str, Any] = {}
    gateway: dict[str, Any] = {}
    for fragment in fragments:
        for key, value in fragment.items():
            if key == "gateway" and isinstance(value, dict):
                gateway.update(value)
            else:
                merged[key] = value
    if gateway:
        merged["gateway"] = gateway
    return merged


def split(document: Mapping[str, Any], file: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(gateway block, pack document). A pack without `pack:` is named after its file
    (`sidecar.yaml` enforces pack `sidecar`)."""
    gateway = document.get("gateway") or {}
    if not isinstance(gateway, dict):
        raise DocumentError("gateway must be a map of settings", ["gateway"])
    pack = {key: value for key, value in document.items() if key != "gateway"}
    if "pack" not in pack and pack:
        pack = {"pack": {"name": default_name(file)}, **pack}
    return dict(gateway), pack


def default_name(file: str) -> str:
    stem = PurePath(file).stem or "config"
    return re.sub(r"[^A-Za-z0-9_-]", "-", stem)


def check_gateway(gateway: Mapping[str, Any]) -> None:
    """`DocumentError` naming the first key of the block that is unknown or malformed."""
    for key, value in gateway.items():
        known = GATEWAY_KEYS.get(key)
        if known is None:
            raise DocumentError(
                f"unknown key {key!r}: a gateway block takes {', '.join(sorted(GATEWAY_KEYS))}",
                ["gateway", key],
            )
        check, wanted = known
        if not check(value):
            raise DocumentError(f"{key} must be {wanted}, not {value!r}", ["gateway", key])
    if gateway.get("mode") == "region" and not gateway.get("region_settings"):
        raise DocumentError(
            "mode: region needs region_settings (the region's gateway settings file)",
            ["gateway", "mode"],
        )
