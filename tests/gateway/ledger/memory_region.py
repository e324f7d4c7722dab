"""One region's log in memory, behind the audit API's collaborators: records as its
replicas sign them, an index in a temporary SQLite file fed with them, checkpoints
the sealer signs, and an access log that appends to the same records. What an
in-process test builds the audit API on (gateway.ledger.audit_state)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from nats.js.client import JetStreamContext

from cordon.log import checkpoints, envelope, merkle
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey, public_bytes
from cordon.nats import subjects
from cordon.tokens import Grant, Tokens, grant_settings, new_token
from gateway.ledger import audit_index
from gateway.ledger.access import REPLICA, AccessLog
from gateway.ledger.audit_state import AuditState, EnrolledKeys, Stored

REGION = "eu-west"


class MemoryRecords:
    """`RecordSource` over a dict: the region's RECORDS stream."""

    def __init__(self) -> None:
        self.messages: dict[int, Stored] = {}
        self.last = 0

    def append(self, subject: str, data: bytes) -> int:
        self.last += 1
        self.messages[self.last] = (subject, data)
        return self.last

    async def last_seq(self) -> int:
        return self.last

    async def get(self, seq: int) -> Stored | None:
        return self.messages.get(seq)

    async def next_on(self, subject: str, seq: int) -> tuple[int, bytes] | None:
        for at in range(seq, self.last + 1):
            found = self.messages.get(at)
            if found is not None and found[0] == subject:
                return at, found[1]
        return None


class _Publisher:
    """The one JetStream call AccessLog makes, landing in MemoryRecords."""

    def __init__(self, records: MemoryRecords, refusing: list[bool]) -> None:
        self._records, self._refusing = records, refusing

    async def publish(self, subject: str, data: bytes, **_: Any) -> None:
        if self._refusing[0]:
            raise TimeoutError("the region's NATS did not answer")
        self._records.append(subject, data)


class MemoryAccess:
    """`AccessRecorder`: the real AccessLog, publishing into the memory stream; set
    `refusing` to make every commit fail as a NATS outage would."""

    def __init__(self, log: AccessLog, records: MemoryRecords) -> None:
        self.refusing = [False]
        self._log = log
        self._js = cast(JetStreamContext, _Publisher(records, self.refusing))

    async def record(
        self, grant: Grant, route: str, query: Mapping[str, str], returned: int
    ) -> str:
        # AccessLog turns the publisher's TimeoutError into RecordCommitError, as in
        # production.
        return await self._log.record(self._js, grant, route, query, returned)


class MemoryCheckpoints:
    """`CheckpointSource`: checkpoints the sealer signed, handed to the index on refresh."""

    def __init__(self) -> None:
        self.published: list[bytes] = []
        self._copied = 0

    async def refresh(self, index: audit_index.AuditIndex) -> None:
        for raw in self.published[self._copied :]:
            self._copied += 1
            index.add_checkpoint(self._copied, raw)


class Region:
    """A region with a replica, a sealer and an audit API, all in this process."""

    def __init__(self, root: Path) -> None:
        self.regional, self.sealer = SigningKey.generate(), SigningKey.generate()
        self.replica, access_key = SigningKey.generate(), SigningKey.generate()
        self.records = MemoryRecords()
        self.checkpoints = MemoryCheckpoints()
        self.index = audit_index.AuditIndex(root / "audit-index.sqlite3")
        self.token, self.other_region_token = new_token(), new_token()
        self.access = MemoryAccess(AccessLog(REGION, access_key), self.records)
        for name, key in (("sealer", self.sealer), ("gw-1", self.replica)):
            self._append(
                subjects.enrolment_subject(REGION), enrol(self.regional, REGION, name, key)
            )
        self._append(
            subjects.enrolment_subject(REGION), enrol(self.regional, REGION, REPLICA, access_key)
        )
        regional = public_bytes(self.regional.public_key)
        self.state = AuditState(
            region=REGION,
            regional_public_key=regional,
            tokens=Tokens.from_settings(
                [
                    grant_settings("auditor-eu", self.token, ["auditor"], [REGION]),
                    grant_settings("auditor-us", self.other_region_token, ["auditor"], ["us"]),
                ]
            ),
            index=self.index,
            records=self.records,
            access=self.access,
            checkpoints=self.checkpoints,
            keys=EnrolledKeys(REGION, regional),
        )
        self._replica_seq = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def decide(self, count: int, person: str = "p-1") -> list[int]:
        """`count` decision records of replica gw-1, indexed; their sequences."""
        seqs = []
        for _ in range(count):
            self._replica_seq += 1
            n = self._replica_seq
            record = {
                "v": 1,
                "kind": "decision",
                "id": f"r{n}",
                "ts": f"2026-12-02T10:00:{n:02d}.000000+00:00",
                "region": REGION,
                "replica": "gw-1",
                "replica_seq": n,
                "person": person,
                "agent": "app-1",
                "outcome": "allow",
            }
            data = envelope.seal(record, self.replica).encode()
            seqs.append(self._append(subjects.record_subject(REGION, "gw-1"), data))
        self._catch_up()
        return seqs

    def seal(self) -> int:
        """A checkpoint over everything so far, signed by the sealer; its size."""
        self._catch_up()
        tree = merkle.CompactTree()
        for seq in range(1, self.records.last + 1):
            tree.append(merkle.leaf_hash(self.records.messages[seq][1]))
        stated = checkpoints.Checkpoint(REGION, tree.size, tree.root(), 1_000)
        self.checkpoints.published.append(checkpoints.encode(stated, self.sealer, tree))
        return tree.size

    def _append(self, subject: str, data: bytes) -> int:
        return self.records.append(subject, data)

    def _catch_up(self) -> None:
        """Index every message not indexed yet, as the index's follower would."""
        start = self.index.size() + 1
        rows = [(seq, self.records.messages[seq][1]) for seq in range(start, self.records.last + 1)]
        self.index.add(rows)

    def close(self) -> None:
        self.index.close()
