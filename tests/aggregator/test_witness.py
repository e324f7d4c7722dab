"""The central witness: each region's summaries authenticated by the chain its signed
checkpoints state, and its tree rebuilt from them alone."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from aggregator.witness import Judgement, RegionWitness, Witness
from cordon.log import checkpoints, envelope, merkle
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey, load_public_key, public_bytes, verify
from cordon.log.summary_chain import Candidate
from cordon.nats import subjects
from tests.aggregator.regional_log import REGION, Log, forge
from tests.helpers import authed_get, central_get, eventually, nats_as


class Arrived:
    """Candidates as the aggregator's store hands them to the witness."""

    def __init__(self, candidates: Iterable[Candidate] = ()) -> None:
        self.pool: list[Candidate] = list(candidates)

    def __call__(self, after: int, upto: int) -> Mapping[int, Sequence[Candidate]]:
        found: dict[int, list[Candidate]] = {}
        for c in self.pool:
            if after < c.stream_seq <= upto:
                found.setdefault(c.stream_seq, []).append(c)
        return found


def _witness(log: Log, key: SigningKey | None = None) -> Witness:
    return Witness({REGION: public_bytes(log.regional.public_key)}, key)


def _judge(region: RegionWitness, log: Log, arrived: Arrived, **kw: Any) -> Judgement:
    for candidate in arrived.pool:
        region.learn(candidate.summary)
    judgement = region.checkpoint(log.checkpoint(**kw), arrived)
    assert judgement is not None
    return judgement


def test_a_whole_log_is_verified_checkpoint_after_checkpoint() -> None:
    log = Log()
    region = _witness(log).region(REGION)
    arrived = Arrived(log.published)
    verdicts = []
    for batch in (5, 1, 30):
        arrived.pool += log.grow(batch)
        judgement = _judge(region, log, arrived)
        assert [c.stream_seq for c in judgement.accepted] == list(
            range(judgement.verdict.size - len(judgement.accepted) + 1, judgement.verdict.size + 1)
        )
        verdicts.append(judgement.verdict)
    assert [(v.size, v.verified, v.rejected) for v in verdicts] == [
        (7, True, 0),
        (8, True, 0),
        (38, True, 0),
    ]
    assert region.checkpoint(log.checkpoint(), arrived) is None  # redelivered: judged already


def test_what_verifies_is_cosigned_and_nothing_else_is() -> None:
    log, witness_key = Log(), SigningKey.generate()
    region = _witness(log, witness_key).region(REGION)
    arrived = Arrived([*log.published, *log.grow(4)])
    good = log.checkpoint()
    for candidate in arrived.pool:
        region.learn(candidate.summary)
    judgement = region.checkpoint(good, arrived)
    assert judgement is not None and judgement.verdict.verified
    assert judgement.verdict.cosignature is not None
    note = checkpoints.unverified(good).note().encode()
    verify(witness_key.public_key, judgement.verdict.cosignature, note)
    arrived.pool += log.grow(1)
    refused = _judge(region, log, arrived, key=SigningKey.generate())
    assert not refused.verdict.verified and refused.verdict.cosignature is None
    assert refused.accepted == [] and not refused.settles  # it decides nothing


def test_a_forged_summary_beside_the_true_one_is_rejected_and_the_log_still_verifies() -> None:
    log = Log()
    region = _witness(log).region(REGION)
    true = log.grow(6)
    forged = [forge(true[2], outcome="allow", id="forged"), forge(true[4], prev=true[4].prev.hex())]
    judgement = _judge(region, log, Arrived([*log.published[:2], *true, *forged]))
    assert judgement.verdict.verified and judgement.verdict.rejected == 2
    assert [c.summary["id"] for c in judgement.accepted] == [c.summary["id"] for c in log.published]


def test_a_summary_that_never_arrived_fails_its_checkpoint_and_a_forgery_cannot_fill_it() -> None:
    log = Log()
    region = _witness(log).region(REGION)
    published = [*log.published, *log.grow(10)]
    stand_in = forge(published[6], id="stand-in")  # seq 7: the true one never arrives
    judgement = _judge(region, log, Arrived([*published[:6], stand_in, *published[7:]]))
    assert not judgement.verdict.verified
    assert judgement.verdict.reason == "summary 7 missing: 1..7 unverified"
    # Above the gap the signed head still vouches for what arrived; below it nothing.
    assert [c.stream_seq for c in judgement.accepted] == [8, 9, 10, 11, 12]
    assert judgement.verdict.rejected == 7  # six unverifiable, one forged
    assert region.gaps == 1
    later = _judge(region, log, Arrived(log.grow(4)))
    assert later.verdict.verified and later.verdict.size == 16


