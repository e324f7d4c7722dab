"""The aggregator's HTTP API: the cross-region view, metadata only.

The routes are module-level functions over one `ViewState` kept on `app.state`: the
view's query side (aggregator.queries), the tokens, the regions and the witness key.
`create_app(state)` serves any state (a test builds one over a temporary store);
`production_app(settings)` is the process, consuming `AUDIT_SUMMARY` while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi import Path as FastApiPath
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BeforeValidator

from aggregator.consumer import consume
from aggregator.queries import ViewQueries
from aggregator.store import ViewStore
from aggregator.web import web_routes
from aggregator.witness import Witness
from cordon.apiauth import authorize, errors, install_error_answers
from cordon.errors import NotFoundError, UnavailableError
from cordon.log.keys import SigningKey, public_bytes
from cordon.nats import Endpoint, connect
from cordon.settings import load_json
from cordon.tokens import Grant, Tokens

__all__ = [
    "AggregatorSettings",
    "ViewState",
    "create_app",
    "production_app",
    "production_state",
    "router",
    "run",
]

MAX_SEQ = 2**63 - 1


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


@dataclass(frozen=True)
class ViewState:
    """Everything the API's routes use; kept on `app.state.view`."""

    view: ViewQueries
    tokens: Tokens
    regions: tuple[str, ...]
    witness_key: SigningKey | None = None  # None: this aggregator does not cosign
    audit_apis: Mapping[str, str] = field(default_factory=dict)


def production_state(settings: AggregatorSettings, store: ViewStore) -> ViewState:
    """The state this process serves, over `store` (which the consumer fills)."""
    key = SigningKey.load(settings.witness_key_file) if settings.witness_key_file else None
    return ViewState(
        view=store,
        tokens=settings.tokens,
        regions=tuple(settings.regions),
        witness_key=key,
        audit_apis=dict(settings.audit_apis),
    )


def production_app(settings: AggregatorSettings) -> FastAPI:
    """The app `run` serves: `production_state`, with the consumer storing what
    `AUDIT_SUMMARY` delivers (and the witness judging it) while the app runs."""
    store = ViewStore(settings.store_path, settings.store_dsn)
    state = production_state(settings, store)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nc = await connect(settings.central_nats, "aggregator")
        stop = asyncio.Event()
        witness = Witness(settings.regional_public_keys, state.witness_key)
        task = asyncio.create_task(consume(nc, store, stop, witness))
        try:
            yield
        finally:
            stop.set()
            await task
            await nc.close()
            store.close()

    return create_app(state, lifespan)


