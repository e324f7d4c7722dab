"""Setup: create or bring up to date every stream and bucket, as the provisioning identity.

Only `provision` users may touch the JetStream admin API (cordon/estate/templates/*.conf), so this
is the one place streams change: `make run` runs it, and so does
`cordon nats provision` after a pack asks for a longer record retention than `RECORDS`
keeps (replicas report that shortfall; they may not change a stream themselves).
Retention only ever grows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import nats
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from cordon.errors import PackError
from cordon.nats import streams, subjects
from cordon.nats.endpoint import Endpoint
from cordon.packs import signing

__all__ = ["Targets", "provision"]

DEFAULT_RECORDS_RETENTION_DAYS = 365.0


@dataclass(frozen=True)
class Targets:
    """Where to provision, as the provisioning identities (never a runtime role's)."""

    central: Endpoint
    regions: Mapping[str, tuple[Endpoint, Endpoint]]  # region -> (AUDIT, XR)
    pack_trust: tuple[str, ...] = ()  # hex public keys whose packs' retention counts
    records_retention_days: float = DEFAULT_RECORDS_RETENTION_DAYS
    # How many copies of each stream and bucket: 3 where the place is a three-node
    # cluster; a place not named keeps one.
    replicas: Mapping[str, int] = field(default_factory=dict)  # "central" or a region


async def provision(targets: Targets) -> dict[str, float | None]:
    """Every stream and bucket; returns each region's RECORDS retention in days."""
    trusted = signing.trust_root(targets.pack_trust)
    retention: dict[str, float | None] = {}
    central = await targets.central.connect()
    try:
        central_replicas = targets.replicas.get("central", 1)
        await streams.ensure_central(central.jetstream(), central_replicas)
        for region, (audit, xr) in targets.regions.items():
            retention[region] = await _provision_region(
                region,
                audit,
                xr,
                trusted,
                targets.records_retention_days,
                targets.replicas.get(region, 1),
            )
        await streams.ensure_audit_summary(central.jetstream(), targets.regions, central_replicas)
    finally:
        await central.close()
    return retention


async def _provision_region(
    region: str,
    audit_endpoint: Endpoint,
    xr_endpoint: Endpoint,
    trusted: Mapping[str, bytes],
    days: float,
    replicas: int,
) -> float | None:
    audit = await audit_endpoint.connect()
    xr = await xr_endpoint.connect()
    try:
        audit_js, xr_js = audit.jetstream(), xr.jetstream()
        await streams.ensure_region(audit_js, xr_js, region, replicas=replicas)
        wanted = max([days, *await _pack_retentions(xr_js, trusted)])
        await streams.extend_records_retention(audit_js, wanted)
        return await streams.records_retention_days(audit_js)
    finally:
        await audit.close()
        await xr.close()


async def _pack_retentions(xr_js: JetStreamContext, trusted: Mapping[str, bytes]) -> list[float]:
    """The retention each valid pack in the region's `policy` bucket asks for."""
    if not trusted:
        return []
    kv = await xr_js.key_value(subjects.POLICY_BUCKET)
    try:
        keys: Iterable[str] = await kv.keys()
    except (NotFoundError, nats.js.errors.NoKeysError):
        return []
    asked = []
    for key in keys:
        if not key.startswith(subjects.PACK_KEY_PREFIX):
            continue
        entry = await kv.get(key)
        try:
            pack = signing.decode(entry.value or b"", trusted)
        except PackError:
            continue  # a pack no replica would enforce asks for nothing
        if pack.retention_days is not None:
            asked.append(pack.retention_days)
    return asked
