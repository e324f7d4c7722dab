"""The audit index's Merkle tree: proofs from stored subtrees, across gaps and restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cordon.log import merkle
from gateway.ledger.audit_index import AuditIndex

RECORDS = [(seq, f"record {seq}".encode()) for seq in range(1, 301)]
LEAVES = [merkle.leaf_hash(data) for _, data in RECORDS]


def _assert_proofs_match(index: AuditIndex, size: int) -> None:
    for i in (0, 1, 15, 16, 17, size // 2, size - 1):
        if i < size:
            assert merkle.inclusion_path(index, i, size) == merkle.inclusion_proof(i, LEAVES[:size])
    for old in (1, 16, 33, size // 3 or 1, size):
        expected = merkle.consistency_proof(old, LEAVES[:size])
        assert merkle.consistency_path(index, old, size) == expected


def test_the_tree_grows_only_over_records_without_a_gap(tmp_path: Path) -> None:
    index = AuditIndex(tmp_path / "index.sqlite3")
    index.add(RECORDS[:100])
    index.add(RECORDS[101:200])  # seq 101 is missing: nothing after it joins the tree
    assert index.size() == 100
    _assert_proofs_match(index, 100)
    with pytest.raises(LookupError):
        merkle.inclusion_path(index, 150, 200)
    index.add(RECORDS[100:101])
    assert index.size() == 200
    _assert_proofs_match(index, 200)
    _assert_proofs_match(index, 77)  # any earlier checkpoint's size, too


def test_the_tree_survives_a_restart_and_keeps_growing(tmp_path: Path) -> None:
    index = AuditIndex(tmp_path / "index.sqlite3")
    index.add(RECORDS[:123])
    index.close()
    reopened = AuditIndex(tmp_path / "index.sqlite3")
    assert reopened.size() == 123
    reopened.add(RECORDS[123:])
    assert reopened.size() == 300
    _assert_proofs_match(reopened, 300)


def test_an_index_from_before_the_stored_tree_builds_it_on_the_next_batch(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    index = AuditIndex(path)
    index.add(RECORDS[:250])
    index.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE nodes")
        db.execute("DROP TABLE tree")
    old = AuditIndex(path)
    assert old.size() == 0
    old.add(RECORDS[250:])
    assert old.size() == 300
    _assert_proofs_match(old, 300)
