"""The local topology: `python -m cordon_dev up` (`make run`), the test fixtures and the
benches run this. It is not part of the product: the wheel and the image leave it out.

`stack.DevStack` starts central and the regions (nats-server processes rendered by
`natsconf` from `topology`'s plan) and every Cordon process as a child process
(`procs`), plus the mock model provider (`mock_provider`).
"""

from cordon_cli.local import DEV_DIR

__all__ = ["DEV_DIR", "certs", "mock_provider", "procs", "stack", "topology", "wan"]
