"""`cordon gateway audit-api`: the read-only auditor view of one region's records.

It runs inside the region, next to `RECORDS`, and never forwards a record anywhere
else. Every record it returns says whether its signature verified against the
replica key that the regional key enrolled.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from gateway import subjects
from gateway.enrolment import Keyring
from gateway.errors import SignatureError
from gateway.runtime import connect
from gateway.settings import load_json


@dataclass(frozen=True)
class AuditApiSettings:
    region: str
    audit_nats_url: str
    regional_public_key_hex: str
    host: str = "127.0.0.1"
    port: int = 8090

    @classmethod
    def load(cls, path: Path) -> AuditApiSettings:
        return load_json(
            path,
            lambda raw: cls(
                region=str(raw["region"]),
                audit_nats_url=str(raw["audit_nats_url"]),
                regional_public_key_hex=str(raw["regional_public_key"]),
                host=str(raw.get("host", "127.0.0.1")),
                port=int(raw.get("port", 8090)),
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


async def _keyring(nc: NATS, settings: AuditApiSettings) -> Keyring:
    """Trust the regional key, then every replica key it enrolled in the stream."""
    keyring = Keyring(settings.region, bytes.fromhex(settings.regional_public_key_hex))
    js = nc.jetstream()
    subject = subjects.enrolment_subject(settings.region)
    seq = 1
    while True:
        try:
            msg = await js.get_msg(subjects.RECORDS_STREAM, seq, subject=subject, next=True)
        except NotFoundError:
            return keyring
        with contextlib.suppress(SignatureError):  # a forged one simply adds no key
            keyring.add_enrolment(msg.data or b"")
        seq = (msg.seq or seq) + 1


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
        return {"seq": seq, "kind": "decision", "verified": True, "record": record}
    except SignatureError as exc:
        return {"seq": seq, "kind": "decision", "verified": False, "error": str(exc)}


def create_app(settings: AuditApiSettings) -> FastAPI:
    state: dict[str, NATS] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["nc"] = await connect(settings.audit_nats_url, f"audit-api-{settings.region}")
        yield
        await state["nc"].close()

    app = FastAPI(title=f"Cordon audit API ({settings.region})", lifespan=lifespan)

    @app.get("/v1/records")
    async def list_records(
        after_seq: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        """Records in stream order after `after_seq`, each with its verification result."""
        nc = state["nc"]
        keyring = await _keyring(nc, settings)
        items = await _records_page(nc, keyring, after_seq, limit)
        if not items and after_seq == 0:
            raise HTTPException(404, "no records in this region yet")
        return {"region": settings.region, "items": items}

    return app


def run(config_path: Path) -> None:
    settings = AuditApiSettings.load(config_path)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
