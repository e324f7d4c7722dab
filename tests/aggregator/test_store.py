"""The central view store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from aggregator import consumer, metrics
from aggregator.store import ViewStore
from aggregator.witness import Witness
from cordon.errors import BadSummaryError


def summary(region: str, seq: int, outcome: str = "allow") -> bytes:
    return json.dumps(
        {
            "id": f"{region}-{seq}",
            "kind": "decision",
            "region": region,
            "stream_seq": seq,
            "outcome": outcome,
            "ts": f"2026-11-25T10:00:{seq:02d}+00:00",
        }
    ).encode()


def test_a_summary_delivered_twice_is_stored_once(tmp_path: Path) -> None:
    store = ViewStore(tmp_path / "view.sqlite3")
    store.add([summary("eu-west", 1), summary("eu-west", 1), summary("us-east", 1)])
    assert len(store.query()) == 2
    assert [s["region"] for s in store.query(region="eu-west")] == ["eu-west"]


def test_stats_count_by_region_and_outcome(tmp_path: Path) -> None:
    store = ViewStore(tmp_path / "view.sqlite3")
    store.add([summary("eu-west", 1), summary("eu-west", 2, "redact"), summary("eu-west", 3)])
    stats = store.stats()["regions"]["eu-west"]
    assert stats["records"] == 3
    assert stats["by_outcome"] == {"allow": 2, "redact": 1}
    assert stats["newest_ts"] == "2026-11-25T10:00:03+00:00"


def test_garbage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadSummaryError):
        ViewStore(tmp_path / "view.sqlite3").add([b"<html>"])


def test_checkpoints_are_kept_apart_and_the_newest_is_shown(tmp_path: Path) -> None:
    from cordon.log import checkpoints
    from cordon.log.keys import SigningKey
    from cordon.log.merkle import CompactTree, leaf_hash

    store = ViewStore(tmp_path / "view.sqlite3")
    key = SigningKey.generate()
    for size in (1, 3):
        tree = CompactTree()
        for i in range(size):
            tree.append(leaf_hash(bytes([i])))
        signed = checkpoints.encode(
            checkpoints.Checkpoint("eu-west", size, tree.root(), 1000 + size), key, tree
        )
        store.add_checkpoint("eu-west", signed)
    latest = store.latest_checkpoints()["eu-west"]
    assert latest["size"] == 3 and latest["time_ms"] == 1003
    with pytest.raises(BadSummaryError, match="us-east's subject"):
        store.add_checkpoint("us-east", signed)
    with pytest.raises(BadSummaryError, match="not a summary"):
        store.add([signed])  # a checkpoint is never mistaken for a summary
    assert store.query() == []


def _delivered(subject: str, data: bytes, seq: int) -> Msg:
    ack = f"$JS.ACK.AUDIT_SUMMARY.aggregator.1.{seq}.{seq}.0.0"
    return Msg(_client=None, subject=subject, reply=ack, data=data)  # type: ignore[arg-type]


def test_a_summary_counts_for_the_region_its_subject_names_never_its_body(
    tmp_path: Path,
) -> None:
    store = ViewStore(tmp_path / "view.sqlite3")
    witness = Witness({})
    impostor = _delivered("cordon.sum.eu-west.gw-1", summary("us-east", 1), 1)
    honest = _delivered("cordon.sum.us-east.gw-1", summary("us-east", 2), 2)
    off_subject = _delivered("cordon.other.us-east", summary("us-east", 3), 3)
    before = metrics.BAD_SUMMARIES._value.get()
    consumer._store(store, witness, [impostor, honest, off_subject])
    assert [(s["region"], s["stream_seq"]) for s in store.query()] == [("us-east", 2)]
    assert metrics.BAD_SUMMARIES._value.get() == before + 2
