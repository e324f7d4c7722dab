"""RFC 6962 Merkle trees: roots, inclusion and consistency proofs, and their failures."""

from __future__ import annotations

import hashlib

import pytest

from cordon.errors import ProofError
from cordon.log.merkle import (
    EMPTY_ROOT,
    CompactTree,
    LeafList,
    consistency_path,
    consistency_proof,
    inclusion_path,
    inclusion_proof,
    leaf_hash,
    node_hash,
    range_root,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [leaf_hash(f"record {i}".encode()) for i in range(40)]


def test_known_shapes() -> None:
    a, b, c = LEAVES[:3]
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root([a]) == a
    assert root([a, b, c]) == node_hash(node_hash(a, b), c)
    assert leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_compact_tree_matches_the_full_computation_at_every_size() -> None:
    tree = CompactTree()
    for n, leaf in enumerate(LEAVES, start=1):
        tree.append(leaf)
        assert tree.size == n and tree.root() == root(LEAVES[:n])
        assert len(tree.frontier) == bin(n).count("1")


@pytest.mark.parametrize("size", range(1, 20))
def test_every_inclusion_proof_verifies_and_a_wrong_leaf_does_not(size: int) -> None:
    leaves = LEAVES[:size]
    top = root(leaves)
    for index in range(size):
        proof = inclusion_proof(index, leaves)
        verify_inclusion(leaves[index], index, size, proof, top)
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(b"forged"), index, size, proof, top)
        if size > 1:
            with pytest.raises(ProofError):
                verify_inclusion(leaves[index], (index + 1) % size, size, proof, top)


@pytest.mark.parametrize("new_size", range(1, 20))
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(new_size: int) -> None:
    for old_size in range(1, new_size + 1):
        proof = consistency_proof(old_size, LEAVES[:new_size])
        verify_consistency(
            old_size, new_size, root(LEAVES[:old_size]), root(LEAVES[:new_size]), proof
        )
        rewritten = [leaf_hash(b"altered"), *LEAVES[1:new_size]]
        if old_size < new_size:
            with pytest.raises(ProofError):
                verify_consistency(
                    old_size, new_size, root(rewritten[:old_size]), root(LEAVES[:new_size]), proof
                )


def test_a_shrinking_tree_is_never_consistent() -> None:
    with pytest.raises(ProofError, match="shrank"):
        verify_consistency(5, 4, root(LEAVES[:5]), root(LEAVES[:4]), [])


def test_the_compact_tree_reports_every_perfect_subtree_it_completes() -> None:
    tree = CompactTree()
    completed: dict[tuple[int, int], bytes] = {}
    for leaf in LEAVES[:32]:
        completed.update({(level, i): h for level, i, h in tree.append(leaf)})
    for level in range(1, 6):
        for i in range(32 >> level):
            assert completed.pop((level, i)) == root(LEAVES[i << level : (i + 1) << level])
    assert not completed


def test_proofs_from_stored_subtrees_match_the_full_computation() -> None:
    leaves = LeafList(LEAVES)
    for size in range(1, len(LEAVES) + 1):
        for start in range(size):
            if start % (1 << ((size - start).bit_length() - 1)) == 0:  # the ranges proofs use
                assert range_root(leaves, start, size) == root(LEAVES[start:size])
        for index in range(size):
            assert inclusion_path(leaves, index, size) == inclusion_proof(index, LEAVES[:size])


class _CountingNodes:
    """A log too big to hold: every node is made up on demand, and each read is counted."""

    def __init__(self) -> None:
        self.reads = 0

    def node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return hashlib.sha256(f"{level}/{index}".encode()).digest()


@pytest.mark.parametrize("size", [2**30 + 12345, 10**9, 2**40 - 1])
def test_a_proof_reads_a_few_hundred_nodes_however_large_the_log(size: int) -> None:
    nodes = _CountingNodes()
    path = inclusion_path(nodes, size // 3, size)
    assert len(path) <= size.bit_length() and nodes.reads <= size.bit_length() ** 2
    nodes.reads = 0
    consistency = consistency_path(nodes, size // 2 + 1, size)
    assert len(consistency) <= 2 * size.bit_length() and nodes.reads <= size.bit_length() ** 2
