"""The witness: completeness and integrity of every region's log, proven centrally.

Each region's summaries carry the leaf hash of their record and are chained to one
another; its sealer's signed checkpoints follow the summaries they cover and state
both the Merkle root of the records and the head of the summary chain. For each
checkpoint the witness walks the chain back from the signed head through the
summaries that arrived (`cordon.log.summary_chain`): the ones it reaches are the
sealer's, every other candidate at those sequences was forged by whoever holds the
region's XR credentials, and is rejected. The accepted summaries' leaf hashes must
then rebuild the checkpoint's root. The checkpoint must be signed by a key the
regional key enrolled (enrolment summaries carry the signed enrolment). No content
crosses.

A checkpoint that fails (a summary missing, a wrong root, a bad signature) is
reported; the witness then carries on from that checkpoint's signed tree and chain
state, so one failure does not hide whether the next stretch of the log is whole.

With a key of its own, the witness cosigns every checkpoint it verified: an Ed25519
signature over the checkpoint's exact note, so an auditor holding the region's
checkpoint can check that the central witness saw the same log.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cordon.errors import SignatureError
from cordon.log import checkpoints, merkle, summary_chain
from cordon.log.enrolment import Keyring
from cordon.log.keys import SigningKey
from cordon.log.summary_chain import Candidate

# (after, upto) -> the candidate summaries that arrived for sequences after..upto
Candidates = Callable[[int, int], Mapping[int, Sequence[Candidate]]]


@dataclass(frozen=True)
class Verdict:
    region: str
    size: int
    verified: bool
    reason: str | None = None
    cosignature: bytes | None = None  # the witness key's signature over the note
    rejected: int = 0  # candidate summaries up to `size` the signed chain does not vouch for


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    accepted: list[Candidate]  # the sealer's summaries, in sequence order
    settles: bool  # signed by the region: the checkpoint and its summaries are decided


@dataclass
class RegionWitness:
    region: str
    keyring: Keyring | None
    key: SigningKey | None = None  # cosigns what verifies
    tree: merkle.CompactTree = field(default_factory=merkle.CompactTree)
    chain: bytes = b""  # the summary chain's link at tree.size
    enrolments: list[bytes] = field(default_factory=list)
    gaps: int = 0  # checkpoints whose summaries did not all arrive
    judged: int = 0  # size of the last checkpoint judged (a redelivered one is skipped)

    def __post_init__(self) -> None:
        self.chain = self.chain or summary_chain.genesis(self.region)

    def learn(self, summary: Mapping[str, Any]) -> None:
        """What a summary can teach before it is authenticated: a signed enrolment
        (self-authenticating: only the regional key's signature adds a key)."""
        enrolment = summary.get("enrolment")
        if summary.get("kind") == "enrolment" and isinstance(enrolment, str):
            self.learn_enrolment(enrolment)

    def learn_enrolment(self, encoded: str) -> None:
        """Trust the key a regional enrolment (base64 envelope) vouches for."""
        if self.keyring is None:
            return
        try:
            data = base64.b64decode(encoded, validate=True)
            self.keyring.add_enrolment(data)
        except (SignatureError, binascii.Error):
            return  # a forged enrolment adds no key; checkpoints it signs will fail
        if data not in self.enrolments:
            self.enrolments.append(data)

    def checkpoint(self, raw: bytes, candidates: Candidates) -> Judgement | None:
        """The verdict on a checkpoint and the summaries it authenticates; None for one
        judged before (redelivered).

        A checkpoint whose signature does not hold changes nothing: whoever sent it
        must not be able to move the witness on, or settle (and so discard) summaries."""
        try:
            stated = checkpoints.unverified(raw)
        except SignatureError as exc:
            return self._refused(0, f"unreadable checkpoint: {exc}")
        if stated.size <= self.judged:
            return None
        if self.keyring is None:
            return self._refused(stated.size, f"no regional key configured for {self.region}")
        try:
            checkpoints.decode(raw, self.keyring.enrolled)
        except SignatureError as exc:
            return self._refused(stated.size, f"signature: {exc}")
        self.judged, floor = stated.size, self.tree.size
        arrived = candidates(floor, stated.size)
        verdict, accepted = self._judge(stated, arrived)
        if not verdict.verified:
            # Carry on from the checkpoint's own signed tree and chain state.
            with contextlib.suppress(SignatureError):
                _, self.tree = checkpoints.resume(raw)
            self.chain = stated.summaries or summary_chain.genesis(self.region)
        rejected = sum(len(c) for c in arrived.values()) - len(accepted)
        return Judgement(dataclasses.replace(verdict, rejected=rejected), accepted, settles=True)

    def _refused(self, size: int, reason: str) -> Judgement:
        return Judgement(Verdict(self.region, size, False, reason), [], settles=False)

    def _judge(
        self, stated: checkpoints.Checkpoint, arrived: Mapping[int, Sequence[Candidate]]
    ) -> tuple[Verdict, list[Candidate]]:
        """A checkpoint whose signature holds, against the summaries that arrived."""

        def failed(reason: str, accepted: list[Candidate]) -> tuple[Verdict, list[Candidate]]:
            return Verdict(self.region, stated.size, False, reason), accepted

        if stated.summaries is None:
            return failed("the checkpoint does not state its summary chain", [])
        floor = self.tree.size
        walk = summary_chain.walk(stated.summaries, stated.size, self.chain, floor, arrived)
        if walk.broken_at is not None:
            self.gaps += 1
            if walk.broken_at == floor:
                why = f"the summary chain does not continue from {floor}"
            else:
                why = f"summary {walk.broken_at} missing: {floor + 1}..{walk.broken_at} unverified"
            return failed(why, walk.accepted)
        tree = self.tree.copy()
        for candidate in walk.accepted:
            tree.append(bytes.fromhex(str(candidate.summary["leaf_hash"])))
        if tree.root() != stated.root:
            return failed("root differs from the tree of the summaries", walk.accepted)
        self.tree, self.chain = tree, stated.summaries
        cosignature = self.key.sign(stated.note().encode()) if self.key is not None else None
        return Verdict(self.region, stated.size, True, cosignature=cosignature), walk.accepted

    def state(self) -> dict[str, Any]:
        return {
            "size": self.tree.size,
            "frontier": [base64.b64encode(h).decode() for h in self.tree.frontier],
            "chain": self.chain.hex(),
            "enrolments": [base64.b64encode(e).decode() for e in self.enrolments],
            "gaps": self.gaps,
            "judged": self.judged,
        }


class Witness:
    def __init__(
        self, regional_public_keys: Mapping[str, bytes], key: SigningKey | None = None
    ) -> None:
        self._keys = dict(regional_public_keys)
        self.key = key
        self.regions: dict[str, RegionWitness] = {}

    def region(self, name: str) -> RegionWitness:
        if name not in self.regions:
            key = self._keys.get(name)
            keyring = Keyring(name, key) if key is not None else None
            self.regions[name] = RegionWitness(name, keyring, self.key)
        return self.regions[name]

    def restore(self, name: str, state: Mapping[str, Any]) -> None:
        witness = self.region(name)
        witness.tree = merkle.CompactTree(
            int(state["size"]), [base64.b64decode(h) for h in state["frontier"]]
        )
        if state.get("chain"):
            witness.chain = bytes.fromhex(str(state["chain"]))
        witness.gaps = int(state.get("gaps", 0))
        witness.judged = int(state.get("judged", 0))
        for encoded in state.get("enrolments", []):
            witness.learn_enrolment(encoded)
