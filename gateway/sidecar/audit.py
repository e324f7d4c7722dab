"""The audit API on a sidecar: the same routes a region's auditors use
(gateway.ledger.audit_api: records with their verification, search, proofs, exports),
served over the sidecar's local log instead of RECORDS.

FastAPI is loaded only when an auditor first asks (`LazyAuditApp`), so a sidecar that
is never audited never pays for it. Every read is itself recorded in the local log
before it is answered, signed by the audit surface's own key, enrolled by the log's
root like the sidecar's: an auditor with the pinned root key verifies both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cordon import jsoncodec
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey
from cordon.nats import subjects
from cordon.tokens import Grant, Tokens
from gateway.http.asgi import Receive, Scope, Send, request_headers, respond
from gateway.records.local_log import LocalLog
from gateway.sidecar.sealer import CHECKPOINT_SUBJECT

if TYPE_CHECKING:
    from gateway.ledger.audit_index import AuditIndex
    from gateway.sidecar.keys import LocalKeys

__all__ = ["AUDIT_PATHS", "LazyAuditApp"]

AUDIT_PATHS = ("/v1/records", "/v1/consistency", "/v1/export")
AUDIT_REPLICA = "audit-api"  # the name the audit surface's key is enrolled under
BATCH = 1000


def serves(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in AUDIT_PATHS)


class LogRecords:
    """`RecordSource` over the local log."""

    def __init__(self, log: LocalLog) -> None:
        self._log = log

    async def last_seq(self) -> int:
        return self._log.last_seq

    async def get(self, seq: int) -> tuple[str, bytes] | None:
        return self._log.get(seq)

    async def next_on(self, subject: str, seq: int) -> tuple[int, bytes] | None:
        return self._log.next_on(subject, seq)


class _LogPublisher:
    """The one JetStream call the access log makes, appending to the local log."""

    def __init__(self, log: LocalLog) -> None:
        self._log = log

    async def publish(self, subject: str, data: bytes, **options: Any) -> None:
        headers = options.get("headers")  # the record id; `timeout` means nothing here
        await self._log.append(subject, data, str((headers or {}).get("Nats-Msg-Id", "")))


class LogAccess:
    """`AccessRecorder`: each read committed to the local log before it is answered."""

    def __init__(self, region: str, key: SigningKey, log: LocalLog) -> None:
        from gateway.ledger.access import AccessLog

        self._access = AccessLog(region, key)
        self._publisher = _LogPublisher(log)

    async def record(
        self, grant: Grant, route: str, query: Mapping[str, str], returned: int
    ) -> str:
        return await self._access.record(cast(Any, self._publisher), grant, route, query, returned)


class LogCheckpoints:
    """`CheckpointSource`: brings the index up to the log and its local checkpoints."""

    def __init__(self, records: LocalLog, sealed: LocalLog) -> None:
        self._records, self._sealed = records, sealed

    async def refresh(self, index: AuditIndex) -> None:
        rows: list[tuple[int, bytes]] = []
        for seq, _subject, data in self._records.read_from(index.size() + 1):
            rows.append((seq, data))
            if len(rows) == BATCH:  # a long log is indexed a batch at a time
                index.add(rows)
                rows = []
        if rows:
            index.add(rows)
        after = index.last_checkpoint_seq() + 1
        for seq, subject, data in self._sealed.read_from(after):
            if subject == CHECKPOINT_SUBJECT:
                index.add_checkpoint(seq, data)


class LazyAuditApp:
    """The audit API, built on the first request that needs it."""

    def __init__(
        self,
        keys: LocalKeys,
        region: str,
        records: LocalLog,
        sealed: LocalLog,
        state_dir: Path,
        tokens: Tokens,
    ) -> None:
        self._keys, self._region = keys, region
        self._records, self._sealed = records, sealed
        self._state_dir, self._tokens = state_dir, tokens
        self._app: Any = None
        self._checkpoints = LogCheckpoints(records, sealed)
        self._index: AuditIndex | None = None
        self._building = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Who is asking, before anything is built or written: a request without a known
        # token loads nothing, records nothing and reads nothing (the app then checks
        # the role and region of a known one).
        if self._tokens.identify(request_headers(scope).get("authorization")) is None:
            body = jsoncodec.dumps({"detail": "an auditor token is required"})
            await respond(send, 401, body, [(b"www-authenticate", b"Bearer")])
            return
        async with self._building:  # two first requests build it once
            if self._app is None:
                self._app = await self._build()
        assert self._index is not None
        await self._checkpoints.refresh(self._index)  # every answer sees the log as it is
        await self._app(scope, receive, send)

    async def _build(self) -> Any:
        from gateway.ledger import audit_api, audit_index
        from gateway.ledger.audit_state import AuditState, EnrolledKeys

        key = SigningKey.load_or_create(self._state_dir / "keys" / "audit-api.key")
        enrolment = enrol(self._keys.root, self._region, AUDIT_REPLICA, key)
        subject = subjects.enrolment_subject(self._region)
        await self._records.append(subject, enrolment, f"enrol-{key.key_id}")
        self._index = audit_index.AuditIndex(self._state_dir / "audit-index.sqlite3")
        root = bytes.fromhex(self._keys.root_public_hex)
        state = AuditState(
            region=self._region,
            regional_public_key=root,
            tokens=self._tokens,
            index=self._index,
            records=LogRecords(self._records),
            access=LogAccess(self._region, key, self._records),
            checkpoints=self._checkpoints,
            keys=EnrolledKeys(self._region, root),
        )
        return audit_api.create_app(state)

    def close(self) -> None:
        if self._index is not None:
            with contextlib.suppress(Exception):
                self._index.close()
