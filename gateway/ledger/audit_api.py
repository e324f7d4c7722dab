"""`cordon gateway audit-api`: the read-only auditor view of one region's records.

It runs inside the region, next to `RECORDS`, and never forwards a record anywhere
else. Every record it returns says whether its signature verified against the
replica key that the regional key enrolled. Every route but /healthz needs an auditor
token for this region, and every answer is preceded by an access record (`access`).

The routes are module-level functions over one `AuditState` (gateway.ledger.audit_state)
kept on `app.state`: `create_app(state)` serves any state (a test builds one in memory),
`production_app(settings)` the one this process runs with, over NATS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, cast

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as FastApiPath

from cordon.apiauth import authorize, errors, install_error_answers
from cordon.errors import (
    NotFoundError,
    NotYetError,
    QueryError,
    RecordCommitError,
    UnavailableError,
)
from cordon.log import checkpoints, merkle
from cordon.log.enrolment import load_signer
from cordon.nats import Endpoint, connect, streams
from cordon.settings import load_json
from cordon.tokens import Grant, Tokens
from gateway.ledger import audit_index, bundles
from gateway.ledger.access import AccessLog
from gateway.ledger.audit_state import (
    AuditState,
    EnrolledKeys,
    JetStreamAccess,
    JetStreamRecords,
    NatsLinks,
    RecordSource,
    XrCheckpoints,
    describe,
)

__all__ = [
    "MAX_EXPORT",
    "AuditApiSettings",
    "create_app",
    "export_bundle",
    "production_app",
    "production_state",
    "router",
    "run",
]

# Called by a route with how many records it returns; commits the access record.
AccessNote = Callable[[int], Awaitable[None]]

# A bundle is built in memory; pages of this many records keep that bounded, and each
# page verifies on its own (checkpoints chain the pages together).
MAX_EXPORT = 10_000
MAX_SEQ = 2**63 - 1  # stream sequences are unsigned 64-bit; the index stores signed
MAX_PAGE = 1000


@dataclass(frozen=True)
class AuditApiSettings:
    region: str
    audit_nats: Endpoint
    regional_public_key_hex: str
    # The key access records are signed with, and its enrolment by the regional key.
    signing_key_file: Path
    enrolment_file: Path
    xr_nats: Endpoint | None = None
    index_path: Path = Path("audit-index.sqlite3")
    host: str = "127.0.0.1"
    port: int = 8090
    tokens: Tokens = field(default_factory=lambda: Tokens({}))  # none: nobody gets in

    @classmethod
    def load(cls, path: Path) -> AuditApiSettings:
        return load_json(
            path,
            lambda raw: cls(
                region=str(raw["region"]),
                audit_nats=Endpoint.from_settings(raw["audit_nats"], path.parent),
                regional_public_key_hex=str(raw["regional_public_key"]),
                signing_key_file=path.parent / str(raw["signing_key_file"]),
                enrolment_file=path.parent / str(raw["enrolment_file"]),
                xr_nats=(
                    Endpoint.from_settings(raw["xr_nats"], path.parent)
                    if raw.get("xr_nats")
                    else None
                ),
                index_path=path.parent / str(raw.get("index_path", "audit-index.sqlite3")),
                host=str(raw.get("host", "127.0.0.1")),
                port=int(raw.get("port", 8090)),
                tokens=Tokens.from_settings(raw.get("tokens", [])),
            ),
        )


def production_state(settings: AuditApiSettings, links: NatsLinks) -> AuditState:
    """The state this process serves: the index file, NATS-backed records, access log
    and checkpoints (connected when the app starts; see `production_app`)."""
    key, _ = load_signer(settings.signing_key_file, settings.enrolment_file)
    regional = bytes.fromhex(settings.regional_public_key_hex)
    return AuditState(
        region=settings.region,
        regional_public_key=regional,
        tokens=settings.tokens,
        index=audit_index.AuditIndex(settings.index_path),
        records=JetStreamRecords(links),
        access=JetStreamAccess(AccessLog(settings.region, key), links),
        checkpoints=XrCheckpoints(links, settings.region),
        keys=EnrolledKeys(settings.region, regional),
    )


def production_app(settings: AuditApiSettings) -> FastAPI:
    """The app `run` serves: `production_state`, connected to NATS while it runs, with
    the index following `RECORDS` (and checkpoints, given the XR account)."""
    links = NatsLinks()
    state = production_state(settings, links)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        links.audit = await connect(settings.audit_nats, f"audit-api-{settings.region}")
        key, enrolment = load_signer(settings.signing_key_file, settings.enrolment_file)
        await streams.publish_enrolment(
            links.audit.jetstream(), settings.region, key.key_id, enrolment
        )
        if settings.xr_nats is not None:
            links.xr = await connect(settings.xr_nats, f"audit-api-{settings.region}-xr")
        stop = asyncio.Event()
        followers = [asyncio.create_task(audit_index.follow(links.audit, state.index, stop))]
        if links.xr is not None:
            follow = audit_index.follow_checkpoints(links.xr, state.index, settings.region, stop)
            followers.append(asyncio.create_task(follow))
        yield
        stop.set()
        await asyncio.gather(*followers)
        state.index.close()
        for nc in (links.audit, links.xr):
            if nc is not None:
                await nc.close()

    return create_app(state, lifespan)


def create_app(
    state: AuditState,
    lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The audit API over `state`; `lifespan` starts and stops what state needs running."""
    app = FastAPI(title=f"Cordon audit API ({state.region})", lifespan=lifespan)
    app.state.audit = state
    install_error_answers(app)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.include_router(router)
    return app


