"""A region's log as its sealer makes it, for tests of what the centre makes of it."""

from __future__ import annotations

import json
from typing import Any

from cordon.log import checkpoints, envelope, merkle, summary_chain
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey
from cordon.log.summary_chain import Candidate
from gateway.ledger import summaries

REGION = "eu-west"
SECRET = b"pseudonym-secret"


class Log:
    """A region's RECORDS as its sealer sees them: an enrolment of the sealer's key first,
    then decision records; chained summaries and signed checkpoints as the sealer makes
    them."""

    def __init__(self) -> None:
        self.regional = SigningKey.generate()
        self.sealer = SigningKey.generate()
        self.replica = SigningKey.generate()
        self.records = [enrol(self.regional, REGION, "sealer", self.sealer)]
        self.records.append(enrol(self.regional, REGION, "gw-1", self.replica))
        self.links = [summary_chain.genesis(REGION)]
        self.bodies: list[bytes] = []  # each published summary's exact bytes
        self.published = [self._publish(seq) for seq in (1, 2)]

    def grow(self, count: int, numbered: list[tuple[str, int]] | None = None) -> list[Candidate]:
        """`count` decision records; with `numbered`, each one a (kind, replica_seq) of
        replica gw-1 instead."""
        for i in range(len(numbered) if numbered else count):
            n = len(self.records)
            ts = f"2026-12-02T10:{n // 60:02d}:{n % 60:02d}.000000+00:00"  # a second apart
            record = {"v": 1, "kind": "decision", "id": f"r{n}", "person": "p", "ts": ts}
            if numbered:
                record.update(kind=numbered[i][0], replica="gw-1", replica_seq=numbered[i][1])
            self.records.append(envelope.seal(record, self.replica).encode())
            self.published.append(self._publish(len(self.records)))
        return self.published[-count:]

    def add(self, *records: dict[str, Any], older: bool = False) -> list[Candidate]:
        """Decision records of replica gw-1 with these fields (over an id, time and
        person of their own); `older`: summarized as a sealer did before summaries said
        where a pack was enforced."""
        for fields in records:
            n = len(self.records)
            ts = f"2026-12-02T10:{n // 60:02d}:{n % 60:02d}.000000+00:00"
            record = {"v": 1, "kind": "decision", "id": f"r{n}", "person": "p", "ts": ts}
            self.records.append(envelope.seal({**record, **fields}, self.replica).encode())
            before = {"enforced_by": None, "sdk_record": None} if older else {}
            self.published.append(self._publish(len(self.records), **before))
        return self.published[-len(records) :]

    def _publish(self, seq: int, **altered: Any) -> Candidate:
        summary = summaries.summarize(self.records[seq - 1], seq, REGION, SECRET)
        body, link = summaries.chained({**summary, **altered}, self.links[seq - 1])
        self.links.append(link)
        self.bodies.append(body)
        return summary_chain.candidate(json.loads(body), body)

    def checkpoint(self, key: SigningKey | None = None, chain: bool = True) -> bytes:
        tree = merkle.CompactTree()
        for data in self.records:
            tree.append(merkle.leaf_hash(data))
        head = self.links[tree.size] if chain else None
        stated = checkpoints.Checkpoint(REGION, tree.size, tree.root(), 1_000, head)
        return checkpoints.encode(stated, key or self.sealer, tree)


def forge(true: Candidate, **changes: Any) -> Candidate:
    """What someone with the region's XR credentials can send: any body, chained right
    after the true summary's predecessor."""
    body = json.dumps({**true.summary, **changes}).encode()
    return summary_chain.candidate(json.loads(body), body)
