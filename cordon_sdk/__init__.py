"""Cordon in-process: `govern(client, config=...)` wraps an OpenAI or Anthropic client so
every model call it makes is enforced by the same engine as the gateway and the sidecar
(input rules before the network call, output rules on answers and streams) and leaves
the same signed record, in a local log of the application's own (docs/sdk.md).

Installed with `pip install 'cordon[sdk]'`, which brings none of the server stack.
"""

from cordon.errors import PolicyBlocked
from cordon_sdk.clients import govern
from cordon_sdk.engine import shutdown

__all__ = ["PolicyBlocked", "govern", "shutdown"]
