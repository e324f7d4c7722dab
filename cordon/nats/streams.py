"""Every stream and bucket Cordon uses, defined once, and created idempotently.

Regional: `RECORDS` (account AUDIT; full records, never bridged), `SUMMARY` and the
`policy` and `applied` buckets (account XR). Central: `POLICY`, the `replicator`
bucket, and `AUDIT_SUMMARY`, which sources every region's `SUMMARY` over the leaf.
docs/architecture.md draws who reads and writes each.
"""

from __future__ import annotations

from collections.abc import Iterable

from nats.js.api import (
    DiscardPolicy,
    ExternalStream,
    KeyValueConfig,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from cordon.nats import subjects

DAY_S = 86_400.0
STREAM_NAME_IN_USE = 10058


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create `config`, or bring an existing stream of that name up to it."""
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != STREAM_NAME_IN_USE:
            raise
        await js.update_stream(config)


def _evidence(
    name: str, description: str, subject_filters: list[str], retention_days: float
) -> StreamConfig:
    """A regional stream of evidence: on disk, refusing deletes and purges, and refusing
    new messages when full rather than dropping old ones."""
    return StreamConfig(
        name=name,
        description=description,
        subjects=subject_filters,
        storage=StorageType.FILE,
        max_age=retention_days * DAY_S,
        discard=DiscardPolicy.NEW,
        deny_delete=True,
        deny_purge=True,
        duplicate_window=120.0,
    )


def records_config(region: str, retention_days: float = 365.0, replicas: int = 1) -> StreamConfig:
    config = _evidence(
        subjects.RECORDS_STREAM,
        f"Full decision records of {region}. Never leaves the region.",
        [subjects.records_filter(region), subjects.enrolment_subject(region)],
        retention_days,
    )
    config.allow_direct = True
    config.num_replicas = replicas
    return config


def summary_config(region: str, retention_days: float = 30.0, replicas: int = 1) -> StreamConfig:
    config = _evidence(
        subjects.SUMMARY_STREAM,
        f"Metadata-only summaries and checkpoints of {region}.",
        [subjects.summaries_filter(region), subjects.checkpoint_subject(region)],
        retention_days,
    )
    config.num_replicas = replicas
    return config


async def ensure_region(
    audit_js: JetStreamContext,
    xr_js: JetStreamContext,
    region: str,
    retention_days: float = 365.0,
    replicas: int = 1,
) -> None:
    """Everything one region needs: RECORDS in AUDIT; SUMMARY and the KVs in XR, each
    kept `replicas` times (3 on a three-node cluster: an ack means two nodes have it).

    RECORDS keeps records at least `retention_days`, and never less than it already
    does: running this again must not delete what a regulator may still ask for."""
    try:
        kept = await records_retention_days(audit_js)
    except NotFoundError:
        kept = 0.0  # no stream yet
    forever = kept is None
    days = 0.0 if forever else max(float(kept or 0.0), retention_days)
    await ensure_stream(audit_js, records_config(region, days, replicas))
    await ensure_stream(xr_js, summary_config(region, replicas=replicas))
    for bucket, history in ((subjects.POLICY_BUCKET, 10), (subjects.APPLIED_BUCKET, 1)):
        await xr_js.create_key_value(
            KeyValueConfig(bucket=bucket, history=history, replicas=replicas)
        )


async def records_retention_days(audit_js: JetStreamContext) -> float | None:
    """How long `RECORDS` keeps records, in days; None for forever."""
    info = await audit_js.stream_info(subjects.RECORDS_STREAM)
    return float(info.config.max_age) / DAY_S if info.config.max_age else None


async def extend_records_retention(
    audit_js: JetStreamContext, retention_days: float
) -> float | None:
    """Raise `RECORDS` max_age to `retention_days` if it is shorter; never shorten it.

    Shortening would delete records a regulator may still ask for, so a pack asking
    for less keeps the longer retention (the caller logs that). Returns the new
    retention in days when it changed.
    """
    info = await audit_js.stream_info(subjects.RECORDS_STREAM)
    current = float(info.config.max_age or 0)
    wanted = retention_days * DAY_S
    if current == 0 or wanted <= current:  # 0: kept forever already
        return None
    info.config.max_age = wanted
    await audit_js.update_stream(info.config)
    return retention_days


async def publish_enrolment(
    js: JetStreamContext, region: str, key_id: str, enrolment: bytes
) -> None:
    """Put an enrolment into the region's RECORDS; its id keeps a restart from repeating it."""
    await js.publish(
        subjects.enrolment_subject(region), enrolment, headers={"Nats-Msg-Id": f"enrol-{key_id}"}
    )


# -- central ---------------------------------------------------------------------------


def policy_config() -> StreamConfig:
    return StreamConfig(
        name=subjects.POLICY_STREAM,
        description="Packs as published by policy owners.",
        subjects=[subjects.policy_subject("*")],
        storage=StorageType.FILE,
        deny_delete=True,
        max_msgs_per_subject=100,
    )


async def ensure_central(js: JetStreamContext, replicas: int = 1) -> None:
    """What the replicator owns: `POLICY`, the `replicator` KV (rollout state) and the
    `replicator_lease` KV, whose entries age out (replicator.lease)."""
    config = policy_config()
    config.num_replicas = replicas
    await ensure_stream(js, config)
    await js.create_key_value(
        KeyValueConfig(bucket=subjects.REPLICATOR_BUCKET, history=1, replicas=replicas)
    )
    await js.create_key_value(
        KeyValueConfig(
            bucket=subjects.REPLICATOR_LEASE_BUCKET,
            history=1,
            ttl=subjects.REPLICATOR_LEASE_TTL_S,
            replicas=replicas,
        )
    )


def audit_summary_config(regions: Iterable[str], replicas: int = 1) -> StreamConfig:
    """No subjects of its own, one source per region."""
    return StreamConfig(
        num_replicas=replicas,
        name=subjects.AUDIT_SUMMARY_STREAM,
        description="Every region's metadata-only summaries, sourced over the leaf.",
        storage=StorageType.FILE,
        deny_delete=True,
        deny_purge=True,
        sources=[
            StreamSource(
                name=subjects.SUMMARY_STREAM,
                external=ExternalStream(api=subjects.domain_api(region)),
            )
            for region in sorted(regions)
        ],
    )


async def ensure_audit_summary(
    js: JetStreamContext, regions: Iterable[str], replicas: int = 1
) -> None:
    await ensure_stream(js, audit_summary_config(regions, replicas))
