"""Audit bundles: a range of a region's records with everything needed to verify them
offline — enrolments, a signed checkpoint, inclusion proofs, older checkpoints with
consistency proofs — and the verifier `cordon audit verify` runs.

Format `cordon-bundle/1` (JSON; byte strings in base64): `region`,
`regional_public_key` (hex), `range` [first, last], `checkpoint` (as the sealer
published it), `older_checkpoints` [{checkpoint, consistency}], `enrolments` and
`records` [{seq, data, proof}]. Stream sequence s is leaf index s - 1.

A bundle proves nothing about itself: anyone can sign invented records with a fresh
key and put that key in. `verify` therefore checks everything against the regional
key the auditor pinned (obtained from a source they trust), and a bundle whose own key
differs fails; without a pin, the report is never `ok`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cordon.errors import ProofError, SignatureError, UnreadableBundleError
from cordon.log import checkpoints, keys, merkle
from cordon.log.enrolment import Keyring
from cordon.log.keys import raw_key_id

FORMAT = "cordon-bundle/1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build(
    *,
    region: str,
    regional_public_key: bytes,
    nodes: merkle.Nodes,
    checkpoint: bytes,
    older: Sequence[bytes],
    enrolments: Mapping[int, bytes],
    records: Mapping[int, bytes],
    first: int,
    last: int,
) -> dict[str, Any]:
    """`nodes`: the log's tree, at least as far as the checkpoint's size."""
    size = checkpoints.unverified(checkpoint).size

    def entry(seq: int, data: bytes) -> dict[str, Any]:
        proof = merkle.inclusion_path(nodes, seq - 1, size)
        return {"seq": seq, "data": _b64(data), "proof": [_b64(p) for p in proof]}

    return {
        "format": FORMAT,
        "region": region,
        "regional_public_key": regional_public_key.hex(),
        "range": [first, last],
        "checkpoint": json.loads(checkpoint),
        "older_checkpoints": [
            {
                "checkpoint": json.loads(raw),
                "consistency": [
                    _b64(p)
                    for p in merkle.consistency_path(nodes, checkpoints.unverified(raw).size, size)
                ],
            }
            for raw in older
        ],
        "enrolments": [entry(seq, data) for seq, data in sorted(enrolments.items())],
        "records": [entry(seq, data) for seq, data in sorted(records.items())],
    }


@dataclass
class Report:
    region: str = ""
    pinned: bool = False  # checked against a regional key the auditor supplied
    problems: list[str] = field(default_factory=list)
    records: int = 0
    enrolments: int = 0
    checkpoints: int = 0
    # Streams whose intent record is in the range and no decision record completes it
    # there, as (stream seq, intent id): they began and ended badly (or complete later).
    open_intents: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.pinned and not self.problems


def verify(bundle: Any, pinned_key: bytes | None, witness_key: bytes | None = None) -> Report:
    """Every check an auditor needs; each failure is named with where it is.

    `pinned_key`: the region's raw Ed25519 public key, from a source the auditor trusts.
    With None, the bundle is checked against the key it carries, which shows whether it
    is consistent but proves nothing: the report is not `ok` however it turns out.
    `witness_key`: the central witness's raw public key; every checkpoint in the bundle
    must then carry its cosignature (`witness`: [{size, cosignature}])."""
    try:
        region = str(bundle["region"])
        carried = bytes.fromhex(bundle["regional_public_key"])
        first, last = (int(x) for x in bundle["range"])
        final_raw = json.dumps(bundle["checkpoint"]).encode()
        enrolment_entries = list(bundle["enrolments"])
        record_entries = list(bundle["records"])
        older_entries = list(bundle.get("older_checkpoints", []))
        if bundle.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
    except (KeyError, TypeError, ValueError) as exc:
        raise UnreadableBundleError(f"not an audit bundle: {exc}") from exc
    report = Report(region=region, pinned=pinned_key is not None)
    if pinned_key is not None and carried != pinned_key:
        report.problems.append(
            f"regional key: the bundle carries {raw_key_id(carried)}, not the pinned key "
            f"{raw_key_id(pinned_key)} for {region}; nothing in it is trusted"
        )
    keyring = Keyring(region, pinned_key if pinned_key is not None else carried)
    final = _checkpoint_without_trust(final_raw, report)
    for item in enrolment_entries:
        seq, data = _entry(item)
        try:
            keyring.add_enrolment(data)
            report.enrolments += 1
        except SignatureError as exc:
            report.problems.append(f"enrolment at seq {seq}: {exc}")
        if final is not None:
            _included(report, "enrolment", seq, data, item, final)
    checkpoint = _verified_checkpoint(final_raw, keyring, report, "checkpoint")
    for older in older_entries:
        _check_older(older, checkpoint, keyring, report)
    enrolment_seqs = {_entry(item)[0] for item in enrolment_entries}
    _check_records(record_entries, first, last, enrolment_seqs, keyring, checkpoint, report)
    if witness_key is not None:
        notes = [bundle["checkpoint"], *(o.get("checkpoint") for o in older_entries)]
        _check_cosigned(notes, bundle.get("witness", []), witness_key, report)
    return report


def _check_cosigned(
    published: list[Any], cosigned: Any, witness_key: bytes, report: Report
) -> None:
    """Each checkpoint's note, cosigned by the pinned witness key."""
    by_size: dict[int, str] = {}
    if isinstance(cosigned, list):
        by_size = {
            int(c["size"]): str(c["cosignature"])
            for c in cosigned
            if isinstance(c, dict) and c.get("cosignature") and "size" in c
        }
    public = keys.load_public_key(witness_key)
    for checkpoint in published:
        try:
            note = str(checkpoint["note"])
            size = checkpoints.parse_note(note).size
        except (KeyError, TypeError, SignatureError) as exc:
            report.problems.append(f"witness: unreadable checkpoint: {exc}")
            continue
        if size not in by_size:
            report.problems.append(f"witness: checkpoint {size} is not cosigned by the witness")
            continue
        try:
            keys.verify(public, base64.b64decode(by_size[size], validate=True), note.encode())
        except (SignatureError, binascii.Error):
            report.problems.append(
                f"witness: the cosignature on checkpoint {size} is not the pinned witness's"
            )


