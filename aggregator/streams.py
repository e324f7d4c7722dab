"""The central `AUDIT_SUMMARY` stream: no subjects of its own, one source per region."""

from __future__ import annotations

from collections.abc import Iterable

from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource
from nats.js.client import JetStreamContext

from gateway import subjects
from gateway.streams import ensure_stream


def audit_summary_config(regions: Iterable[str]) -> StreamConfig:
    return StreamConfig(
        name=subjects.AUDIT_SUMMARY_STREAM,
        description="Every region's metadata-only summaries, sourced over the leaf.",
        storage=StorageType.FILE,
        sources=[
            StreamSource(
                name=subjects.SUMMARY_STREAM,
                external=ExternalStream(api=subjects.domain_api(region)),
            )
            for region in sorted(regions)
        ],
    )


async def ensure_audit_summary(js: JetStreamContext, regions: Iterable[str]) -> None:
    await ensure_stream(js, audit_summary_config(regions))
