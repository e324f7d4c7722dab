"""The central view's speed: how many summaries per second the aggregator stores and
witnesses, on SQLite and on PostgreSQL, and how long a record takes from its commit in
a region to the central view.

Ingest: a region's log is made in advance (signed records, chained summaries, a signed
checkpoint every 1,000 records, as the sealer makes them), then fed through the
aggregator's own consumer code (`aggregator.consumer._store`: candidates, the witness
rebuilding the tree, settling) in batches of 500, into a fresh store; the figure is
summaries per second of wall time. PostgreSQL from CORDON_TEST_PG_DSN or the local
server (database `test`), skipped with the reason when neither answers.

Delay: the real topology; one call at a time to eu-west, each timed from the answer
(its record committed) to the moment the central view's count of eu-west decisions
includes it (polled every 10 ms).

    .venv/bin/python bench/aggregator.py [--summaries 20000] [--calls 100]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nats.aio.msg import Msg

from aggregator import consumer
from aggregator.store import ViewStore
from aggregator.witness import Witness
from cordon.log import checkpoints, envelope, merkle, summary_chain
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey, public_bytes
from cordon.nats import subjects
from cordon_dev.stack import DEV_API_KEY, DevStack
from gateway.ledger import summaries

REGION = "eu-west"
PG_DSN = os.environ.get("CORDON_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def make_log(count: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(regional public key, the messages AUDIT_SUMMARY would deliver, in order)."""
    regional, sealer, replica = (SigningKey.generate() for _ in range(3))
    records = [enrol(regional, REGION, "sealer", sealer), enrol(regional, REGION, "gw-1", replica)]
    start = datetime.now(UTC).isoformat()
    for n in range(count):
        record = {"v": 1, "kind": "decision", "id": f"r{n}", "outcome": "allow", "ts": start}
        records.append(envelope.seal(record, replica).encode())
    link = summary_chain.genesis(REGION)
    tree = merkle.CompactTree()
    messages = []
    subject = subjects.summary_subject(REGION, "gw-1")
    for seq, data in enumerate(records, start=1):
        body, link = summaries.chained(summaries.summarize(data, seq, REGION, b"k"), link)
        messages.append((subject, body))
        tree.append(merkle.leaf_hash(data))
        if seq % 1000 == 0 or seq == len(records):
            stated = checkpoints.Checkpoint(REGION, tree.size, tree.root(), 1, link)
            note = checkpoints.encode(stated, sealer, tree)
            messages.append((subjects.checkpoint_subject(REGION), note))
    return public_bytes(regional.public_key), messages


def ingest(store: ViewStore, key: bytes, messages: list[tuple[str, bytes]]) -> float:
    """Summaries per second through the consumer's code into `store`."""
    witness = Witness({REGION: key})
    batches = [messages[i : i + 500] for i in range(0, len(messages), 500)]
    delivered = 0
    started = time.perf_counter()
    for batch in batches:
        msgs = []
        for subject, data in batch:
            delivered += 1
            ack = f"$JS.ACK.AUDIT_SUMMARY.aggregator.1.{delivered}.{delivered}.0.0"
            msgs.append(Msg(_client=None, subject=subject, reply=ack, data=data))  # type: ignore[arg-type]
        consumer._store(store, witness, msgs)
    elapsed = time.perf_counter() - started
    stored = store.freshness()[REGION]["summaries"]
    assert stored == sum(1 for s, _ in messages if s.startswith("cordon.sum.")), stored
    return stored / elapsed


def postgres_store() -> tuple[ViewStore, str] | str:
    """A store in a fresh schema, or why there is none."""
    try:
        import psycopg
        from psycopg.conninfo import make_conninfo

        schema = f"bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return ViewStore(dsn=make_conninfo(PG_DSN, options=f"-csearch_path={schema}")), schema
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def delay(calls: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="cordon-aggregator-") as root:
        stack = DevStack(Path(root))
        try:
            stack.start()
            http = httpx.Client(timeout=10)
            auth = {"authorization": f"Bearer {stack.tokens['sre']}"}
            url = stack.endpoints.aggregator + "/v1/counts"

            def counted() -> int:
                items = http.get(url, params={"region": REGION}, headers=auth).json()["items"]
                return sum(i["count"] for i in items)

            before, delays = counted(), []
            for _ in range(calls):
                http.post(
                    stack.endpoints.gateways[REGION] + "/v1/chat/completions",
                    headers={"authorization": f"Bearer {DEV_API_KEY}"},
                    json={"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]},
                )
                committed = time.perf_counter()
                while counted() <= before:
                    time.sleep(0.01)
                delays.append(time.perf_counter() - committed)
                before += 1
            return delays
        finally:
            stack.stop()


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summaries", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    key, messages = make_log(args.summaries)
    with tempfile.TemporaryDirectory() as root:
        rate = ingest(ViewStore(Path(root) / "view.sqlite3"), key, messages)
    print(f"ingest, SQLite:      {rate:8,.0f} summaries/s  (target >= 10,000)", flush=True)
    found = postgres_store()
    if isinstance(found, str):
        print(f"ingest, PostgreSQL:  skipped: {found}")
    else:
        store, schema = found
        try:
            rate = ingest(store, key, messages)
            print(f"ingest, PostgreSQL:  {rate:8,.0f} summaries/s  (target >= 5,000)", flush=True)
        finally:
            store.close()
            drop_schema(schema)
    if args.calls:
        delays = delay(args.calls)
        print(
            f"commit in {REGION} -> central view: p50 {_ms(delays, 0.5):.0f} ms,"
            f" p99 {_ms(delays, 0.99):.0f} ms, max {max(delays) * 1000:.0f} ms"
            f" ({len(delays)} calls, one at a time)"
        )


if __name__ == "__main__":
    main()
