"""The central witness: each region's tree rebuilt from its summaries alone, checked
against every signed checkpoint."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import nats

from aggregator.witness import Witness
from cordon.log import checkpoints, envelope, merkle
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey, load_public_key, public_bytes, verify
from cordon.nats import subjects
from gateway.ledger import summaries
from tests.helpers import authed_get, central_get, eventually

REGION = "eu-west"
SECRET = b"pseudonym-secret"


class Log:
    """A region's RECORDS as its sealer sees them: an enrolment of the sealer's key first,
    then decision records; summaries and signed checkpoints as the sealer makes them."""

    def __init__(self) -> None:
        self.regional = SigningKey.generate()
        self.sealer = SigningKey.generate()
        self.replica = SigningKey.generate()
        self.records = [enrol(self.regional, REGION, "sealer", self.sealer)]
        self.records.append(enrol(self.regional, REGION, "gw-1", self.replica))

    def grow(self, count: int) -> list[dict[str, Any]]:
        start = len(self.records)
        for n in range(count):
            record = {"v": 1, "kind": "decision", "id": f"r{start + n}", "person": "p"}
            self.records.append(envelope.seal(record, self.replica).encode())
        return [self.summary(seq) for seq in range(start + 1, len(self.records) + 1)]

    def summary(self, seq: int) -> dict[str, Any]:
        return summaries.summarize(self.records[seq - 1], seq, REGION, SECRET)

    def checkpoint(self, key: SigningKey | None = None) -> bytes:
        tree = merkle.CompactTree()
        for data in self.records:
            tree.append(merkle.leaf_hash(data))
        stated = checkpoints.Checkpoint(REGION, tree.size, tree.root(), 1_000)
        return checkpoints.encode(stated, key or self.sealer, tree)


def _witness(log: Log, key: SigningKey | None = None) -> Witness:
    return Witness({REGION: public_bytes(log.regional.public_key)}, key)


def test_a_whole_log_is_verified_checkpoint_after_checkpoint() -> None:
    log, verdicts = Log(), []
    witness = _witness(log)
    region = witness.region(REGION)
    for summary in [log.summary(1), log.summary(2)]:
        region.summary(summary)
    for batch in (5, 1, 30):
        for summary in log.grow(batch):
            region.summary(summary)
        verdicts.append(region.checkpoint(log.checkpoint()))
    assert [(v.size, v.verified) for v in verdicts if v] == [(7, True), (8, True), (38, True)]
    assert region.checkpoint(log.checkpoint()) is None  # redelivered: judged already


def test_what_verifies_is_cosigned_and_nothing_else_is() -> None:
    log, witness_key = Log(), SigningKey.generate()
    region = _witness(log, witness_key).region(REGION)
    for summary in [log.summary(1), log.summary(2), *log.grow(4)]:
        region.summary(summary)
    good = log.checkpoint()
    verdict = region.checkpoint(good)
    assert verdict is not None and verdict.verified and verdict.cosignature is not None
    note = checkpoints.unverified(good).note().encode()
    verify(witness_key.public_key, verdict.cosignature, note)
    region.summary(log.grow(1)[0])
    refused = region.checkpoint(log.checkpoint(key=SigningKey.generate()))
    assert refused is not None and not refused.verified and refused.cosignature is None


def test_a_missing_summary_fails_its_checkpoint_and_the_next_stretch_verifies_again() -> None:
    log = Log()
    region = _witness(log).region(REGION)
    first = [log.summary(1), log.summary(2), *log.grow(10)]
    for summary in first[:6] + first[7:]:  # stream seq 7's summary never arrives
        region.summary(summary)
    verdict = region.checkpoint(log.checkpoint())
    assert verdict is not None and not verdict.verified
    assert verdict.reason == "summaries missing: they reach 6 of 12"
    assert region.gaps == 1
    for summary in log.grow(4):
        region.summary(summary)
    later = region.checkpoint(log.checkpoint())
    assert later is not None and later.verified and later.size == 16


def test_an_altered_summary_is_caught_by_the_root() -> None:
    log = Log()
    region = _witness(log).region(REGION)
    for summary in [log.summary(1), log.summary(2), *log.grow(6)]:
        if summary["stream_seq"] == 5:
            summary = {**summary, "leaf_hash": merkle.leaf_hash(b"forged").hex()}
        region.summary(summary)
    verdict = region.checkpoint(log.checkpoint())
    assert verdict is not None and not verdict.verified
    assert verdict.reason is not None and verdict.reason.startswith("root differs")


def test_a_checkpoint_signed_by_a_key_the_region_never_enrolled_fails() -> None:
    log = Log()
    region = _witness(log).region(REGION)
    for summary in [log.summary(1), log.summary(2), *log.grow(3)]:
        region.summary(summary)
    verdict = region.checkpoint(log.checkpoint(key=SigningKey.generate()))
    assert verdict is not None and not verdict.verified
    assert verdict.reason is not None and verdict.reason.startswith("signature:")


def test_a_forged_enrolment_teaches_the_witness_no_key() -> None:
    log = Log()
    # The sealer's key "enrolled" by some key that is not the region's.
    log.records[0] = enrol(SigningKey.generate(), REGION, "sealer", log.sealer)
    region = _witness(log).region(REGION)
    for summary in [log.summary(1), log.summary(2), *log.grow(2)]:
        region.summary(summary)
    verdict = region.checkpoint(log.checkpoint())
    assert verdict is not None and not verdict.verified
    assert verdict.reason is not None and verdict.reason.startswith("signature:")


def test_the_witness_resumes_from_its_saved_state() -> None:
    log = Log()
    witness = _witness(log)
    for summary in [log.summary(1), log.summary(2), *log.grow(9)]:
        witness.region(REGION).summary(summary)
    assert (verdict := witness.region(REGION).checkpoint(log.checkpoint())) and verdict.verified
    state = witness.region(REGION).state()

    restarted = _witness(log)
    restarted.restore(REGION, state)
    for summary in log.grow(5):
        restarted.region(REGION).summary(summary)
    later = restarted.region(REGION).checkpoint(log.checkpoint())
    assert later is not None and later.verified and later.size == 16


def _ask(endpoints: dict[str, Any], region: str, text: str) -> int:
    response = httpx.post(
        endpoints["gateways"][region] + "/v1/chat/completions",
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {endpoints['api_key']}"},
    )
    assert response.status_code == 200, response.text
    return int(response.headers["x-cordon-record-seq"])


def _witnessed(endpoints: dict[str, Any], region: str, seq: int) -> dict[str, Any]:
    """The aggregator's newest checkpoint of `region` once it covers `seq` and is judged."""
    found: dict[str, Any] = {}

    def covered() -> bool:
        latest = central_get(endpoints, "/v1/checkpoints").json()["regions"]
        found.update(latest.get(region) or {})
        return found.get("size", 0) >= seq and found.get("witness") is not None

    eventually(covered, timeout=40)
    return found


