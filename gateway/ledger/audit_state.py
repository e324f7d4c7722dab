"""What the audit API's routes work with, as one typed object (`AuditState`): the
region's index, where records are read from, where access records go, and where
checkpoints come from. The routes (gateway.ledger.audit_api) read it from `app.state`;
production fills it with NATS-backed collaborators (`NatsLinks` and the classes below),
a test with in-memory ones, so the same routes run in-process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError as NatsNotFound

from cordon.errors import SignatureError, UnavailableError
from cordon.log.enrolment import Keyring
from cordon.nats import subjects
from cordon.tokens import Grant, Tokens
from gateway.ledger import audit_index
from gateway.ledger.access import AccessLog

__all__ = [
    "AccessRecorder",
    "AuditState",
    "CheckpointSource",
    "EnrolledKeys",
    "JetStreamAccess",
    "JetStreamRecords",
    "NatsLinks",
    "RecordSource",
    "Stored",
    "XrCheckpoints",
    "describe",
]

# One message of RECORDS: its subject and bytes.
Stored = tuple[str, bytes]


class RecordSource(Protocol):
    """The region's `RECORDS` stream, read by sequence."""

    async def last_seq(self) -> int: ...

    async def get(self, seq: int) -> Stored | None:
        """The message at `seq`; None when there is none (never written, or removed)."""
        ...

    async def next_on(self, subject: str, seq: int) -> tuple[int, bytes] | None:
        """The first message on `subject` at or after `seq`, with its sequence."""
        ...


class AccessRecorder(Protocol):
    async def record(
        self, grant: Grant, route: str, query: Mapping[str, str], returned: int
    ) -> str:
        """Commit one access record (its id); `RecordCommitError` if it did not land."""
        ...


class CheckpointSource(Protocol):
    async def refresh(self, index: audit_index.AuditIndex) -> None:
        """Copy the region's checkpoints published since the last call into `index`;
        `UnavailableError` when this process cannot see them."""
        ...


class EnrolledKeys:
    """The regional key plus every key it enrolled, read once and then only what is new."""

    def __init__(self, region: str, regional_public_key: bytes) -> None:
        self.keyring = Keyring(region, regional_public_key)
        self._subject = subjects.enrolment_subject(region)
        self._next = 1

    async def current(self, records: RecordSource) -> Keyring:
        while (found := await records.next_on(self._subject, self._next)) is not None:
            seq, data = found
            with contextlib.suppress(SignatureError):  # a forged one simply adds no key
                self.keyring.add_enrolment(data)
            self._next = seq + 1
        return self.keyring


@dataclass(frozen=True)
class AuditState:
    """Everything the audit API's routes use; kept on `app.state.audit`."""

    region: str
    regional_public_key: bytes
    tokens: Tokens
    index: audit_index.AuditIndex
    records: RecordSource
    access: AccessRecorder
    checkpoints: CheckpointSource
    keys: EnrolledKeys


def describe(keyring: Keyring, seq: int, subject: str, data: bytes) -> dict[str, Any]:
    """One record as the API shows it: its kind and whether its signature verified."""
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


# -- production: NATS ------------------------------------------------------------------


class NatsLinks:
    """The process's NATS connections: made when the app starts (its lifespan), so the
    collaborators below hold this and look the connection up when they need it."""

    def __init__(self) -> None:
        self.audit: NATS | None = None
        self.xr: NATS | None = None

    def audit_js(self) -> JetStreamContext:
        if self.audit is None:
            raise UnavailableError("the audit API is not connected to the region's NATS")
        return self.audit.jetstream()


class JetStreamRecords:
    """`RecordSource` over the region's `RECORDS` (direct gets)."""

    def __init__(self, links: NatsLinks) -> None:
        self._links = links

    async def last_seq(self) -> int:
        try:
            info = await self._links.audit_js().stream_info(subjects.RECORDS_STREAM)
        except (NatsError, TimeoutError) as exc:
            raise UnavailableError(f"RECORDS cannot be read: {exc}") from exc
        return int(info.state.last_seq)

    async def get(self, seq: int) -> Stored | None:
        try:
            msg = await self._links.audit_js().get_msg(subjects.RECORDS_STREAM, seq, direct=True)
        except NatsNotFound:
            return None
        except (NatsError, TimeoutError) as exc:
            raise UnavailableError(f"RECORDS cannot be read: {exc}") from exc
        return msg.subject or "", msg.data or b""

    async def next_on(self, subject: str, seq: int) -> tuple[int, bytes] | None:
        js = self._links.audit_js()
        try:
            msg = await js.get_msg(subjects.RECORDS_STREAM, seq, subject=subject, next=True)
        except NatsNotFound:
            return None
        except (NatsError, TimeoutError) as exc:
            raise UnavailableError(f"RECORDS cannot be read: {exc}") from exc
        return msg.seq or seq, msg.data or b""


class JetStreamAccess:
    """`AccessRecorder` committing to the region's `RECORDS` (gateway.ledger.access)."""

    def __init__(self, log: AccessLog, links: NatsLinks) -> None:
        self._log = log
        self._links = links

    async def record(
        self, grant: Grant, route: str, query: Mapping[str, str], returned: int
    ) -> str:
        return await self._log.record(self._links.audit_js(), grant, route, query, returned)


class XrCheckpoints:
    """`CheckpointSource` reading the region's `SUMMARY` through the XR account."""

    def __init__(self, links: NatsLinks, region: str) -> None:
        self._links = links
        self._region = region

    async def refresh(self, index: audit_index.AuditIndex) -> None:
        if self._links.xr is None:
            raise UnavailableError("this audit API has no access to the region's checkpoints")
        try:
            await audit_index.refresh_checkpoints(self._links.xr, index, self._region)
        except (NatsError, TimeoutError) as exc:
            raise UnavailableError(f"the region's checkpoints cannot be read: {exc}") from exc
