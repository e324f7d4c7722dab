"""The app routes to the MCP endpoint by path without loading it (`gateway.http.app`
keeps its own copy of the paths): the copy must say what the endpoint says."""

from __future__ import annotations

import pytest

from gateway.http.app import MCP_PATHS
from gateway.http.mcp import McpEndpoint

pytestmark = pytest.mark.fast

PATHS = [
    "/mcp",
    "/mcp/",
    "/mcp/dev-tools",
    "/mcpx",
    "/v1/mcp",
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp/dev-tools",
    "/.well-known/openid-configuration",
    "/",
]


@pytest.mark.parametrize("path", PATHS)
def test_the_app_sends_to_mcp_what_the_endpoint_serves(path: str) -> None:
    assert (path == "/mcp" or path.startswith(MCP_PATHS)) is McpEndpoint.serves(path)
