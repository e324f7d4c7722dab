"""Agents' tool calls through the gateway (MCP, issue 24): the wire spoken by Cordon
itself, without the `mcp` SDK's pydantic stack. `jsonrpc`: JSON-RPC 2.0 messages as
MCP carries them; `upstream`: the one interface to an upstream tool server, over
`stdio` (a subprocess the gateway owns) or `http_upstream` (Streamable HTTP).
docs/design/mcp-wire.md is the protocol as the specification defines it.
"""

__all__ = ["http_upstream", "jsonrpc", "stdio", "upstream"]