def test_every_checkpoint_of_this_session_was_whole(endpoints: dict[str, Any]) -> None:
    """Every region's log, through every kill and restart the tests before this one made,
    rebuilt centrally from summaries alone and matched to its signed checkpoints."""
    for region in ("eu-west", "us-east"):
        latest = _witnessed(endpoints, region, _ask(endpoints, region, "witness me"))
        assert latest["witness"]["verified"] is True and latest["witness"]["reason"] is None
        cosigner = central_get(endpoints, "/v1/witness/key").json()
        verify(
            load_public_key(bytes.fromhex(cosigner["public_key"])),
            base64.b64decode(latest["witness"]["cosignature"]),
            latest["note"].encode(),
        )
        failures = authed_get(
            endpoints, f"{endpoints['aggregator']}/v1/witness/{region}/failures"
        ).json()
        assert failures["failures"] == []
    metrics = central_get(endpoints, "/metrics").text
    assert 'cordon_aggregator_checkpoints_verified_total{region="eu-west"}' in metrics


async def test_a_summary_forged_in_the_region_is_caught_centrally(
    endpoints: dict[str, Any],
) -> None:
    """Someone with the region's XR credentials writes a false summary for the next
    record first, under the id the sealer will use, so the true one is dropped as a
    duplicate. The central view cannot see content, but the witness sees the root."""
    region = "us-east"
    nc = await nats.connect(endpoints["nats"]["regions"][region]["audit"]["provision"])
    try:
        info = await nc.jetstream().stream_info(subjects.RECORDS_STREAM)
        upcoming = int(info.state.last_seq) + 1
    finally:
        await nc.close()
    forged = {
        "v": 1,
        "region": region,
        "stream_seq": upcoming,
        "leaf_hash": merkle.leaf_hash(b"a record that never was").hex(),
        "kind": "decision",
        "id": "forged",
        "outcome": "allow",
    }
    xr = await nats.connect(endpoints["nats"]["regions"][region]["xr"]["sealer"])
    try:
        await xr.jetstream().publish(
            subjects.summary_subject(region, "gw-1"),
            json.dumps(forged).encode(),
            headers={"Nats-Msg-Id": f"sum-{upcoming}"},
        )
    finally:
        await xr.close()
    seq = _ask(endpoints, region, "the record whose summary was replaced")
    assert seq == upcoming
    latest = _witnessed(endpoints, region, seq)
    assert latest["witness"]["verified"] is False
    assert latest["witness"]["reason"].startswith("root differs")
    assert latest["witness"]["cosignature"] is None
    failures = authed_get(
        endpoints, f"{endpoints['aggregator']}/v1/witness/{region}/failures"
    ).json()
    assert [f["size"] for f in failures["failures"]] == [latest["size"]]