# -- dependencies ----------------------------------------------------------------------


def _state(request: Request) -> AuditState:
    return cast(AuditState, request.app.state.audit)


State = Annotated[AuditState, Depends(_state)]


def auditor(request: Request, state: State) -> Grant:
    """Every data route needs an auditor token for this region (cordon.tokens)."""
    return authorize(request, state.tokens, ("auditor",), state.region)


def access_note(
    request: Request, state: State, grant: Annotated[Grant, Depends(auditor)]
) -> AccessNote:
    """What a route calls, with how many records it returns, before it answers: it
    commits the access record; no record, no answer."""

    async def note(returned: int) -> None:
        route, query = request.url.path, dict(request.query_params)
        try:
            await state.access.record(grant, route, query, returned)
        except RecordCommitError as exc:
            raise UnavailableError(f"{exc}; nothing is released unrecorded") from exc

    return note


Accessed = Annotated[AccessNote, Depends(access_note)]
router = APIRouter(dependencies=[Depends(auditor)], responses=errors(UnavailableError))
AfterSeq = Annotated[int, Query(ge=0, le=MAX_SEQ, description="page after this sequence")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"at most {MAX_PAGE}")]
Seq = Annotated[int, Query(ge=1, le=MAX_SEQ)]


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


# -- routes ----------------------------------------------------------------------------


@router.get("/v1/records", responses=errors((NotFoundError, "This region has no records yet")))
async def list_records(
    state: State, accessed: Accessed, after_seq: AfterSeq = 0, limit: Limit = 100
) -> dict[str, Any]:
    """Records in stream order after `after_seq`, each with its verification result."""
    keyring = await state.keys.current(state.records)
    items: list[dict[str, Any]] = []
    seq, last = after_seq + 1, await state.records.last_seq()
    while seq <= last and len(items) < limit:
        found = await state.records.get(seq)
        if found is not None:
            items.append(describe(keyring, seq, *found))
        seq += 1
    if not items and after_seq == 0:
        raise NotFoundError("no records in this region yet")
    await accessed(len(items))
    return {"region": state.region, "items": items}


