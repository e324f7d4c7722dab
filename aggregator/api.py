"""The aggregator's HTTP API: the cross-region view, metadata only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Response
from fastapi import Path as FastApiPath
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aggregator.consumer import consume
from aggregator.store import ViewStore
from aggregator.web import web_routes
from aggregator.witness import Witness
from cordon.apiauth import errors, install_error_answers, require
from cordon.log.keys import SigningKey, public_bytes
from cordon.nats import Endpoint, connect
from cordon.settings import load_json
from cordon.tokens import Tokens


@dataclass(frozen=True)
class AggregatorSettings:
    central_nats: Endpoint
    regions: list[str]
    store_path: Path
    host: str = "127.0.0.1"
    port: int = 8500
    # region -> raw regional public key: what the witness checks checkpoints against
    regional_public_keys: dict[str, bytes] = field(default_factory=dict)
    witness_key_file: Path | None = None  # cosigns verified checkpoints when set
    tokens: Tokens = field(default_factory=lambda: Tokens({}))  # none: nobody gets in
    # PostgreSQL instead of the SQLite file, e.g. "postgresql://cordon@db:5432/cordon";
    # keep the password out of it (libpq reads PGPASSWORD or PGPASSFILE).
    store_dsn: str | None = None
    # region -> its audit API's URL, for the commands the web page shows
    audit_apis: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> AggregatorSettings:
        return load_json(
            path,
            lambda raw: cls(
                central_nats=Endpoint.from_settings(raw["central_nats"], path.parent),
                regions=[str(r) for r in raw["regions"]],
                store_path=path.parent / str(raw.get("store_path", "aggregator.sqlite3")),
                host=str(raw.get("host", "127.0.0.1")),
                port=int(raw.get("port", 8500)),
                regional_public_keys={
                    str(region): bytes.fromhex(str(key))
                    for region, key in dict(raw.get("regional_public_keys", {})).items()
                },
                witness_key_file=(
                    path.parent / str(raw["witness_key_file"])
                    if raw.get("witness_key_file")
                    else None
                ),
                tokens=Tokens.from_settings(raw.get("tokens", [])),
                store_dsn=str(raw["store_dsn"]) if raw.get("store_dsn") else None,
                audit_apis={str(k): str(v) for k, v in dict(raw.get("audit_apis", {})).items()},
            ),
        )


Dimension = Literal["region", "outcome", "pack_name", "pack_revision", "model", "classification"]


def create_app(settings: AggregatorSettings) -> FastAPI:
    store = ViewStore(settings.store_path, settings.store_dsn)
    key = SigningKey.load(settings.witness_key_file) if settings.witness_key_file else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nc = await connect(settings.central_nats, "aggregator")
        stop = asyncio.Event()
        witness = Witness(settings.regional_public_keys, key)
        task = asyncio.create_task(consume(nc, store, stop, witness))
        try:
            yield
        finally:
            stop.set()
            await task
            await nc.close()
            store.close()

    app = FastAPI(title="Cordon aggregator", lifespan=lifespan)
    install_error_answers(app)
    # The cross-region view is for auditors and SREs; /healthz and /metrics stay open.
    api = APIRouter(
        dependencies=[Depends(require(settings.tokens, ("auditor", "sre"), None))],
        responses=errors(),
    )

    @api.get("/v1/summaries")
    async def summaries(
        region: str | None = None,
        after_seq: int = Query(0, ge=0, le=MAX_SEQ),
        cursor: Position = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Metadata-only summaries, by region and stream sequence. Pages: pass
        `next_cursor` back as `cursor` (or, within one region, the last `after_seq`)."""
        items = store.query(region, after_seq, limit, _position(cursor))
        return {"items": items, "next_cursor": _following(items, limit)}

    @api.get("/v1/counts")
    async def counts(
        by: Annotated[list[Dimension] | None, Query()] = None,
        bucket: Literal["minute", "hour", "day"] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        region: str | None = None,
        cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$")] = None,
        limit: int = Query(1000, ge=1, le=10_000),
    ) -> dict[str, Any]:
        """Decision counts grouped by any of region, outcome, pack_name, pack_revision,
        model and classification (default: region and outcome), and by time bucket;
        `since` inclusive, `until` exclusive. Pages: pass `next_cursor` back as `cursor`."""
        columns = list(by) if by is not None else ["region", "outcome"]
        offset = int(cursor or 0)
        items = store.counts(columns, bucket, _iso(since), _iso(until), region, offset, limit)
        following = str(offset + limit) if len(items) == limit else None
        return {"items": items, "next_cursor": following}

    @api.get("/v1/people")
    async def people(
        pseudonym: Annotated[list[str], Query(min_length=1, max_length=50)],
        cursor: Position = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Where a pseudonymous person's records are: per region, the record ids and
        stream sequences to ask that region's audit API for. Pass the person's pseudonym
        in each region (regions pseudonymize under their own keys)."""
        region, _, seq = (cursor or ".0").rpartition(".")
        items = store.person_records(pseudonym, (region, int(seq)), limit)
        last = items[-1] if len(items) == limit else None
        return {
            "items": items,
            "next_cursor": f"{last['region']}.{last['stream_seq']}" if last else None,
        }

    @api.get("/v1/freshness")
    async def freshness() -> dict[str, Any]:
        """Per region: newest summary in the view, summaries waiting for a checkpoint, the
        newest verified checkpoint, and checkpoints verified and failed."""
        return {"regions": store.freshness()}

    @api.get("/v1/gaps")
    async def gaps(region: str | None = None) -> dict[str, Any]:
        """Stream sequence ranges below a region's newest summary that the view lacks,
        each replica's `replica_seq` numbers with neither a record nor a void, and the
        checkpoints the witness could not verify."""
        failures = {
            r: store.witness_failures(r) for r in ([region] if region else settings.regions)
        }
        return {
            "gaps": store.gaps(region),
            "replica_gaps": store.replica_gaps(region),
            "failed_checkpoints": failures,
        }

    @api.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        """Decision counts by region and outcome, and the newest summary per region."""
        return store.stats()

    @api.get("/v1/intents/open")
    async def open_intents(
        region: str | None = None,
        older_than_s: float = Query(60.0, ge=0, le=10 * 365 * 86400),
        cursor: Position = None,
        limit: int = Query(1000, ge=1, le=10_000),
    ) -> dict[str, Any]:
        """Streams whose intent record reached the region's log at least `older_than_s`
        ago and no decision record completes: they began and did not end properly.
        Each names the region's record id and stream sequence to fetch it with."""
        before = datetime.now(UTC) - timedelta(seconds=older_than_s)
        since = before.isoformat(timespec="microseconds")
        items = store.open_intents(since, region, _position(cursor), limit)
        return {"items": items, "next_cursor": _following(items, limit)}

    @api.get("/v1/checkpoints")
    async def latest_checkpoints() -> dict[str, Any]:
        """Each region's newest signed checkpoint: tree size, root (hex), time, and the
        witness's verdict on it (recomputed from the summaries' leaf hashes)."""
        return {"regions": store.latest_checkpoints()}

    @api.get("/v1/witness/key", responses=errors(404))
    async def witness_key() -> dict[str, str]:
        """The public key the witness cosigns verified checkpoints with."""
        if key is None:
            raise HTTPException(404, "this aggregator has no witness key: it does not cosign")
        return {"key_id": key.key_id, "public_key": public_bytes(key.public_key).hex()}

    @api.get("/v1/witness/{region}/checkpoints/{size}", responses=errors(404))
    async def witness_verdict(
        region: str, size: Annotated[int, FastApiPath(ge=0, le=MAX_SEQ)]
    ) -> dict[str, Any]:
        """The witness's verdict on `region`'s checkpoint of `size`, and its cosignature
        over the checkpoint's note when it verified (`cordon audit export --witness`)."""
        verdict = store.verdict(region, size)
        if verdict is None:
            raise HTTPException(404, f"the witness has not judged {region}'s checkpoint {size}")
        return verdict

    @api.get("/v1/witness/{region}/failures")
    async def witness_failures(region: str) -> dict[str, Any]:
        """Every checkpoint of `region` the witness could not verify, and why."""
        return {"region": region, "failures": store.witness_failures(region)}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)  # Prometheus' text format, not an API
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api)
    app.include_router(web_routes(store, settings.tokens, settings.regions, settings.audit_apis))
    return app


MAX_SEQ = 2**63 - 1
# A page's last (region, stream sequence), as `next_cursor` hands it out: `eu-west.42`.
Position = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{0,64}\.[0-9]{1,18}$")]


def _position(cursor: str | None) -> tuple[str, int]:
    region, _, seq = (cursor or ".0").rpartition(".")
    return region, int(seq)


def _following(items: list[dict[str, Any]], limit: int) -> str | None:
    if len(items) < limit:
        return None
    return f"{items[-1]['region']}.{items[-1]['stream_seq']}"


def _iso(moment: datetime | None) -> str | None:
    """As summaries store time: ISO 8601 in UTC (naive input is taken as UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def run(config_path: Path) -> None:
    import uvicorn

    settings = AggregatorSettings.load(config_path)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
