"""RFC 6962 / RFC 9162 Merkle trees: hashes, roots, and inclusion and consistency proofs.

Leaves are hashed `SHA-256(0x00 || data)`, interior nodes `SHA-256(0x01 || left ||
right)`, and a tree of n leaves splits at the largest power of two below n. The
region's `RECORDS` stream is the log: stream sequence s is leaf index s - 1.
`CompactTree` extends a tree one leaf at a time keeping only the roots of its
perfect subtrees, so a sealer needs O(log n) memory whatever the log's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cordon.errors import ProofError

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash of leaf hashes (MTH in RFC 6962)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root(leaves[:k]), root(leaves[k:]))


class Nodes(Protocol):
    """Perfect subtrees of a log: `node(level, index)` is the hash of leaves
    `index * 2**level` up to `(index + 1) * 2**level` (level 0: the leaf hashes)."""

    def node(self, level: int, index: int) -> bytes: ...


@dataclass(frozen=True)
class LeafList:
    """`Nodes` over leaf hashes held in memory (tests, small logs, bundles)."""

    leaves: Sequence[bytes]

    def node(self, level: int, index: int) -> bytes:
        return root(self.leaves[index << level : (index + 1) << level])


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees, as (level, index), that make up leaves `start`..`end`
    (exclusive), largest first. For `start` 0 they are a tree's frontier; for the
    ranges RFC 6962's proofs name, `start` is a multiple of the largest power of two
    not above `end - start`, and the run is that range's tree."""
    parts = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start % (1 << level):
            level -= 1
        parts.append((level, start >> level))
        start += 1 << level
    return parts


def range_root(nodes: Nodes, start: int, end: int) -> bytes:
    """MTH of leaves `start`..`end` (exclusive), for the ranges proofs name."""
    parts = [nodes.node(level, index) for level, index in perfect_subtrees(start, end)]
    if not parts:
        return EMPTY_ROOT
    acc = parts[-1]
    for part in reversed(parts[:-1]):
        acc = node_hash(part, acc)
    return acc


def inclusion_path(nodes: Nodes, index: int, size: int) -> list[bytes]:
    """Audit path for leaf `index` in the tree of the first `size` leaves (PATH)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            path.append(range_root(nodes, mid, end))
            end = mid
        else:
            path.append(range_root(nodes, start, mid))
            start = mid
    return path[::-1]


def consistency_path(nodes: Nodes, old_size: int, size: int) -> list[bytes]:
    """Proof that the first `old_size` leaves are a prefix of the first `size` (PROOF)."""
    if not 0 < old_size <= size:
        raise ProofError(f"no consistency proof from {old_size} to {size}")
    path: list[bytes] = []
    start, end, complete = 0, size, True
    while old_size != end:
        mid = start + _split(end - start)
        if old_size <= mid:
            path.append(range_root(nodes, mid, end))
            end = mid
        else:
            path.append(range_root(nodes, start, mid))
            start, complete = mid, False
    if not complete:
        path.append(range_root(nodes, start, end))
    return path[::-1]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    return inclusion_path(LeafList(leaves), index, len(leaves))


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    return consistency_path(LeafList(leaves), old_size, len(leaves))


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """RFC 9162 section 2.1.3.2; raises ProofError unless the proof holds."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != expected_root:
        raise ProofError(f"leaf {index} is not included under this root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2; raises ProofError unless the old tree is a prefix of the new."""
    if old_size > new_size:
        raise ProofError(f"tree shrank from {old_size} to {new_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise ProofError("same size, different roots")
        return
    if old_size == 0:
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path = [old_root, *path]
    if not path:
        raise ProofError("empty consistency proof")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError(f"the tree of {old_size} is not a prefix of this one (old root differs)")
    if sr != new_root:
        raise ProofError(f"the tree of {new_size} does not extend the old one (new root differs)")


@dataclass
class CompactTree:
    """A tree that only grows: its size and the roots of its perfect subtrees, largest first."""

    size: int = 0
    frontier: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf; returns the perfect subtrees it completed as (level, index, hash)."""
        self.frontier.append(leaf)
        self.size += 1
        # Merge equal-sized subtrees: one merge per trailing 1-bit of the old size.
        completed = []
        n, level = self.size, 0
        while n % 2 == 0:
            right = self.frontier.pop()
            left = self.frontier.pop()
            self.frontier.append(node_hash(left, right))
            n //= 2
            level += 1
            completed.append((level, n - 1, self.frontier[-1]))
        return completed

    def copy(self) -> CompactTree:
        return CompactTree(self.size, list(self.frontier))

    def root(self) -> bytes:
        if not self.frontier:
            return EMPTY_ROOT
        acc = self.frontier[-1]
        for subtree in reversed(self.frontier[:-1]):
            acc = node_hash(subtree, acc)
        return acc
