"""NATS plumbing every long-running Cordon process shares.

Where and as whom to connect (`Endpoint`), a connection that keeps reconnecting
(`connect`), durable pull consumers read batch by batch (`durable_batches`,
`stream_seq`), a loop that resumes work after NATS went away (`keep_running`), the
pipelined JetStream publisher (`StreamPublisher`), every subject and name (`subjects`)
and every stream and bucket (`streams`).
"""

from cordon.nats import streams, subjects
from cordon.nats.connection import connect, keep_running
from cordon.nats.consumers import durable_batches, stream_seq
from cordon.nats.endpoint import Endpoint
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
