"""Commit signed records to the regional `RECORDS` stream and wait for the ack.

The record id is the `Nats-Msg-Id`, so the stream drops a duplicate of a record
whose first publish timed out ambiguously.
"""

from __future__ import annotations

from typing import Any

import msgpack
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from gateway import envelope, subjects
from gateway.errors import RecordCommitError
from gateway.keys import SigningKey


class Recorder:
    def __init__(
        self, nc: NATS, region: str, replica: str, key: SigningKey, timeout: float
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._subject = subjects.record_subject(region, replica)
        self._key = key
        self._timeout = timeout
        self._next_seq = 1

    async def resume(self) -> None:
        """Continue `replica_seq` from the last record this replica committed."""
        try:
            last = await self._js.get_last_msg(subjects.RECORDS_STREAM, self._subject)
        except NotFoundError:
            return
        payload = msgpack.unpackb(envelope.decode(last.data or b"").payload)
        self._next_seq = int(payload["replica_seq"]) + 1

    async def publish_enrolment(self, region: str, enrolment: bytes) -> None:
        await self._js.publish(
            subjects.enrolment_subject(region),
            enrolment,
            timeout=self._timeout,
            headers={"Nats-Msg-Id": f"enrol-{self._key.key_id}"},
        )

    async def commit(self, record: dict[str, Any]) -> int:
        """Sign and commit `record`; return its stream sequence (the Merkle leaf index)."""
        if not self._nc.is_connected:
            # Buffering during an outage would commit this record after the caller
            # already got a 503; fail now instead.
            raise RecordCommitError("not connected to the regional NATS")
        record["replica_seq"] = self._next_seq
        self._next_seq += 1
        data = envelope.seal(record, self._key).encode()
        try:
            ack = await self._js.publish(
                self._subject,
                data,
                timeout=self._timeout,
                headers={"Nats-Msg-Id": record["id"]},
            )
        except (TimeoutError, NatsError) as exc:
            raise RecordCommitError(f"record not committed: {exc}") from exc
        seq: int = ack.seq
        return seq