def create_app(
    state: ViewState,
    lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The API (and the web page) over `state`; `lifespan` runs what feeds the view."""
    app = FastAPI(title="Cordon aggregator", lifespan=lifespan)
    app.state.view = state
    install_error_answers(app)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    # Prometheus' text format, not an API: left out of the document.
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.include_router(router)
    app.include_router(
        web_routes(state.view, state.tokens, list(state.regions), dict(state.audit_apis))
    )
    return app


# -- dependencies and parameters -------------------------------------------------------


def _state(request: Request) -> ViewState:
    return cast(ViewState, request.app.state.view)


State = Annotated[ViewState, Depends(_state)]


def reader(request: Request, state: State) -> Grant:
    """The cross-region view is for auditors and SREs; /healthz and /metrics stay open."""
    return authorize(request, state.tokens, ("auditor", "sre"), None)


router = APIRouter(dependencies=[Depends(reader)], responses=errors(UnavailableError))

Dimension = Literal["region", "outcome", "pack_name", "pack_revision", "model", "classification"]
# A page's last (region, stream sequence), as `next_cursor` hands it out: `eu-west.42`.
Position = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_-]{0,64}\.[0-9]{1,18}$",
        description="a page's `next_cursor`: its last `region.sequence`",
    ),
]
_DATED = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _dated(value: object) -> object:
    """Only a written date-time: pydantic alone would also read a number (`0.5`) as
    seconds since 1970, which the document (a date-time string) does not allow."""
    if isinstance(value, str) and not _DATED.match(value):
        raise ValueError("an ISO 8601 date-time, e.g. 2026-12-02T10:00:00Z")
    return value


Moment = Annotated[datetime | None, BeforeValidator(_dated)]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most 1000")]
LongLimit = Annotated[int, Query(ge=1, le=10_000, description="at most 10000")]
Since = Annotated[Moment, Query(description="ISO 8601 date-time (UTC if no offset), inclusive")]
Until = Annotated[Moment, Query(description="ISO 8601 date-time (UTC if no offset), exclusive")]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$", description="a page's `next_cursor`")]


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# -- routes ----------------------------------------------------------------------------


@router.get("/v1/summaries")
async def summaries(
    state: State,
    region: str | None = None,
    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    cursor: Position = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Metadata-only summaries, by region and stream sequence. Pages: pass
    `next_cursor` back as `cursor` (or, within one region, the last `after_seq`)."""
    items = state.view.query(region, after_seq, limit, _position(cursor))
    return {"items": items, "next_cursor": _following(items, limit)}


@router.get("/v1/counts")
async def counts(
    state: State,
    by: Annotated[list[Dimension] | None, Query()] = None,
    bucket: Literal["minute", "hour", "day"] | None = None,
    since: Since = None,
    until: Until = None,
    region: str | None = None,
    cursor: Cursor = None,
    limit: LongLimit = 1000,
) -> dict[str, Any]:
    """Decision counts grouped by any of region, outcome, pack_name, pack_revision,
    model and classification (default: region and outcome), and by time bucket;
    `since` inclusive, `until` exclusive. Pages: pass `next_cursor` back as `cursor`."""
    columns = list(by) if by is not None else ["region", "outcome"]
    offset = int(cursor or 0)
    found = state.view.counts(columns, bucket, _iso(since), _iso(until), region, offset, limit)
    following = str(offset + limit) if len(found) == limit else None
    return {"items": found, "next_cursor": following}


@router.get("/v1/enforcement")
async def enforcement(
    state: State,
    since: Since = None,
    until: Until = None,
    region: str | None = None,
    cursor: Cursor = None,
    limit: LongLimit = 1000,
) -> dict[str, Any]:
    """Where packs were enforced: per region, decisions by `enforced_by` (gateway,
    sidecar, sdk; `unknown` for summaries sealed before they said); per agent pseudonym
    with SDK records, its `sdk_records` and its gateway and sidecar calls that name an
    SDK record the view holds (`gateway_calls_with_receipt`), name one it does not
    (`receipts_unmatched`) or name none (`gateway_calls_without_receipt`). `since`
    inclusive, `until` exclusive. Pages of agents: pass `next_cursor` back as `cursor`."""
    offset = int(cursor or 0)
    found = state.view.enforcement(_iso(since), _iso(until), region, offset, limit)
    following = str(offset + limit) if len(found["agents"]) == limit else None
    return {**found, "next_cursor": following}


@router.get("/v1/people")
async def people(
    state: State,
    pseudonym: Annotated[list[str], Query(min_length=1, max_length=50)],
    cursor: Position = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Where a pseudonymous person's records are: per region, the record ids and
    stream sequences to ask that region's audit API for. Pass the person's pseudonym
    in each region (regions pseudonymize under their own keys)."""
    items = state.view.person_records(pseudonym, _position(cursor), limit)
    return {"items": items, "next_cursor": _following(items, limit)}


@router.get("/v1/freshness")
async def freshness(state: State) -> dict[str, Any]:
    """Per region: newest summary in the view, summaries waiting for a checkpoint, the
    newest verified checkpoint, and checkpoints verified and failed."""
    return {"regions": state.view.freshness()}


@router.get("/v1/gaps")
async def gaps(state: State, region: str | None = None) -> dict[str, Any]:
    """Stream sequence ranges below a region's newest summary that the view lacks,
    each replica's `replica_seq` numbers with neither a record nor a void, and the
    checkpoints the witness could not verify."""
    view = state.view
    failures = {r: view.witness_failures(r) for r in ([region] if region else state.regions)}
    return {
        "gaps": view.gaps(region),
        "replica_gaps": view.replica_gaps(region),
        "failed_checkpoints": failures,
    }


@router.get("/v1/stats")
async def stats(state: State) -> dict[str, Any]:
    """Decision counts by region and outcome, and the newest summary per region."""
    return state.view.stats()


@router.get("/v1/intents/open")
async def open_intents(
    state: State,
    region: str | None = None,
    older_than_s: Annotated[float, Query(ge=0, le=10 * 365 * 86400)] = 60.0,
    cursor: Position = None,
    limit: LongLimit = 1000,
) -> dict[str, Any]:
    """Streams whose intent record reached the region's log at least `older_than_s`
    ago and no decision record completes: they began and did not end properly.
    Each names the region's record id and stream sequence to fetch it with."""
    before = datetime.now(UTC) - timedelta(seconds=older_than_s)
    since = before.isoformat(timespec="microseconds")
    items = state.view.open_intents(since, region, _position(cursor), limit)
    return {"items": items, "next_cursor": _following(items, limit)}


@router.get("/v1/checkpoints")
async def latest_checkpoints(state: State) -> dict[str, Any]:
    """Each region's newest signed checkpoint: tree size, root (hex), time, and the
    witness's verdict on it (recomputed from the summaries' leaf hashes)."""
    return {"regions": state.view.latest_checkpoints()}


@router.get("/v1/witness/key", responses=errors((NotFoundError, "This aggregator does not cosign")))
async def witness_key(state: State) -> dict[str, str]:
    """The public key the witness cosigns verified checkpoints with."""
    key = state.witness_key
    if key is None:
        raise NotFoundError("this aggregator has no witness key: it does not cosign")
    return {"key_id": key.key_id, "public_key": public_bytes(key.public_key).hex()}


@router.get(
    "/v1/witness/{region}/checkpoints/{size}",
    responses=errors((NotFoundError, "The witness has not judged that checkpoint")),
)
async def witness_verdict(
    state: State, region: str, size: Annotated[int, FastApiPath(ge=0, le=MAX_SEQ)]
) -> dict[str, Any]:
    """The witness's verdict on `region`'s checkpoint of `size`, and its cosignature
    over the checkpoint's note when it verified (`cordon audit export --witness`)."""
    verdict = state.view.verdict(region, size)
    if verdict is None:
        raise NotFoundError(f"the witness has not judged {region}'s checkpoint {size}")
    return verdict


@router.get("/v1/witness/{region}/failures")
async def witness_failures(state: State, region: str) -> dict[str, Any]:
    """Every checkpoint of `region` the witness could not verify, and why."""
    return {"region": region, "failures": state.view.witness_failures(region)}


def _position(cursor: str | None) -> tuple[str, int]:
    region, _, seq = (cursor or ".0").rpartition(".")
    return region, int(seq)


def _following(items: list[dict[str, Any]], limit: int) -> str | None:
    if len(items) < limit:
        return None
    return f"{items[-1]['region']}.{items[-1]['stream_seq']}"


def _iso(moment: datetime | None) -> str | None:
    """As summaries store time: ISO 8601 in UTC (naive input is taken as UTC). A moment
    that UTC cannot hold (year 1 with a positive offset, year 9999 with a negative one)
    lies before or after every stored time: "" and "~" sort so against them."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    except OverflowError:
        return "" if moment.year == 1 else "~"


def run(config_path: Path) -> None:
    import uvicorn

    settings = AggregatorSettings.load(config_path)
    app = production_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