def test_a_sealer_whose_summaries_do_not_match_its_records_is_caught_by_the_root() -> None:
    log = Log()
    region = _witness(log).region(REGION)
    log.grow(2)
    log.records.append(envelope.seal({"v": 1, "kind": "decision"}, log.replica).encode())
    log.published.append(log._publish(5, leaf_hash=merkle.leaf_hash(b"other").hex()))
    judgement = _judge(region, log, Arrived(log.published))
    assert not judgement.verdict.verified
    assert judgement.verdict.reason == "root differs from the tree of the summaries"


def test_a_checkpoint_signed_by_a_key_the_region_never_enrolled_fails() -> None:
    log = Log()
    region = _witness(log).region(REGION)
    judgement = _judge(
        region, log, Arrived([*log.published, *log.grow(3)]), key=SigningKey.generate()
    )
    assert not judgement.verdict.verified
    assert (judgement.verdict.reason or "").startswith("signature:")


def test_a_checkpoint_that_does_not_state_its_summary_chain_fails() -> None:
    log = Log()
    region = _witness(log).region(REGION)
    judgement = _judge(region, log, Arrived([*log.published, *log.grow(3)]), chain=False)
    assert judgement.verdict.reason == "the checkpoint does not state its summary chain"
    assert judgement.accepted == []


def test_a_forged_enrolment_teaches_the_witness_no_key() -> None:
    log = Log()
    # The sealer's key "enrolled" by some key that is not the region's.
    log.records[0] = enrol(SigningKey.generate(), REGION, "sealer", log.sealer)
    log.links, log.published = log.links[:1], []
    log.published = [log._publish(1), log._publish(2)]
    region = _witness(log).region(REGION)
    judgement = _judge(region, log, Arrived([*log.published, *log.grow(2)]))
    assert not judgement.verdict.verified
    assert (judgement.verdict.reason or "").startswith("signature:")


def test_the_witness_resumes_from_its_saved_state() -> None:
    log = Log()
    witness = _witness(log)
    first = _judge(witness.region(REGION), log, Arrived([*log.published, *log.grow(9)]))
    assert first.verdict.verified
    state = witness.region(REGION).state()

    restarted = _witness(log)
    restarted.restore(REGION, state)
    later = _judge(restarted.region(REGION), log, Arrived(log.grow(5)))
    assert later.verdict.verified and later.verdict.size == 16


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


async def test_summaries_forged_with_a_regions_xr_credentials_never_reach_the_view(
    endpoints: dict[str, Any],
) -> None:
    """Someone holding the sealer's XR credentials (the only ones allowed to publish
    summaries) but not its signing key writes false summaries for the next record: one
    under the message id the sealer once used, one chained like the real thing.
    Neither is counted or shown; the true summary is, and the region's log verifies."""
    region = "us-east"
    urls = endpoints["nats"]["regions"][region]
    nc = await nats_as(urls["audit"]["provision"])
    try:
        info = await nc.jetstream().stream_info(subjects.RECORDS_STREAM)
        upcoming = int(info.state.last_seq) + 1
    finally:
        await nc.close()
    # The strongest forgery: chained to the true predecessor (read here with setup's
    # credentials), so only the signed chain head can tell it from the sealer's.
    nc = await nats_as(urls["xr"]["provision"])
    try:
        last = await nc.jetstream().get_last_msg(
            subjects.SUMMARY_STREAM, subjects.summaries_filter(region)
        )
    finally:
        await nc.close()
    previous = json.loads(last.data or b"{}")
    assert previous["stream_seq"] == upcoming - 1
    forged = {
        "v": 1,
        "region": region,
        "stream_seq": upcoming,
        "leaf_hash": merkle.leaf_hash(b"a record that never was").hex(),
        "kind": "decision",
        "id": "forged-summary",
        "outcome": "allow",
        "prev": previous["prev"],
    }
    xr = await nats_as(urls["xr"]["sealer"])
    try:
        for headers in ({"Nats-Msg-Id": f"sum-{upcoming}"}, None):
            await xr.jetstream().publish(
                subjects.summary_subject(region, "gw-1"),
                json.dumps(forged).encode(),
                headers=headers,
            )
            forged["id"], forged["outcome"] = "forged-again", "deny"
    finally:
        await xr.close()
    seq = _ask(endpoints, region, "the record someone tried to speak for")
    assert seq == upcoming
    latest = _witnessed(endpoints, region, seq)
    assert latest["witness"]["verified"] is True
    assert latest["witness"]["rejected"] >= 2
    shown = authed_get(
        endpoints,
        f"{endpoints['aggregator']}/v1/summaries",
        params={"region": region, "after_seq": seq - 1, "limit": 1},
    ).json()["items"]
    assert [(s["stream_seq"], s["kind"]) for s in shown] == [(seq, "decision")]
    assert not shown[0]["id"].startswith("forged")
    metrics = central_get(endpoints, "/metrics").text
    assert f'cordon_aggregator_summaries_rejected_total{{region="{region}"}}' in metrics
