"""Central streams the replicator owns: `POLICY` and the `replicator` KV."""

from __future__ import annotations

from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from gateway import subjects
from gateway.streams import ensure_stream


def policy_config() -> StreamConfig:
    return StreamConfig(
        name=subjects.POLICY_STREAM,
        description="Packs as published by policy owners.",
        subjects=[subjects.policy_subject("*")],
        storage=StorageType.FILE,
        deny_delete=True,
        max_msgs_per_subject=100,
    )


async def ensure_central(js: JetStreamContext) -> None:
    await ensure_stream(js, policy_config())
    await js.create_key_value(KeyValueConfig(bucket=subjects.REPLICATOR_BUCKET, history=1))