@router.get("/v1/records/search")
async def search(
    state: State,
    accessed: Accessed,
    kind: Annotated[str | None, Query(description="decision, void, access, ...")] = None,
    person: str | None = None,
    agent: str | None = None,
    outcome: str | None = None,
    pack_revision: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    model: str | None = None,
    since: Annotated[str | None, Query(description="RFC 3339, inclusive")] = None,
    until: Annotated[str | None, Query(description="RFC 3339, exclusive")] = None,
    after_seq: AfterSeq = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Records matching every given field, in stream order; page with `after_seq`."""
    query = audit_index.Query(
        person, agent, outcome, pack_revision, model, since, until, after_seq, limit, kind
    )
    seqs = state.index.search(query)
    keyring = await state.keys.current(state.records)
    items = []
    for seq in seqs:
        found = await state.records.get(seq)
        if found is not None:  # indexed, so written; gone only if the stream lost it
            items.append(describe(keyring, seq, *found))
    await accessed(len(items))
    return {
        "region": state.region,
        "items": items,
        "next_after_seq": seqs[-1] if len(seqs) == limit else None,
        "indexed": state.index.size(),
    }


@router.get(
    "/v1/records/{seq}/proof",
    responses=errors(
        (NotYetError, "No checkpoint covers `seq` yet, or the index is catching up; retry"),
        (NotFoundError, "The stream no longer holds the record at `seq`"),
    ),
)
async def proof(
    state: State, accessed: Accessed, seq: Annotated[int, FastApiPath(ge=1, le=MAX_SEQ)]
) -> dict[str, Any]:
    """One record with its inclusion proof against the latest checkpoint."""
    await state.checkpoints.refresh(state.index)
    latest = state.index.latest_checkpoint()
    size = checkpoints.unverified(latest).size if latest is not None else 0
    if latest is None or size < seq:
        raise NotYetError(f"no checkpoint covers seq {seq} yet; try again in a second")
    path = _proof_or_not_yet(lambda: merkle.inclusion_path(state.index, seq - 1, size))
    found = await state.records.get(seq)
    if found is None:
        raise NotFoundError(f"the stream no longer holds seq {seq}")
    await accessed(1)
    return {
        "seq": seq,
        "data": base64.b64encode(found[1]).decode(),
        "checkpoint": json.loads(latest),
        "proof": [base64.b64encode(p).decode() for p in path],
    }


@router.get(
    "/v1/consistency",
    responses=errors(
        (QueryError, "`old_size` is larger than `new_size`"),
        (NotYetError, "The index does not hold `new_size` records yet; retry shortly"),
    ),
)
async def consistency(
    accessed: Accessed,
    state: State,
    old_size: Annotated[int, Query(ge=1, le=MAX_SEQ, description="at most `new_size`")],
    new_size: Annotated[int, Query(ge=1, le=MAX_SEQ)],
) -> dict[str, Any]:
    """A consistency proof between two tree sizes (two checkpoints' sizes);
    `old_size` <= `new_size`, else 400."""
    if old_size > new_size:
        raise QueryError("old_size is larger than new_size")
    path = _proof_or_not_yet(lambda: merkle.consistency_path(state.index, old_size, new_size))
    await accessed(0)
    return {
        "old_size": old_size,
        "new_size": new_size,
        "proof": [base64.b64encode(p).decode() for p in path],
    }


@router.get(
    "/v1/export",
    responses=errors(
        (
            QueryError,
            f"`to_seq` is before `from_seq`, or the range holds more than {MAX_EXPORT} "
            "records (export longer ranges page by page)",
        ),
        (NotYetError, "No checkpoint covers `to_seq` yet, or the index is catching up; retry"),
    ),
)
async def export(
    state: State,
    accessed: Accessed,
    to_seq: Annotated[
        int, Query(ge=1, le=MAX_SEQ, description=f"from `from_seq`, at most {MAX_EXPORT} records")
    ],
    from_seq: Seq = 1,
) -> dict[str, Any]:
    """Records `from_seq`..`to_seq` (at most 10,000 of them, else 400) as an
    offline-verifiable bundle (`cordon audit verify`)."""
    await state.checkpoints.refresh(state.index)
    if to_seq < from_seq:
        raise QueryError("to_seq is before from_seq")
    if to_seq - from_seq + 1 > MAX_EXPORT:
        raise QueryError(
            f"at most {MAX_EXPORT} records per bundle; export longer ranges page by page"
        )
    try:
        exported = await export_bundle(state, from_seq, to_seq)
    except LookupError as exc:
        raise NotYetError(str(exc)) from exc
    await accessed(len(exported["records"]))
    return exported


def _proof_or_not_yet(make: Callable[[], list[bytes]]) -> list[bytes]:
    """A proof from the index, or `NotYetError` while the index lacks part of its tree."""
    try:
        return make()
    except LookupError as exc:
        raise NotYetError(f"{exc}; try again shortly") from exc


async def export_bundle(state: AuditState, first: int, last: int) -> dict[str, Any]:
    """The bundle for `first`..`last` (gateway.ledger.bundles), read from RECORDS."""

    async def read(seq: int) -> bytes:
        return await _read(state.records, seq)

    return await bundles.build_bundle(
        state.index, read, state.region, state.regional_public_key, first, last
    )


async def _read(records: RecordSource, seq: int) -> bytes:
    """A record the index holds, so the stream had it; an empty body if the stream no
    longer holds it: the bundle then fails to verify, naming that record, which is what
    an auditor must see (rather than no bundle at all)."""
    found = await records.get(seq)
    return found[1] if found is not None else b""


def run(config_path: Path) -> None:
    settings = AuditApiSettings.load(config_path)
    app = production_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
