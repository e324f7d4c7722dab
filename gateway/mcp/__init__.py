"""Agents' tool calls through the gateway (MCP, issue 24): the wire spoken by Cordon
itself, without the `mcp` SDK's pydantic stack. `jsonrpc`: JSON-RPC 2.0 messages as
MCP carries them; `stdio`: an upstream tool server the gateway owns as a subprocess.
docs/design/mcp-wire.md is the protocol as the specification defines it.
"""

__all__ = ["jsonrpc", "stdio"]
