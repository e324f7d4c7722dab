"""Who may see and call which tool: one decision, so `tools/list` never shows a tool
that `tools/call` would refuse, nor hides one it would serve (issue 24).

A tool is served only if the pack declares its server and the tool, pins its
definition by digest, that digest is what the server lists now, and the caller is
allowed. Each refusal says why, for the record; what the agent is told is the
gateway's to choose.
"""

from __future__ import annotations

from dataclasses import dataclass

from cordon.packs.tools import ToolGrant, ToolPolicy
from gateway.identity import Identity

__all__ = ["ToolAccess", "decide"]


@dataclass(frozen=True)
class ToolAccess:
    allowed: bool
    reason: str  # why not (empty when allowed): for the record, never the caller's text
    declared: bool = False  # the pack names this server and tool (summaries name it)


def decide(policy: ToolPolicy, caller: Identity, server: str, tool: str, digest: str) -> ToolAccess:
    """Whether `caller` may see and call `tool` of `server`, whose definition upstream
    has `digest` now."""
    declared_server = policy.server(server)
    if declared_server is None:
        return ToolAccess(False, "undeclared_server")
    grant = declared_server.grant(tool)
    if grant is None:
        return ToolAccess(False, "undeclared_tool")
    if grant.digest is None:
        return ToolAccess(False, "not_approved", declared=True)
    if grant.digest != digest:
        return ToolAccess(False, "definition_changed", declared=True)
    if not _allows(grant, caller):
        return ToolAccess(False, "not_allowed", declared=True)
    return ToolAccess(True, "", declared=True)


def _allows(grant: ToolGrant, caller: Identity) -> bool:
    """Each key of `allow` narrows: one of the roles, every scope, one of the agents."""
    if grant.roles and not set(grant.roles) & set(caller.roles):
        return False
    if grant.scopes and not set(grant.scopes) <= set(caller.scopes):
        return False
    return not grant.agents or caller.agent in grant.agents
