"""An MCP tool's definition pinned by digest: what a pack approves is exactly the
definition it saw, so a tool whose description or schema changes upstream after
approval ("rug pull") no longer matches until a pack approves the new digest.

The digest is `sha256:` and the hex SHA-256 of the definition's RFC 8785 canonical
JSON (`cordon.jcs`) without its top-level `_meta` (metadata a server may change freely,
which the agent's model never reads), so anyone can recompute it with any RFC 8785
implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cordon.jcs import sha256_digest

__all__ = ["tool_digest"]


def tool_digest(definition: Mapping[str, Any]) -> str:
    """The pin of one tool as `tools/list` lists it."""
    return sha256_digest({key: value for key, value in definition.items() if key != "_meta"})
