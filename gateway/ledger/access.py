"""Every auditor read of a region's records is itself a record in that region.

The audit API signs an `access` record — who (the token's name), which route and query,
how many records it returned — with its own key, enrolled by the regional key like a
replica's, and commits it to `RECORDS` before it answers. A read that cannot be
recorded is refused. Access records are leaves of the region's log like any other, so
they cannot be dropped unnoticed, and auditors find them with
`/v1/records/search?kind=access`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext

from cordon.errors import RecordCommitError
from cordon.ids import uuid7
from cordon.log import envelope
from cordon.log.keys import SigningKey
from cordon.nats import subjects
from cordon.tokens import Grant

__all__ = ["ACCESS_KIND", "REPLICA", "AccessLog"]

ACCESS_KIND = "access"
REPLICA = "audit-api"  # the name its key is enrolled under, and its records' subject
COMMIT_TIMEOUT_S = 2.0


class AccessLog:
    def __init__(self, region: str, key: SigningKey) -> None:
        self.region = region
        self.key = key
        self.subject = subjects.record_subject(region, REPLICA)

    async def record(
        self,
        js: JetStreamContext,
        grant: Grant,
        route: str,
        query: Mapping[str, str],
        returned: int,
    ) -> str:
        """Commit one access record; its id. `RecordCommitError` if it did not land."""
        record_id = uuid7()
        payload = {
            "kind": ACCESS_KIND,
            "id": record_id,
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "region": self.region,
            "replica": REPLICA,
            "agent": grant.name,
            "roles": sorted(grant.roles),
            "route": route,
            "query": dict(query),
            "returned": returned,
        }
        data = envelope.seal(payload, self.key).encode()
        try:
            await js.publish(
                self.subject, data, timeout=COMMIT_TIMEOUT_S, headers={"Nats-Msg-Id": record_id}
            )
        except (NatsError, TimeoutError) as exc:
            raise RecordCommitError(f"access record not committed: {exc}") from exc
        return record_id
