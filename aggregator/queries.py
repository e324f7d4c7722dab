"""The cross-region view's query side: every read the API (aggregator.api) and the web
page (aggregator.web) serve, over the database the writer (aggregator.ingest) fills.
The same SQL on SQLite and PostgreSQL (aggregator.database).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aggregator.schema import BUCKETS, GROUPABLE, SHOWN, OnDatabase

__all__ = ["ViewQueries"]


class ViewQueries(OnDatabase):
    """What the view answers; it never writes."""

    def latest_checkpoints(self) -> dict[str, dict[str, Any]]:
        """Each region's newest checkpoint, with the witness's verdict on it."""
        rows = self._db.query(
            "SELECT c.region, c.size, c.root, c.time_ms, c.signed, w.verified, w.reason, "
            "w.cosignature, w.rejected FROM checkpoints c "
            "LEFT JOIN witnessed w ON w.region = c.region AND w.size = c.size "
            "WHERE c.size = (SELECT MAX(size) FROM checkpoints WHERE region = c.region)"
        )
        latest = {}
        for region, size, root, time_ms, signed, verified, why, cosignature, rejected in rows:
            witnessed = None
            if verified is not None:
                witnessed = {
                    "verified": bool(verified),
                    "reason": why,
                    "cosignature": cosignature,
                    "rejected": rejected,
                }
            latest[region] = {
                "size": size,
                "root": root,
                "time_ms": time_ms,
                "note": json.loads(signed)["note"],
                "witness": witnessed,
            }
        return latest

    def verdict(self, region: str, size: int) -> dict[str, Any] | None:
        """The witness's verdict on one checkpoint, with its cosignature (base64)."""
        rows = self._db.query(
            "SELECT verified, reason, cosignature, rejected FROM witnessed "
            "WHERE region = ? AND size = ?",
            (region, size),
        )
        if not rows:
            return None
        verified, reason, cosignature, rejected = rows[0]
        return {
            "region": region,
            "size": size,
            "verified": bool(verified),
            "reason": reason,
            "cosignature": cosignature,
            "rejected": rejected,
        }

    def witness_failures(self, region: str) -> list[dict[str, Any]]:
        rows = self._db.query(
            "SELECT size, reason FROM witnessed WHERE region = ? AND verified = 0 ORDER BY size",
            (region,),
        )
        return [{"size": size, "reason": reason} for size, reason in rows]

    def query(
        self,
        region: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
        after: tuple[str, int] = ("", 0),
    ) -> list[dict[str, Any]]:
        """Summaries in (region, sequence) order: after `after` (a page's last), and
        with `region`, after `after_seq` in it."""
        sql = (
            f"SELECT {', '.join(SHOWN)} FROM summaries WHERE stream_seq > ? "
            "AND (region > ? OR (region = ? AND stream_seq > ?))"
        )
        params: list[Any] = [after_seq, after[0], after[0], after[1]]
        if region is not None:
            sql += " AND region = ?"
            params.append(region)
        sql += " ORDER BY region, stream_seq LIMIT ?"
        params.append(limit)
        return [dict(zip(SHOWN, row, strict=True)) for row in self._db.query(sql, params)]

    def open_intents(
        self,
        before_ts: str,
        region: str | None = None,
        after: tuple[str, int] = ("", 0),
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Stream intents from before `before_ts` that no decision summary completes: streams
        that began and ended badly (the final record was never committed)."""
        sql = (
            "SELECT region, stream_seq, id, ts FROM summaries s WHERE kind = 'intent' "
            "AND ts < ? AND NOT EXISTS (SELECT 1 FROM summaries d WHERE d.intent = s.id) "
            "AND (region > ? OR (region = ? AND stream_seq > ?))"
        )
        params: list[Any] = [before_ts, after[0], after[0], after[1]]
        if region is not None:
            sql += " AND region = ?"
            params.append(region)
        rows = self._db.query(sql + " ORDER BY region, stream_seq LIMIT ?", [*params, limit])
        keys = ("region", "stream_seq", "id", "ts")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def counts(
        self,
        by: Sequence[str],
        bucket: str | None = None,
        since: str | None = None,
        until: str | None = None,
        region: str | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Decisions counted by the `by` columns (GROUPABLE) and, with `bucket`, by time
        (BUCKETS), over `since` <= ts < `until` (ISO 8601, UTC), in key order."""
        keys = [GROUPABLE[column] for column in by]
        names = list(by)
        if bucket is not None:
            keys.append(f"substr(ts, 1, {BUCKETS[bucket]})")
            names.append("bucket")
        where, params = ["kind = 'decision'"], []
        for clause, value in (("ts >= ?", since), ("ts < ?", until), ("region = ?", region)):
            if value is not None:
                where.append(clause)
                params.append(value)
        select = ", ".join([*keys, "COUNT(*)"])
        group = f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
        sql = f"SELECT {select} FROM summaries WHERE {' AND '.join(where)}{group} LIMIT ? OFFSET ?"
        rows = self._db.query(sql, [*params, limit, offset])
        return [{**dict(zip(names, row[:-1], strict=True)), "count": int(row[-1])} for row in rows]

    def enforcement(
        self,
        since: str | None = None,
        until: str | None = None,
        region: str | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> dict[str, Any]:
        """Where packs were enforced, over decisions with `since` <= ts < `until`:

        `regions`: per region, decisions counted by `enforced_by` (`unknown`: summaries
        sealed before they said). `agents`: per region and agent pseudonym with an `sdk`
        record anywhere in the view, in key order (a page of `limit` after `offset`): its
        `sdk_records`, and its gateway and sidecar decisions that name an SDK record the
        view holds (`gateway_calls_with_receipt`), name one it does not hold
        (`receipts_unmatched`: forged, or not shipped yet) or name none
        (`gateway_calls_without_receipt`: calls that went around the SDK)."""
        where, params = ["kind = 'decision'"], []
        for clause, value in (("ts >= ?", since), ("ts < ?", until), ("region = ?", region)):
            if value is not None:
                where.append(clause)
                params.append(value)
        regions: dict[str, dict[str, Any]] = {}
        for place_region, place, count in self._db.query(
            f"SELECT region, enforced_by, COUNT(*) FROM summaries WHERE {' AND '.join(where)} "
            "GROUP BY region, enforced_by",
            params,
        ):
            entry = regions.setdefault(place_region, {"by_enforced_by": {}})
            entry["by_enforced_by"][place or "unknown"] = int(count)
        agents = self._enforcing_agents(since, until, region, offset, limit)
        return {"regions": regions, "agents": agents}

    def _enforcing_agents(
        self, since: str | None, until: str | None, region: str | None, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        """The `agents` half of `enforcement`: driven by the agents' SDK records (an
        index of them by region and agent), then each such agent's decisions (an index
        by region and agent), each receipt looked up by id (an index of SDK records)."""
        sdk_agents = (
            "SELECT DISTINCT region, agent FROM summaries "
            "WHERE kind = 'decision' AND enforced_by = 'sdk' AND agent IS NOT NULL"
        )
        params: list[Any] = []
        if region is not None:
            sdk_agents += " AND region = ?"
            params.append(region)
        window = ""
        for clause, value in (("s.ts >= ?", since), ("s.ts < ?", until)):
            if value is not None:
                window += f" AND {clause}"
                params.append(value)
        # A receipt counts once, for the agent whose SDK record it names: a receipt
        # copied onto calls that went around the SDK, or onto another agent's, is
        # unmatched, not cover.
        held = (
            "(EXISTS (SELECT 1 FROM summaries m WHERE m.region = s.region "
            "AND m.id = s.sdk_record AND m.enforced_by = 'sdk' AND m.kind = 'decision' "
            "AND m.agent = s.agent) "
            "AND NOT EXISTS (SELECT 1 FROM summaries o WHERE o.region = s.region "
            "AND o.sdk_record = s.sdk_record AND o.stream_seq < s.stream_seq "
            "AND o.enforced_by IN ('gateway', 'sidecar')))"
        )
        enforced_elsewhere = "s.enforced_by IN ('gateway', 'sidecar')"
        receipted = f"{enforced_elsewhere} AND s.sdk_record IS NOT NULL"
        rows = self._db.query(
            f"WITH sdk_agents AS ({sdk_agents}) "
            "SELECT s.region, s.agent, "
            "SUM(CASE WHEN s.enforced_by = 'sdk' THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {receipted} AND {held} THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {receipted} AND NOT {held} THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {enforced_elsewhere} AND s.sdk_record IS NULL THEN 1 ELSE 0 END) "
            "FROM sdk_agents g JOIN summaries s ON s.region = g.region AND s.agent = g.agent "
            f"AND s.kind = 'decision'{window} "
            "GROUP BY s.region, s.agent ORDER BY s.region, s.agent LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [
            {
                "region": agent_region,
                "agent": agent,
                "sdk_records": int(sdk),
                "gateway_calls_with_receipt": int(matched),
                "receipts_unmatched": int(unmatched),
                "gateway_calls_without_receipt": int(around),
            }
            for agent_region, agent, sdk, matched, unmatched, around in rows
        ]

    def person_records(
        self, pseudonyms: Sequence[str], after: tuple[str, int] = ("", 0), limit: int = 100
    ) -> list[dict[str, Any]]:
        """Where the records of a pseudonymous person are: region, record id, stream
        sequence, time and kind, in (region, sequence) order after `after`."""
        marks = ", ".join("?" for _ in pseudonyms)
        rows = self._db.query(
            f"SELECT region, stream_seq, id, ts, kind, person FROM summaries "
            f"WHERE person IN ({marks}) AND (region > ? OR (region = ? AND stream_seq > ?)) "
            "ORDER BY region, stream_seq LIMIT ?",
            [*pseudonyms, after[0], after[0], after[1], limit],
        )
        keys = ("region", "stream_seq", "id", "ts", "kind", "person")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def decisions_between(
        self, since: str | None, until: str | None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Decisions with `since` <= ts < `until`: region, stream sequence, id, time."""
        where, params = ["kind = 'decision'"], []
        for clause, value in (("ts >= ?", since), ("ts < ?", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self._db.query(
            f"SELECT region, stream_seq, id, ts FROM summaries WHERE {' AND '.join(where)} "
            "ORDER BY region, stream_seq LIMIT ?",
            [*params, limit],
        )
        keys = ("region", "stream_seq", "id", "ts")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def freshness(self) -> dict[str, dict[str, Any]]:
        """Per region: the newest summary in the view, what waits for a checkpoint, and
        the newest checkpoint the witness verified."""
        found: dict[str, dict[str, Any]] = {}

        def entry(region: str) -> dict[str, Any]:
            return found.setdefault(
                region,
                {
                    "newest_summary_ts": None,
                    "newest_stream_seq": 0,
                    "summaries": 0,
                    "waiting_for_checkpoint": 0,
                    "newest_verified_checkpoint": None,
                    "checkpoints_verified": 0,
                    "checkpoints_failed": 0,
                },
            )

        for region, newest, seq, count in self._db.query(
            "SELECT region, MAX(ts), MAX(stream_seq), COUNT(*) FROM summaries GROUP BY region"
        ):
            entry(region).update(newest_summary_ts=newest, newest_stream_seq=seq, summaries=count)
        for region, count in self._db.query(
            "SELECT region, COUNT(DISTINCT stream_seq) FROM candidates GROUP BY region"
        ):
            entry(region)["waiting_for_checkpoint"] = count
        for region, verified, count in self._db.query(
            "SELECT region, verified, COUNT(*) FROM witnessed GROUP BY region, verified"
        ):
            entry(region)["checkpoints_verified" if verified else "checkpoints_failed"] = count
        for region, size, time_ms in self._db.query(
            "SELECT c.region, c.size, c.time_ms FROM checkpoints c JOIN witnessed w "
            "ON w.region = c.region AND w.size = c.size AND w.verified = 1 "
            "WHERE c.size = (SELECT MAX(c2.size) FROM checkpoints c2 JOIN witnessed w2 "
            "ON w2.region = c2.region AND w2.size = c2.size AND w2.verified = 1 "
            "WHERE c2.region = c.region)"
        ):
            entry(region)["newest_verified_checkpoint"] = {"size": size, "time_ms": time_ms}
        return found

    def gaps(self, region: str | None = None) -> list[dict[str, Any]]:
        """Ranges of stream sequences missing from the view below a region's newest
        summary: records whose summaries never arrived (or were refused)."""
        sql = (
            "SELECT region, prev + 1, stream_seq - 1 FROM (SELECT region, stream_seq, "
            "LAG(stream_seq, 1, 0) OVER (PARTITION BY region ORDER BY stream_seq) AS prev "
            "FROM summaries) AS ordered WHERE stream_seq > prev + 1"
        )
        rows = self._holes(sql, region, "region, 2")
        return [{"region": r, "first_seq": first, "last_seq": last} for r, first, last in rows]

    def replica_gaps(self, region: str | None = None) -> list[dict[str, Any]]:
        """Numbers missing from a replica's `replica_seq` in the view: each is a number
        spent with neither a record nor the void that stands for it (or one whose summary
        has not arrived: then `gaps` names its stream sequence too)."""
        sql = (
            "SELECT region, replica, prev + 1, replica_seq - 1 FROM (SELECT region, replica, "
            "replica_seq, LAG(replica_seq, 1, 0) OVER (PARTITION BY region, replica "
            "ORDER BY replica_seq) AS prev FROM summaries WHERE replica_seq IS NOT NULL) "
            "AS numbered WHERE replica_seq > prev + 1"
        )
        rows = self._holes(sql, region, "region, replica, 3")
        return [
            {"region": r, "replica": replica, "first_replica_seq": first, "last_replica_seq": last}
            for r, replica, first, last in rows
        ]

    def _holes(self, sql: str, region: str | None, order: str) -> list[Any]:
        """Rows of a hole-finding query, of one region or all, in `order`."""
        params: list[Any] = []
        if region is not None:
            sql += " AND region = ?"
            params.append(region)
        return self._db.query(f"{sql} ORDER BY {order}", params)

    def stats(self) -> dict[str, Any]:
        by_region: dict[str, dict[str, Any]] = {}
        rows = self._db.query(
            "SELECT region, kind, outcome, COUNT(*), MAX(ts) FROM summaries "
            "GROUP BY region, kind, outcome"
        )
        for region, kind, outcome, count, newest in rows:
            entry = by_region.setdefault(
                region, {"records": 0, "by_outcome": {}, "newest_ts": None}
            )
            if kind != "decision":
                continue
            entry["records"] += count
            entry["by_outcome"][outcome] = count
            if newest and (entry["newest_ts"] is None or newest > entry["newest_ts"]):
                entry["newest_ts"] = newest
        return {"regions": by_region}
