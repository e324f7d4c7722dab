"""What the cross-region API asks of the view store, on SQLite and PostgreSQL alike:
counts by any dimension and time bucket, where a pseudonymous person's records are,
freshness, and the ranges of summaries that never arrived."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from gateway.ledger import summaries
from tests.aggregator.conftest import OpenStore
from tests.aggregator.regional_log import REGION, SECRET, Log
from tests.aggregator.test_store import Central


def _fed(open_store: OpenStore, records: int = 5) -> Central:
    log = Log()
    log.grow(records)
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies), central.checkpoint())
    return central


def test_counts_by_dimension_and_bucket_page_through_every_group(open_store: OpenStore) -> None:
    central = _fed(open_store)
    store = central.store
    assert store.counts([]) == [{"count": 5}]
    assert store.counts(["region", "outcome"]) == [{"region": REGION, "outcome": None, "count": 5}]
    by_day = store.counts(["region"], bucket="day")
    assert sum(row["count"] for row in by_day) == 5 and len(by_day[0]["bucket"]) == 10
    assert store.counts(["region"], region="us-east") == []
    assert store.counts(["region"], since="2999-01-01") == []
    paged = [store.counts(["region"], bucket="minute", offset=n, limit=1) for n in range(3)]
    assert sum(len(page) for page in paged) == len(store.counts(["region"], bucket="minute"))


def test_a_persons_records_are_found_by_pseudonym_in_sequence_order(
    open_store: OpenStore,
) -> None:
    central = _fed(open_store, records=4)
    person = summaries.pseudonym(SECRET, "p")
    assert person is not None
    found = central.store.person_records([person])
    assert [row["stream_seq"] for row in found] == [3, 4, 5, 6]
    assert {row["region"] for row in found} == {REGION}
    after = (found[1]["region"], found[1]["stream_seq"])
    assert [row["stream_seq"] for row in central.store.person_records([person], after)] == [5, 6]
    assert central.store.person_records(["nobody"]) == []


def test_freshness_and_gaps_name_what_is_missing(open_store: OpenStore) -> None:
    """A summary withheld: its checkpoint fails, and what the chain could not vouch for
    (1..4) stays out of the view and is reported as a gap, also once later checkpoints
    verify again."""
    log = Log()
    log.grow(5)
    central = Central(open_store, log)
    central.consume(
        *central.summaries(*(b for i, b in enumerate(log.bodies) if i != 3)),
        central.checkpoint(),
    )
    fresh = central.store.freshness()[REGION]
    assert fresh["checkpoints_failed"] == 1 and fresh["newest_verified_checkpoint"] is None
    assert central.store.gaps() == [{"region": REGION, "first_seq": 1, "last_seq": 4}]
    log.grow(2)
    central.consume(*central.summaries(*log.bodies[7:]), central.checkpoint())
    fresh = central.store.freshness()[REGION]
    assert fresh["newest_verified_checkpoint"]["size"] == 9
    assert fresh["newest_stream_seq"] == 9 and fresh["summaries"] == 5
    assert fresh["newest_summary_ts"].startswith("2026-12-02T10:00:08")
    assert fresh["checkpoints_verified"] == 1 and fresh["checkpoints_failed"] == 1
    assert central.store.gaps(REGION) == [{"region": REGION, "first_seq": 1, "last_seq": 4}]
    assert central.store.gaps("us-east") == []


def test_a_replica_seq_number_with_neither_record_nor_void_is_a_gap(
    open_store: OpenStore,
) -> None:
    """Numbers 1..6 of replica gw-1: 3 is voided (not a gap), 5 has nothing at all."""
    log = Log()
    numbered = [("decision", 1), ("decision", 2), ("void", 3), ("decision", 4), ("decision", 6)]
    log.grow(0, numbered)
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies), central.checkpoint())
    assert central.store.gaps() == []  # every stream sequence arrived
    assert central.store.replica_gaps() == [
        {"region": REGION, "replica": "gw-1", "first_replica_seq": 5, "last_replica_seq": 5}
    ]
    assert central.store.replica_gaps("us-east") == []


def test_a_region_of_enrolments_only_has_a_newest_summary_time(open_store: OpenStore) -> None:
    """Enrolment records carry no `ts`: the view takes the time the regional key
    signed in the enrolment, so the newest summary is never shown as "never"."""
    log = Log()
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies), central.checkpoint())
    fresh = central.store.freshness()[REGION]
    assert fresh["summaries"] == 2 and fresh["newest_summary_ts"] is not None
    signed = datetime.fromisoformat(fresh["newest_summary_ts"])
    assert abs((datetime.now(UTC) - signed).total_seconds()) < 3600


def test_enforcement_counts_places_and_each_sdk_agents_receipts(open_store: OpenStore) -> None:
    """billing-app governs in-process: three SDK records; through the gateway, two calls
    name an SDK record the view holds (one via a sidecar), one names a record the view has
    never seen, and one names none (it went around the SDK). plain-app has no SDK records
    and is not listed; a summary sealed before summaries said counts as `unknown`."""
    sdk = [str(uuid.uuid4()) for _ in range(3)]
    never_shipped = str(uuid.uuid4())
    app, plain = "billing-app", "plain-app"
    log = Log()
    log.add(
        *({"id": i, "agent": app, "enforced_by": "sdk"} for i in sdk),
        {"agent": app, "enforced_by": "gateway", "sdk_record": sdk[0]},
        {"agent": app, "enforced_by": "sidecar", "sdk_record": sdk[1]},
        {"agent": app, "enforced_by": "gateway", "sdk_record": never_shipped},
        {"agent": app, "enforced_by": "gateway"},
        {"agent": plain, "enforced_by": "gateway"},
        {"agent": plain},  # from before records named a place: a gateway's
    )
    log.add({"agent": plain, "enforced_by": "gateway"}, older=True)
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies), central.checkpoint())
    view = central.store.enforcement()
    assert view["regions"] == {
        REGION: {"by_enforced_by": {"sdk": 3, "gateway": 5, "sidecar": 1, "unknown": 1}}
    }
    assert view["agents"] == [
        {
            "region": REGION,
            "agent": summaries.pseudonym(SECRET, app),
            "sdk_records": 3,
            "gateway_calls_with_receipt": 2,
            "receipts_unmatched": 1,
            "gateway_calls_without_receipt": 1,
        }
    ]
    # A window counts only its own decisions; a receipt is matched against the whole view.
    later = central.store.enforcement(since=log.published[5].summary["ts"])
    assert later["agents"][0] | {"region": 0, "agent": 0} == {
        "region": 0,
        "agent": 0,
        "sdk_records": 0,
        "gateway_calls_with_receipt": 2,
        "receipts_unmatched": 1,
        "gateway_calls_without_receipt": 1,
    }
    assert central.store.enforcement(region="us-east") == {"regions": {}, "agents": []}
    assert central.store.enforcement(offset=1)["agents"] == []


def test_a_receipt_copied_onto_other_calls_or_another_agent_is_no_cover(
    open_store: OpenStore,
) -> None:
    """An application that reads one governed answer's record id and sends it with calls
    around the SDK, or with another agent's calls, gets one matched call, the rest
    unmatched: a receipt counts once, for the agent whose SDK record it names."""
    receipt = str(uuid.uuid4())
    app, other = "billing-app", "other-app"
    log = Log()
    log.add(
        {"id": receipt, "agent": app, "enforced_by": "sdk"},
        {"id": str(uuid.uuid4()), "agent": other, "enforced_by": "sdk"},
        *({"agent": app, "enforced_by": "gateway", "sdk_record": receipt} for _ in range(4)),
        {"agent": other, "enforced_by": "gateway", "sdk_record": receipt},
    )
    central = Central(open_store, log)
    central.consume(*central.summaries(*log.bodies), central.checkpoint())
    agents = {a["agent"]: a for a in central.store.enforcement()["agents"]}
    mine, theirs = (
        agents[summaries.pseudonym(SECRET, app)],
        agents[summaries.pseudonym(SECRET, other)],
    )
    assert (mine["gateway_calls_with_receipt"], mine["receipts_unmatched"]) == (1, 3)
    assert (theirs["gateway_calls_with_receipt"], theirs["receipts_unmatched"]) == (0, 1)
