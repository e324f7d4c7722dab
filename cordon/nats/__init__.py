"""NATS plumbing every long-running Cordon process shares.

Where and as whom to connect (`Endpoint`), a connection that keeps reconnecting
(`connect`), durable pull consumers read batch by batch (`durable_batches`,
`stream_seq`), a loop that resumes work after NATS went away (`keep_running`), the
pipelined JetStream publisher (`StreamPublisher`), every subject and name (`subjects`)
and every stream and bucket (`streams`).

Only `Endpoint` and `subjects` are imported with the package: settings name endpoints
in processes that never dial NATS (a local sidecar), which must not load the client.
The rest is imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cordon.nats import subjects
from cordon.nats.endpoint import Endpoint

if TYPE_CHECKING:
    from cordon.nats import streams
    from cordon.nats.connection import connect, keep_running
    from cordon.nats.consumers import durable_batches, stream_seq
    from cordon.nats.publisher import StreamPublisher

__all__ = [
    "Endpoint",
    "StreamPublisher",
    "connect",
    "durable_batches",
    "keep_running",
    "stream_seq",
    "streams",
    "subjects",
]

_LAZY = {
    "streams": ("cordon.nats.streams", None),
    "connect": ("cordon.nats.connection", "connect"),
    "keep_running": ("cordon.nats.connection", "keep_running"),
    "durable_batches": ("cordon.nats.consumers", "durable_batches"),
    "stream_seq": ("cordon.nats.consumers", "stream_seq"),
    "StreamPublisher": ("cordon.nats.publisher", "StreamPublisher"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # the next lookup is an ordinary one
    return value
