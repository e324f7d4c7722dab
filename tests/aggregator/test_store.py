"""The central view store, fed as the consumer feeds it: candidate summaries, settled
by the region's signed checkpoints."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from aggregator import consumer, metrics
from aggregator.store import MIGRATIONS, ViewStore
from aggregator.witness import Witness
from cordon.errors import BadSummaryError
from cordon.log import checkpoints
from cordon.log.keys import SigningKey, public_bytes
from cordon.log.merkle import CompactTree
from cordon.nats import subjects
from tests.aggregator.conftest import OpenStore
from tests.aggregator.regional_log import REGION, Log

SUMMARY_SUBJECT = subjects.summary_subject(REGION, "gw-1")
CHECKPOINT_SUBJECT = subjects.checkpoint_subject(REGION)


def _delivered(subject: str, data: bytes, seq: int) -> Msg:
    ack = f"$JS.ACK.AUDIT_SUMMARY.aggregator.1.{seq}.{seq}.0.0"
    return Msg(_client=None, subject=subject, reply=ack, data=data)  # type: ignore[arg-type]


class Central:
    """The aggregator's store and witness, consuming one region's log."""

    def __init__(self, open_store: OpenStore, log: Log) -> None:
        self.open_store, self.log, self.delivered = open_store, log, 0
        self.store = open_store()
        self.witness = Witness({REGION: public_bytes(log.regional.public_key)})

    def consume(self, *messages: tuple[str, bytes]) -> None:
        batch = []
        for subject, data in messages:
            self.delivered += 1
            batch.append(_delivered(subject, data, self.delivered))
        consumer._store(self.store, self.witness, batch)

    def summaries(self, *bodies: bytes) -> list[tuple[str, bytes]]:
        return [(SUMMARY_SUBJECT, body) for body in bodies]

    def checkpoint(self) -> tuple[str, bytes]:
        return (CHECKPOINT_SUBJECT, self.log.checkpoint())

    def restart(self) -> None:
        self.store.close()
        self.store = self.open_store()
        self.witness = Witness({REGION: public_bytes(self.log.regional.public_key)})
        for region, state in self.store.witness_states().items():
            self.witness.restore(region, state)


def _ids(store: ViewStore) -> list[str]:
    return [s["id"] for s in store.query(limit=1000)]


def test_summaries_are_shown_once_their_checkpoint_vouches_for_them(open_store: OpenStore) -> None:
    log = Log()
    log.grow(3)
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies, log.bodies[3]))  # one redelivered
    assert central.store.query() == []  # waiting for their checkpoint
    central.consume(central.checkpoint())
    assert _ids(central.store) == [c.summary["id"] for c in log.published]
    stats = central.store.stats()["regions"][REGION]
    assert stats["records"] == 3 and stats["by_outcome"] == {None: 3}
    verdict = central.store.latest_checkpoints()[REGION]["witness"]
    assert verdict["verified"] is True and verdict["rejected"] == 0


def test_a_forged_summary_is_never_shown_and_is_counted(open_store: OpenStore) -> None:
    log = Log()
    log.grow(2)
    central = Central(open_store, log)
    true = json.loads(log.bodies[2])
    forged = json.dumps({**true, "id": "forged", "outcome": "allow"}).encode()
    before = metrics.SUMMARIES_REJECTED.labels(REGION)._value.get()
    central.consume(*central.summaries(*log.bodies[:2], forged, *log.bodies[2:]))
    central.consume(central.checkpoint())
    assert "forged" not in _ids(central.store) and true["id"] in _ids(central.store)
    late = json.dumps({**true, "id": "forged-late"}).encode()
    central.consume(*central.summaries(late, log.bodies[2]))  # after its checkpoint
    assert "forged-late" not in _ids(central.store) and len(_ids(central.store)) == 4
    assert metrics.SUMMARIES_REJECTED.labels(REGION)._value.get() == before + 2
    assert central.store.latest_checkpoints()[REGION]["witness"]["rejected"] == 1


def test_candidates_and_the_witness_survive_a_restart(open_store: OpenStore) -> None:
    log = Log()
    log.grow(4)
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies))
    central.consume(central.checkpoint())
    log.grow(3)
    central.consume(*central.summaries(*log.bodies[6:]))
    central.restart()
    central.consume(central.checkpoint())
    assert len(_ids(central.store)) == 9
    assert central.store.latest_checkpoints()[REGION]["witness"]["verified"] is True


def test_a_summary_counts_for_the_region_its_subject_names_never_its_body(
    open_store: OpenStore,
) -> None:
    log = Log()
    central = Central(open_store, log)
    impostor = json.dumps({**json.loads(log.bodies[0]), "region": "us-east"}).encode()
    unchained = json.dumps({k: v for k, v in json.loads(log.bodies[1]).items() if k != "prev"})
    before = metrics.BAD_SUMMARIES._value.get()
    central.consume(
        (SUMMARY_SUBJECT, impostor),
        ("cordon.other.eu-west", log.bodies[0]),
        (SUMMARY_SUBJECT, unchained.encode()),
        (SUMMARY_SUBJECT, b"<html>"),
        *central.summaries(*log.bodies),
    )
    assert metrics.BAD_SUMMARIES._value.get() == before + 4
    assert sorted(central.store.candidates(REGION, 0, 10)) == [1, 2]
    assert central.store.candidates("us-east", 0, 10) == {}


def test_checkpoints_are_kept_apart_and_the_newest_is_shown(open_store: OpenStore) -> None:
    log = Log()
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies), central.checkpoint())
    log.grow(1)
    central.consume(*central.summaries(log.bodies[-1]), central.checkpoint())
    assert central.store.latest_checkpoints()[REGION]["size"] == 3
    before = metrics.BAD_SUMMARIES._value.get()
    central.consume((subjects.checkpoint_subject("us-east"), log.checkpoint()))
    assert metrics.BAD_SUMMARIES._value.get() == before + 1
    assert "us-east" not in central.store.latest_checkpoints()
    with pytest.raises(BadSummaryError, match="not a summary"):
        ViewStore.parse(log.checkpoint())  # a checkpoint is never mistaken for a summary


def test_a_checkpoint_the_region_did_not_sign_moves_nothing(open_store: OpenStore) -> None:
    """With the sealer's NATS credentials someone publishes a checkpoint far ahead: it
    is refused, settles and discards nothing, and the true ones still verify."""
    log = Log()
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies), central.checkpoint())
    log.grow(3)
    central.consume(*central.summaries(*log.bodies[2:]))
    stated = checkpoints.Checkpoint(REGION, 10**9, b"\0" * 32, 1, b"\0" * 32)
    bogus = checkpoints.encode(stated, SigningKey.generate(), CompactTree())
    central.consume((CHECKPOINT_SUBJECT, bogus))
    assert sorted(central.store.candidates(REGION, 0, 10)) == [3, 4, 5]
    assert central.store.latest_checkpoints()[REGION]["size"] == 2
    central.consume(central.checkpoint())
    latest = central.store.latest_checkpoints()[REGION]
    assert latest["size"] == 5 and latest["witness"]["verified"] is True
    assert len(_ids(central.store)) == 5


def test_a_store_from_before_the_summary_chain_is_migrated_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "view.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0])
    old.execute("INSERT INTO summaries (id, region, stream_seq) VALUES ('old', 'eu-west', 1)")
    old.commit()
    old.close()
    store = ViewStore(path)
    assert _ids(store) == ["old"]
    assert store.candidates(REGION, 0, 10) == {}
    store.close()
    assert ViewStore(path).query()[0]["id"] == "old"  # migrated once, not again


def test_a_store_is_migrated_once_and_keeps_what_it_holds(open_store: OpenStore) -> None:
    log = Log()
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies), central.checkpoint())
    central.restart()  # the migrations see a current schema and apply nothing
    central.restart()
    assert len(_ids(central.store)) == 2
    assert central.store.latest_checkpoints()[REGION]["witness"]["verified"] is True
