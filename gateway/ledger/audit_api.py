"""`cordon gateway audit-api`: the read-only auditor view of one region's records.

It runs inside the region, next to `RECORDS`, and never forwards a record anywhere
else. Every record it returns says whether its signature verified against the
replica key that the regional key enrolled. Every route but /healthz needs an auditor
token for this region, and every answer is preceded by an access record (`access`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as FastApiPath
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from cordon.apiauth import errors, require
from cordon.errors import RecordCommitError, SignatureError
from cordon.log import bundle, checkpoints, merkle
from cordon.log.enrolment import Keyring, load_signer
from cordon.nats import Endpoint, connect, streams, subjects
from cordon.settings import load_json
from cordon.tokens import Grant, Tokens
from gateway.ledger import audit_index
from gateway.ledger.access import AccessLog

# Called by a route with how many records it returns; commits the access record.
AccessNote = Callable[[int], Awaitable[None]]

# A bundle is built in memory; pages of this many records keep that bounded, and each
# page verifies on its own (checkpoints chain the pages together).
MAX_EXPORT = 10_000
MAX_SEQ = 2**63 - 1  # stream sequences are unsigned 64-bit; the index stores signed


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


async def _records_page(nc: NATS, keyring: Keyring, after: int, limit: int) -> list[dict[str, Any]]:
    js = nc.jetstream()
    out: list[dict[str, Any]] = []
    seq = after + 1
    last = (await js.stream_info(subjects.RECORDS_STREAM)).state.last_seq
    while seq <= last and len(out) < limit:
        try:
            msg = await js.get_msg(subjects.RECORDS_STREAM, seq, direct=True)
        except NotFoundError:
            seq += 1
            continue
        out.append(_describe(keyring, seq, msg.subject or "", msg.data or b""))
        seq += 1
    return out


class EnrolledKeys:
    """The regional key plus every key it enrolled, read once and then only what is new."""

    def __init__(self, settings: AuditApiSettings) -> None:
        self.keyring = Keyring(settings.region, bytes.fromhex(settings.regional_public_key_hex))
        self._subject = subjects.enrolment_subject(settings.region)
        self._next = 1

    async def current(self, nc: NATS) -> Keyring:
        js = nc.jetstream()
        while True:
            try:
                msg = await js.get_msg(
                    subjects.RECORDS_STREAM, self._next, subject=self._subject, next=True
                )
            except NotFoundError:
                return self.keyring
            with contextlib.suppress(SignatureError):  # a forged one simply adds no key
                self.keyring.add_enrolment(msg.data or b"")
            self._next = (msg.seq or self._next) + 1


def _describe(keyring: Keyring, seq: int, subject: str, data: bytes) -> dict[str, Any]:
    if subject.startswith("cordon.enrol."):
        try:
            statement = keyring.add_enrolment(data)
            return {
                "seq": seq,
                "kind": "enrolment",
                "verified": True,
                "replica": statement["replica"],
            }
        except SignatureError as exc:
            return {"seq": seq, "kind": "enrolment", "verified": False, "error": str(exc)}
    try:
        record = keyring.verify_record(data)
        kind = str(record.get("kind", "decision"))
        return {"seq": seq, "kind": kind, "verified": True, "record": record}
    except SignatureError as exc:
        return {"seq": seq, "kind": "decision", "verified": False, "error": str(exc)}


def create_app(settings: AuditApiSettings) -> FastAPI:
    state: dict[str, NATS] = {}
    index = audit_index.AuditIndex(settings.index_path)
    enrolled = EnrolledKeys(settings)
    key, enrolment = load_signer(settings.signing_key_file, settings.enrolment_file)
    access = AccessLog(settings.region, key)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["nc"] = await connect(settings.audit_nats, f"audit-api-{settings.region}")
        await streams.publish_enrolment(
            state["nc"].jetstream(), settings.region, key.key_id, enrolment
        )
        if settings.xr_nats is not None:
            state["xr"] = await connect(settings.xr_nats, f"audit-api-{settings.region}-xr")
        stop = asyncio.Event()
        followers = [asyncio.create_task(audit_index.follow(state["nc"], index, stop))]
        if "xr" in state:
            followers.append(
                asyncio.create_task(
                    audit_index.follow_checkpoints(state["xr"], index, settings.region, stop)
                )
            )
        yield
        stop.set()
        await asyncio.gather(*followers)
        index.close()
        for nc in state.values():
            await nc.close()

    app = FastAPI(title=f"Cordon audit API ({settings.region})", lifespan=lifespan)
    # Every data route needs an auditor token for this region (cordon.tokens).
    auditor = require(settings.tokens, ("auditor",), settings.region)
    api = APIRouter(dependencies=[Depends(auditor)], responses=errors(503))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def access_note(request: Request, grant: Grant = Depends(auditor)) -> AccessNote:
        """What a route calls, with how many records it returns, before it answers: it
        commits the access record; no record, no answer."""

        async def note(returned: int) -> None:
            try:
                await access.record(
                    state["nc"].jetstream(),
                    grant,
                    request.url.path,
                    dict(request.query_params),
                    returned,
                )
            except RecordCommitError as exc:
                raise HTTPException(503, f"{exc}; nothing is released unrecorded") from exc

        return note

    @api.get("/v1/records", responses=errors(404))
    async def list_records(
        accessed: AccessNote = Depends(access_note),
        after_seq: int = Query(0, ge=0, le=MAX_SEQ),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Records in stream order after `after_seq`, each with its verification result."""
        nc = state["nc"]
        keyring = await enrolled.current(nc)
        items = await _records_page(nc, keyring, after_seq, limit)
        if not items and after_seq == 0:
            raise HTTPException(404, "no records in this region yet")
        await accessed(len(items))
        return {"region": settings.region, "items": items}

    @api.get("/v1/records/search")
    async def search(
        accessed: AccessNote = Depends(access_note),
        kind: str | None = Query(None, description="decision, void, access, ..."),
        person: str | None = None,
        agent: str | None = None,
        outcome: str | None = None,
        pack_revision: int | None = Query(None, ge=0, le=MAX_SEQ),
        model: str | None = None,
        since: str | None = Query(None, description="RFC 3339, inclusive"),
        until: str | None = Query(None, description="RFC 3339, exclusive"),
        after_seq: int = Query(0, ge=0, le=MAX_SEQ),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Records matching every given field, in stream order; page with `after_seq`."""
        query = audit_index.Query(
            person, agent, outcome, pack_revision, model, since, until, after_seq, limit, kind
        )
        seqs = index.search(query)
        nc = state["nc"]
        keyring = await enrolled.current(nc)
        js = nc.jetstream()
        items = []
        for seq in seqs:
            msg = await js.get_msg(subjects.RECORDS_STREAM, seq, direct=True)
            items.append(_describe(keyring, seq, msg.subject or "", msg.data or b""))
        await accessed(len(items))
        return {
            "region": settings.region,
            "items": items,
            "next_after_seq": seqs[-1] if len(seqs) == limit else None,
            "indexed": index.size(),
        }

    @api.get("/v1/records/{seq}/proof", responses=errors(409))
    async def proof(
        seq: Annotated[int, FastApiPath(ge=1, le=MAX_SEQ)],
        accessed: AccessNote = Depends(access_note),
    ) -> dict[str, Any]:
        """One record with its inclusion proof against the latest checkpoint."""
        await _refresh_checkpoints()
        latest = index.latest_checkpoint()
        size = checkpoints.unverified(latest).size if latest is not None else 0
        if latest is None or size < seq:
            raise HTTPException(409, f"no checkpoint covers seq {seq} yet; try again in a second")
        path = _proof_or_409(lambda: merkle.inclusion_path(index, seq - 1, size))
        msg = await state["nc"].jetstream().get_msg(subjects.RECORDS_STREAM, seq, direct=True)
        await accessed(1)
        return {
            "seq": seq,
            "data": base64.b64encode(msg.data or b"").decode(),
            "checkpoint": json.loads(latest),
            "proof": [base64.b64encode(p).decode() for p in path],
        }

    @api.get("/v1/consistency", responses=errors(400, 409))
    async def consistency(
        accessed: AccessNote = Depends(access_note),
        old_size: int = Query(..., ge=1, le=MAX_SEQ),
        new_size: int = Query(..., ge=1, le=MAX_SEQ),
    ) -> dict[str, Any]:
        """A consistency proof between two tree sizes (two checkpoints' sizes)."""
        if old_size > new_size:
            raise HTTPException(400, "old_size is larger than new_size")
        path = _proof_or_409(lambda: merkle.consistency_path(index, old_size, new_size))
        await accessed(0)
        return {
            "old_size": old_size,
            "new_size": new_size,
            "proof": [base64.b64encode(p).decode() for p in path],
        }

    async def _refresh_checkpoints() -> None:
        if "xr" not in state:
            raise HTTPException(503, "this audit API has no access to the region's checkpoints")
        await audit_index.refresh_checkpoints(state["xr"], index, settings.region)

    def _proof_or_409(make: Callable[[], list[bytes]]) -> list[bytes]:
        try:
            return make()
        except LookupError as exc:
            raise HTTPException(409, f"{exc}; try again shortly") from exc

    @api.get("/v1/export", responses=errors(400, 409))
    async def export(
        accessed: AccessNote = Depends(access_note),
        from_seq: int = Query(1, ge=1, le=MAX_SEQ),
        to_seq: int = Query(..., ge=1, le=MAX_SEQ),
    ) -> dict[str, Any]:
        """Records `from_seq`..`to_seq` as an offline-verifiable bundle (`cordon audit verify`)."""
        await _refresh_checkpoints()
        if to_seq < from_seq:
            raise HTTPException(400, "to_seq is before from_seq")
        if to_seq - from_seq + 1 > MAX_EXPORT:
            raise HTTPException(
                400, f"at most {MAX_EXPORT} records per bundle; export longer ranges page by page"
            )
        try:
            exported = await export_bundle(state["nc"], index, settings, from_seq, to_seq)
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from exc
        await accessed(len(exported["records"]))
        return exported

    app.include_router(api)
    return app


async def export_bundle(
    audit: NATS,
    index: audit_index.AuditIndex,
    settings: AuditApiSettings,
    first: int,
    last: int,
) -> dict[str, Any]:
    """The bundle for `first`..`last` against the first checkpoint covering `last`, so
    consecutive pages chain. Proofs come from the index's tree, so only the exported
    records and the enrolments are read from the stream.
    """
    final = index.first_checkpoint_covering(last)
    if final is None:
        raise LookupError(f"no checkpoint covers seq {last} yet; try again in a second")
    size = checkpoints.unverified(final).size
    if index.size() < size:
        raise LookupError("the audit index is still catching up; try again shortly")
    js = audit.jetstream()

    async def read(seq: int) -> bytes:
        return (await js.get_msg(subjects.RECORDS_STREAM, seq, direct=True)).data or b""

    enrolment_seqs = index.seqs_of_kind("enrolment", size)
    enrolments = {seq: await read(seq) for seq in enrolment_seqs}
    records = {seq: await read(seq) for seq in range(first, last + 1) if seq not in enrolments}
    return bundle.build(
        region=settings.region,
        regional_public_key=bytes.fromhex(settings.regional_public_key_hex),
        nodes=index,
        checkpoint=final,
        older=index.checkpoints_below(size, 3),
        enrolments=enrolments,
        records=records,
        first=first,
        last=last,
    )


def run(config_path: Path) -> None:
    settings = AuditApiSettings.load(config_path)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
