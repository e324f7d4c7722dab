"""A pack's `tools:` section (MCP, issue 24): the tool servers a region's gateways front,
and per tool who may call it and the definition the pack approved, pinned by digest.

    tools:
      servers:
        - name: crm                         # /mcp/crm; `crm__lookup` in the union at /mcp
          url: https://crm.internal/mcp     # Streamable HTTP; or command: [prog, arg, ...]
          tools:
            - name: lookup
              digest: sha256:<64 hex>       # `cordon tools digest crm` lists them
              allow: {roles: [analyst], scopes: [crm:read], agents: [support-bot]}

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

__all__ = ["NO_TOOLS", "ToolGrant", "ToolPolicy", "ToolServer", "parse", "tool_digest"]

SERVER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")  # never holds "__"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def tool_digest(definition: Mapping[str, Any]) -> str:
    """The pin of one tool as `tools/list` lists it."""
    return sha256_digest({key: value for key, value in definition.items() if key != "_meta"})


@dataclass(frozen=True)
class ToolGrant:
    name: str
    digest: str | None = None  # None: declared, not yet approved (hidden and refused)
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolServer:
    name: str
    url: str | None = None  # Streamable HTTP
    command: tuple[str, ...] = ()  # stdio: a subprocess the gateway owns
    tools: tuple[ToolGrant, ...] = ()

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
    if not isinstance(raw, dict) or set(raw) - {"name", "url", "command", "tools"}:
        raise DocumentError("a server has name, url or command, and tools", where)
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
    return ToolServer(name, url, tuple(command or ()), grants)


def _grant(where: list[str | int], raw: Any) -> ToolGrant:
    if not isinstance(raw, dict) or set(raw) - {"name", "digest", "allow"}:
        raise DocumentError("a tool has name, digest and allow", where)
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
    return ToolGrant(
        name,
        digest,
        tuple(allow.get("roles", ())),
        tuple(allow.get("scopes", ())),
        tuple(allow.get("agents", ())),
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)
