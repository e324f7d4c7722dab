"""A pack's `tools:` section (MCP, issue 24): the tool servers a region's gateways front,
and per tool who may call it and the definition the pack approved, pinned by digest.

    tools:
      servers:
        - name: crm                         # /mcp/crm; `crm__lookup` in the union at /mcp
          url: https://crm.internal/mcp     # Streamable HTTP; or command: [prog, arg, ...]
          credentials:                      # the gateway's own, never a caller's token
            secret_key_ref: {env: CRM_TOKEN}  # or {store: NAME}; header/scheme optional
          allow_requests: [elicitation]     # server-to-client requests relayed; else refused
          tools:
            - name: lookup
              digest: sha256:<64 hex>       # `cordon tools digest crm` lists them
              allow: {roles: [analyst], scopes: [crm:read], agents: [support-bot]}
              timeout_s: 10                 # default 30
              rate: {calls: 60, per_s: 60}  # per caller and replica; default none

The gateway's one decision (`gateway.policy.tools.decide`) refuses a tool no server
lists here, one without a digest, and one whose definition upstream no longer has the
approved digest ("rug pull"). `allow` keys narrow
each other (a caller needs one of the roles, every scope, one of the agents); a tool
without `allow` may be called by every authenticated caller.

The pin is `sha256:` and the hex SHA-256 of the definition's RFC 8785 canonical JSON
(`cordon.jcs`) without its top-level `_meta` (metadata a server may change freely,
which the agent's model never reads), so anyone can recompute it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cordon.errors import DocumentError
from cordon.jcs import sha256_digest

__all__ = [
    "NO_TOOLS",
    "SERVER_NAME",
    "SERVER_REQUESTS",
    "Credentials",
    "Rate",
    "ToolGrant",
    "ToolPolicy",
    "ToolServer",
    "parse",
    "tool_digest",
]

SERVER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")  # never holds "__"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def tool_digest(definition: Mapping[str, Any]) -> str:
    """The pin of one tool as `tools/list` lists it."""
    return sha256_digest({key: value for key, value in definition.items() if key != "_meta"})


DEFAULT_TIMEOUT_S = 30.0
SERVER_REQUESTS = ("sampling", "elicitation", "roots")  # what a server may ask the agent


@dataclass(frozen=True)
class Rate:
    calls: int
    per_s: float


@dataclass(frozen=True)
class ToolGrant:
    name: str
    digest: str | None = None  # None: declared, not yet approved (hidden and refused)
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    rate: Rate | None = None


@dataclass(frozen=True)
class Credentials:
    """A header the gateway sends the tool server, its value a secret reference."""

    secret_key_ref: dict[str, str]
    header: str = "Authorization"
    scheme: str = "Bearer"


@dataclass(frozen=True)
class ToolServer:
    name: str
    url: str | None = None  # Streamable HTTP
    command: tuple[str, ...] = ()  # stdio: a subprocess the gateway owns
    tools: tuple[ToolGrant, ...] = ()
    credentials: Credentials | None = None
    allow_requests: tuple[str, ...] = ()  # of SERVER_REQUESTS

    @property
    def connection(self) -> tuple[object, ...]:
        """What, changed by a new pack, needs a new connection to the server."""
        return (self.url, self.command, self.credentials)

    def grant(self, tool: str) -> ToolGrant | None:
        return next((t for t in self.tools if t.name == tool), None)


@dataclass(frozen=True)
class ToolPolicy:
    servers: tuple[ToolServer, ...] = ()

    def server(self, name: str) -> ToolServer | None:
        return next((s for s in self.servers if s.name == name), None)


NO_TOOLS = ToolPolicy()


def parse(raw: Any) -> ToolPolicy:
    """The section, checked; `DocumentError` names the path of what is wrong."""
    if raw is None:
        return NO_TOOLS
    if not isinstance(raw, dict) or set(raw) - {"servers"}:
        raise DocumentError("tools holds `servers:`, a list", ["tools"])
    servers = raw.get("servers") or []
    if not isinstance(servers, list):
        raise DocumentError("tools.servers is a list", ["tools", "servers"])
    parsed = tuple(_server(i, s) for i, s in enumerate(servers))
    names = [s.name for s in parsed]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise DocumentError(f"server {name!r} is declared twice", ["tools", "servers", i])
    return ToolPolicy(parsed)


def _server(index: int, raw: Any) -> ToolServer:
    where: list[str | int] = ["tools", "servers", index]
    keys = {"name", "url", "command", "tools", "credentials", "allow_requests"}
    if not isinstance(raw, dict) or set(raw) - keys:
        raise DocumentError(f"a server has {', '.join(sorted(keys))}", where)
    name = raw.get("name")
    if not isinstance(name, str) or not SERVER_NAME.match(name):
        raise DocumentError("a server's name is lowercase letters, digits and '-'", where)
    url, command = raw.get("url"), raw.get("command")
    if (url is None) == (command is None):
        raise DocumentError(f"server {name!r} needs a url or a command (one of them)", where)
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise DocumentError(f"server {name!r}: url is an http(s) URL", [*where, "url"])
    if command is not None and not _strings(command):
        raise DocumentError(f"server {name!r}: command is a list of strings", [*where, "command"])
    tools_raw = raw.get("tools") or []
    if not isinstance(tools_raw, list):
        raise DocumentError(f"server {name!r}: tools is a list", [*where, "tools"])
    grants = tuple(_grant([*where, "tools", i], t) for i, t in enumerate(tools_raw))
    asks = raw.get("allow_requests") or []
    if not _strings(asks) or set(asks) - set(SERVER_REQUESTS):
        message = f"server {name!r}: allow_requests lists {', '.join(SERVER_REQUESTS)}"
        raise DocumentError(message, [*where, "allow_requests"])
    credentials = _credentials([*where, "credentials"], raw.get("credentials"))
    return ToolServer(name, url, tuple(command or ()), grants, credentials, tuple(asks))


def _credentials(where: list[str | int], raw: Any) -> Credentials | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"secret_key_ref", "header", "scheme"}:
        raise DocumentError("credentials has secret_key_ref, header and scheme", where)
    ref = raw.get("secret_key_ref")
    if not (isinstance(ref, dict) and len(ref) == 1 and set(ref) <= {"env", "store"}):
        raise DocumentError("secret_key_ref is {env: NAME} or {store: NAME}", where)
    header, scheme = raw.get("header", "Authorization"), raw.get("scheme", "Bearer")
    if not isinstance(header, str) or not header or not isinstance(scheme, str):
        raise DocumentError("credentials' header and scheme are strings", where)
    return Credentials({str(k): str(v) for k, v in ref.items()}, header, scheme)


def _grant(where: list[str | int], raw: Any) -> ToolGrant:
    if not isinstance(raw, dict) or set(raw) - {"name", "digest", "allow", "timeout_s", "rate"}:
        raise DocumentError("a tool has name, digest, allow, timeout_s and rate", where)
    name, digest, allow = raw.get("name"), raw.get("digest"), raw.get("allow") or {}
    if not isinstance(name, str) or not name:
        raise DocumentError("a tool needs its name", where)
    if digest is not None and (not isinstance(digest, str) or not DIGEST.match(digest)):
        raise DocumentError(f"tool {name!r}: digest is sha256:<64 hex>", [*where, "digest"])
    if not isinstance(allow, dict) or set(allow) - {"roles", "scopes", "agents"}:
        raise DocumentError(f"tool {name!r}: allow has roles, scopes, agents", [*where, "allow"])
    for key, value in allow.items():
        if not _strings(value):
            raise DocumentError(f"tool {name!r}: allow.{key} is a list", [*where, "allow", key])
    timeout = raw.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not _positive(timeout):
        raise DocumentError(f"tool {name!r}: timeout_s is a positive number", [*where, "timeout_s"])
    return ToolGrant(
        name,
        digest,
        tuple(allow.get("roles", ())),
        tuple(allow.get("scopes", ())),
        tuple(allow.get("agents", ())),
        float(timeout),
        _rate([*where, "rate"], raw.get("rate")),
    )


def _rate(where: list[str | int], raw: Any) -> Rate | None:
    if raw is None:
        return None
    ok = isinstance(raw, dict) and set(raw) == {"calls", "per_s"}
    if not ok or not (_positive(raw["calls"]) and _positive(raw["per_s"])):
        raise DocumentError("rate is {calls: N, per_s: seconds}, both positive", where)
    if not isinstance(raw["calls"], int):
        raise DocumentError("rate.calls is a whole number", where)
    return Rate(raw["calls"], float(raw["per_s"]))


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)