def _entry(item: Mapping[str, Any]) -> tuple[int, bytes]:
    try:
        return int(item["seq"]), base64.b64decode(item["data"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise UnreadableBundleError(f"malformed entry: {exc}") from exc


def _checkpoint_without_trust(raw: bytes, report: Report) -> checkpoints.Checkpoint | None:
    try:
        return checkpoints.parse_note(json.loads(raw)["note"])
    except (SignatureError, KeyError, ValueError) as exc:
        report.problems.append(f"checkpoint: {exc}")
        return None


def _verified_checkpoint(
    raw: bytes, keyring: Keyring, report: Report, label: str
) -> checkpoints.Checkpoint | None:
    try:
        checkpoint = checkpoints.decode(raw, keyring.enrolled)
    except SignatureError as exc:
        reason = str(exc)
        if "unknown key" in reason:
            reason = "signed by a key the regional key never enrolled"
        report.problems.append(f"{label}: {reason}")
        return None
    report.checkpoints += 1
    return checkpoint


def _included(
    report: Report,
    kind: str,
    seq: int,
    data: bytes,
    item: Mapping[str, Any],
    checkpoint: checkpoints.Checkpoint,
) -> bool:
    try:
        proof = [base64.b64decode(p) for p in item["proof"]]
        merkle.verify_inclusion(
            merkle.leaf_hash(data), seq - 1, checkpoint.size, proof, checkpoint.root
        )
    except (ProofError, KeyError, TypeError, binascii.Error):
        report.problems.append(
            f"{kind} seq {seq}: not in the log at that position under checkpoint {checkpoint.size} "
            "(altered, moved or inserted)"
        )
        return False
    return True


def _check_older(
    older: Mapping[str, Any], final: checkpoints.Checkpoint | None, keyring: Keyring, report: Report
) -> None:
    raw = json.dumps(older.get("checkpoint")).encode()
    checkpoint = _verified_checkpoint(raw, keyring, report, "older checkpoint")
    if checkpoint is None or final is None:
        return
    try:
        proof = [base64.b64decode(p) for p in older["consistency"]]
        merkle.verify_consistency(checkpoint.size, final.size, checkpoint.root, final.root, proof)
    except (ProofError, KeyError, TypeError, binascii.Error) as exc:
        report.problems.append(
            f"checkpoint {checkpoint.size} -> {final.size}: not consistent: {exc}"
        )


def _check_records(
    entries: list[Any],
    first: int,
    last: int,
    enrolment_seqs: set[int],
    keyring: Keyring,
    checkpoint: checkpoints.Checkpoint | None,
    report: Report,
) -> None:
    seen: dict[int, bytes] = {}
    ids: dict[str, int] = {}
    intents: dict[str, int] = {}
    completed: set[str] = set()
    per_replica: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for item in entries:
        seq, data = _entry(item)
        if seq in seen:
            report.problems.append(f"record seq {seq}: appears twice in the export")
            continue
        seen[seq] = data
        if checkpoint is not None and seq - 1 >= checkpoint.size:
            report.problems.append(f"record seq {seq}: beyond checkpoint {checkpoint.size}")
        elif checkpoint is not None:
            _included(report, "record", seq, data, item, checkpoint)
        try:
            payload = keyring.verify_record(data)
        except SignatureError as exc:
            report.problems.append(f"record seq {seq}: {exc}")
            continue
        report.records += 1
        record_id = str(payload.get("id"))
        if record_id in ids:
            report.problems.append(
                f"record seq {seq}: id {record_id} already used at seq {ids[record_id]}"
            )
        ids[record_id] = seq
        if payload.get("kind") == "intent":
            intents[record_id] = seq
        elif isinstance(payload.get("intent"), str):
            completed.add(payload["intent"])
        if isinstance(payload.get("replica_seq"), int):
            numbered = per_replica.setdefault(str(payload.get("replica")), {})
            numbered.setdefault(payload["replica_seq"], []).append({**payload, "_seq": seq})
    for seq in range(first, last + 1):
        if seq not in seen and seq not in enrolment_seqs:
            report.problems.append(f"record seq {seq}: missing from the export")
    for replica, numbered in per_replica.items():
        _check_replica_sequence(replica, numbered, report)
    report.open_intents = sorted((seq, i) for i, seq in intents.items() if i not in completed)


def _check_replica_sequence(
    replica: str, numbered: dict[int, list[dict[str, Any]]], report: Report
) -> None:
    """Gap-free, and a number used twice only by a record and the void that stands for it
    (its first publish landed after all)."""
    for number, holders in numbered.items():
        if len(holders) == 1:
            continue
        voids = [h for h in holders if h.get("kind") == "void"]
        others = [h for h in holders if h.get("kind") != "void"]
        explained = len(others) == 1 and all(v.get("voids") == others[0].get("id") for v in voids)
        if not explained:
            at = ", ".join(str(h["_seq"]) for h in holders)
            report.problems.append(
                f"replica {replica}: replica_seq {number} used more than once (seqs {at})"
            )
    ordered = sorted(numbered)
    for a, b in itertools.pairwise(ordered):
        if b != a + 1:
            report.problems.append(
                f"replica {replica}: replica_seq jumps from {a} (seq {numbered[a][0]['_seq']}) "
                f"to {b} (seq {numbered[b][0]['_seq']})"
            )
