"""An access record that does not land is an error, never a silent pass."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS

from cordon.errors import RecordCommitError
from cordon.log.keys import SigningKey
from cordon.tokens import Grant
from gateway.ledger.access import AccessLog

AUDITOR = Grant("alice", frozenset({"auditor"}), frozenset({"eu-west"}))


async def test_no_stream_to_take_it_means_the_read_is_refused(bare_nats: NATS) -> None:
    log = AccessLog("nowhere", SigningKey.generate())  # no RECORDS stream listens there
    with pytest.raises(RecordCommitError, match="access record not committed"):
        await log.record(bare_nats.jetstream(), AUDITOR, "/v1/records", {}, 3)
