"""An agent's MCP session with the gateway, carried by the agent itself.

The gateway is stateless towards agents: the `Mcp-Session-Id` it issues on
`initialize` *is* the session — the negotiated protocol revision, what the agent
said it can do, and whose session it is — encoded, not stored. Any replica of the
region reads it, so an agent's requests may land on different replicas behind a
load balancer with no affinity. It grants nothing: every request is authenticated
on its own, and a session shown with another caller's credential is refused as
unknown (404, so the client starts a new one).

Revisions served: 2025-11-25, 2025-06-18 and 2025-03-26 (without its batches). A
client asking for another one is answered with the latest (the client decides
whether it can speak it); a request naming an unserved revision in
`MCP-Protocol-Version` is refused, one naming none is taken as 2025-03-26, as the
specification says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from cordon import jsoncodec
from gateway.identity import Identity

__all__ = ["ASSUMED_VERSION", "LATEST_VERSION", "SERVED_VERSIONS", "Session", "negotiate"]

SERVED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
LATEST_VERSION = SERVED_VERSIONS[0]
ASSUMED_VERSION = "2025-03-26"  # a request without MCP-Protocol-Version (the spec's default)
PREFIX = "c1."  # the session format's version; a different one is not ours


def negotiate(requested: Any) -> str:
    """The revision to answer an `initialize` asking for `requested`."""
    return requested if requested in SERVED_VERSIONS else LATEST_VERSION


def caller_key(identity: Identity) -> str:
    """Who a session belongs to: stable across a delegation token's renewals."""
    who = "\x1f".join((identity.method, identity.agent, identity.person or ""))
    return hashlib.sha256(who.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Session:
    version: str
    caller: str  # caller_key of the identity that opened it
    capabilities: tuple[str, ...] = ()  # the client's: sampling, elicitation, roots
    nonce: str = ""  # this session's own, so no two are alike

    @classmethod
    def opened(cls, version: str, identity: Identity, capabilities: Any) -> Session:
        offered = capabilities if isinstance(capabilities, dict) else {}
        kinds = tuple(k for k in ("sampling", "elicitation", "roots") if k in offered)
        return cls(version, caller_key(identity), kinds, secrets.token_urlsafe(9))

    def token(self) -> str:
        """The `Mcp-Session-Id`: visible ASCII."""
        body = {"v": self.version, "c": self.caller, "k": list(self.capabilities)}
        body["n"] = self.nonce
        return PREFIX + base64.urlsafe_b64encode(jsoncodec.dumps(body)).decode().rstrip("=")

    @classmethod
    def read(cls, token: str, identity: Identity) -> Session | None:
        """The session `token` carries, if it is one of ours and `identity`'s."""
        if not token.startswith(PREFIX) or len(token) > 512:
            return None
        encoded = token[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            body = jsoncodec.loads(raw)
        except (ValueError, binascii.Error):
            return None
        if not isinstance(body, dict) or body.get("v") not in SERVED_VERSIONS:
            return None
        kinds = body.get("k")
        if body.get("c") != caller_key(identity) or not isinstance(kinds, list):
            return None
        return cls(body["v"], body["c"], tuple(str(k) for k in kinds), str(body.get("n", "")))
