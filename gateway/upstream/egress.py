"""Where a replica may send a call, and which environment a pack may read.

A pack names its providers and classifier by URL, and may read `${VAR}` and
`secret_key_ref: {env: NAME}` from the replica's environment. Neither is trusted
blindly, signed or not: URLs must match the replica's `allowed_upstreams` (origins,
`*` allowed in the host or port), never name a link-local or cloud metadata address,
and name loopback only where the settings allow it (a dev machine). The same address
rules hold again at connect time, on every address the name resolves to, so a name
that resolves somewhere it must not is refused too. A pack reads only the environment
variables `allowed_env` names (patterns).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cordon.errors import ConnectError, PackError

__all__ = ["DEFAULT_ALLOWED_ENV", "DEFAULT_ALLOWED_UPSTREAMS", "EgressPolicy"]

DEFAULT_ALLOWED_UPSTREAMS = ("https://*",)
DEFAULT_ALLOWED_ENV = ("OPENAI_*", "ANTHROPIC_*", "AZURE_OPENAI_*", "CORDON_PROVIDER_*")
# Cloud metadata services by name and by the addresses that are not link-local.
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
METADATA_ADDRESSES = frozenset({"fd00:ec2::254", "100.100.100.200"})


@dataclass(frozen=True)
class EgressPolicy:
    allowed_upstreams: tuple[str, ...] = DEFAULT_ALLOWED_UPSTREAMS
    allow_loopback: bool = False
    allowed_env: tuple[str, ...] = DEFAULT_ALLOWED_ENV

    def check_url(self, url: str) -> None:
        """`PackError` unless a call may be sent to `url`."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise PackError(f"egress: {url!r} is not an http(s) URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise PackError(f"egress: {url!r} has no valid port") from exc
        if host in METADATA_HOSTS:
            raise PackError(f"egress: {host} is a cloud metadata service")
        reason = self.refusal(host)
        if reason is not None:
            raise PackError(f"egress: {url!r} is {reason}")
        origin = f"{parts.scheme}://{host}:{port}"
        if not any(_origin_matches(origin, allowed) for allowed in self.allowed_upstreams):
            raise PackError(f"egress: {origin} is not in the replica's allowed_upstreams")

    def check_address(self, address: str, host: str) -> None:
        """`ConnectError` if `host`'s resolved `address` may not be connected to."""
        reason = self.refusal(address)
        if reason is not None:
            raise ConnectError(f"{host} resolves to {address}, which is {reason}")

    def refusal(self, host: str) -> str | None:
        """Why an address (a literal IP; names pass) may not be reached, or None."""
        try:
            ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
        except ValueError:
            return None
        if ip.is_link_local or str(ip) in METADATA_ADDRESSES:
            return "a link-local or cloud metadata address"
        if (ip.is_loopback or ip.is_unspecified) and not self.allow_loopback:
            return "a loopback address, allowed only with allow_loopback_upstreams"
        if ip.is_multicast or ip.is_reserved:
            return "not a unicast address"
        return None

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The variables a pack may read: those `allowed_env` names."""
        return {
            name: value
            for name, value in environ.items()
            if any(fnmatch.fnmatchcase(name, allowed) for allowed in self.allowed_env)
        }


def _origin_matches(origin: str, allowed: str) -> bool:
    """`allowed` is scheme://host[:port], `*` anywhere; without a port, the default one."""
    parts = urlsplit(allowed)
    scheme = parts.scheme or "https"
    host = (parts.netloc.rsplit(":", 1)[0] if ":" in parts.netloc else parts.netloc) or "*"
    port = parts.netloc.rsplit(":", 1)[1] if ":" in parts.netloc else None
    if port is None:
        port = "*" if host == "*" else ("443" if scheme == "https" else "80")
    return fnmatch.fnmatchcase(origin, f"{scheme}://{host.lower()}:{port}")
