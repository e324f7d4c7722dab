"""The local topology: `cordon dev up`, the test fixtures and the benches run this.

`stack.DevStack` starts central and the regions (nats-server processes rendered by
`natsconf` from `topology`'s plan) and every Cordon process as a child process
(`procs`), plus the mock model provider (`mock_provider`).
"""

from pathlib import Path

__all__ = ["DEV_DIR", "mock_provider", "natsconf", "procs", "stack", "topology"]

# Where `cordon dev up` keeps state, logs and endpoints.json; the policy CLI reads it.
DEV_DIR = Path(".cordon/dev")
