"""Which pack a replica enforces, and why it refuses one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from cordon.log.keys import SigningKey, public_bytes
from cordon.packs import Pack, signing
from gateway.policy.activation import PackState
from gateway.upstream.routing import Breakers, Router

OWNER = SigningKey.generate()
TRUSTED = signing.trust_root([public_bytes(OWNER.public_key).hex()])
DOC = {"pack": {"name": "default"}, "policies": []}


def published(
    revision: int,
    document: dict[str, Any] = DOC,
    expires_at: int = 2**40,
    regions: tuple[str, ...] = ("*",),
    key: SigningKey = OWNER,
) -> bytes:
    name = document["pack"]["name"]
    return signing.sign(
        signing.statement_bytes(document, name, revision, expires_at, regions), [key]
    )


def _route(pack: Pack) -> Router:
    return Router((), Breakers())


@pytest.fixture
def state(tmp_path: Path) -> PackState:
    return PackState("default", "eu-west", tmp_path, _route, TRUSTED)


def test_newer_revision_activates_and_survives_a_restart(state: PackState, tmp_path: Path) -> None:
    assert state.offer(published(2)) == "activated"
    assert state.active.revision == 2 and state.last_rejection is None

    restarted = PackState("default", "eu-west", tmp_path, _route, TRUSTED)
    assert restarted.active.revision == 0  # nothing loaded yet
    restarted.load_last_good()
    assert restarted.active.revision == 2


def test_a_persisted_pack_is_not_trusted_if_the_trust_root_changed(
    state: PackState, tmp_path: Path
) -> None:
    state.offer(published(2))
    stranger = signing.trust_root([public_bytes(SigningKey.generate().public_key).hex()])
    restarted = PackState(
        "default", "eu-west", tmp_path, lambda p: Router((), Breakers()), stranger
    )
    restarted.load_last_good()
    assert restarted.active.revision == 0


@pytest.mark.parametrize(
    ("offered", "reason"),
    [
        (lambda: published(4), "revision 4 is not newer than 5"),
        (lambda: published(9, key=SigningKey.generate()), "no valid signature from a trusted key"),
        (lambda: published(9, expires_at=int(time.time()) - 1), "pack expired at"),
        (lambda: published(9, regions=("us-east",)), "is for regions ['us-east'], not eu-west"),
        (lambda: published(9, {"pack": {"name": "other"}}), "pack 'other' is not 'default'"),
        (lambda: b"{broken", "not a signed pack"),
    ],
    ids=["rollback", "forged", "expired", "other-region", "other-pack", "broken"],
)
def test_refused_packs_leave_the_active_one_and_say_why(
    state: PackState, offered: Any, reason: str
) -> None:
    state.offer(published(5))
    assert state.offer(offered()) == "rejected"
    assert state.active.revision == 5
    assert reason in state.status()["last_rejection"]  # type: ignore[operator]


def test_the_active_pack_offered_again_is_not_a_rejection(state: PackState) -> None:
    data = published(3)
    state.offer(data)
    assert state.offer(data) == "unchanged"
    assert state.last_rejection is None


def test_no_revision_below_the_highest_ever_accepted_activates_even_after_a_restart(
    state: PackState, tmp_path: Path
) -> None:
    """The persisted pack may stop verifying (trust rotated, file lost); the floor still
    holds, so a replayed older revision cannot take over."""
    assert state.offer(published(7)) == "activated"
    (tmp_path / "last-good-pack.default.json").unlink()
    restarted = PackState("default", "eu-west", tmp_path, _route, TRUSTED)
    restarted.load_last_good()
    assert restarted.active.revision == 0 and restarted.floor == 7
    assert restarted.offer(published(6)) == "rejected"
    assert "revision 6 is not newer than 7" in str(restarted.status()["last_rejection"])
    assert restarted.offer(published(8)) == "activated"


def test_a_fresh_replica_takes_the_newest_revision_the_bucket_kept(state: PackState) -> None:
    """The watch replays the bucket's history first: whatever was written last, the
    newest valid revision wins, and older ones replayed are not rejections."""
    history = [published(3), published(9), published(4)]  # 4 planted after 9
    outcomes = [state.offer(entry, replayed=True) for entry in history]
    assert outcomes == ["activated", "activated", "stale"]
    assert state.active.revision == 9 and state.last_rejection is None


def test_disabled_and_expired_packs_say_why_no_call_is_served() -> None:
    from cordon.packs import signing as pack_signing

    disabled = pack_signing.decode(
        published(2, {"pack": {"name": "default", "enabled": False}, "policies": []}), TRUSTED
    )
    assert disabled.unusable(time.time()) == (
        "pack_disabled",
        "policy pack default r2 is disabled",
    )
    soon = int(time.time()) + 60
    closing = pack_signing.decode(published(3, expires_at=soon), TRUSTED)
    assert closing.unusable(time.time()) is None
    code, message = closing.unusable(soon + 1) or ("", "")
    assert code == "pack_expired" and "r3 has expired" in message
    open_doc = {"pack": {"name": "default"}, "fail_mode": "open", "policies": []}
    lenient = pack_signing.decode(published(4, open_doc, expires_at=soon), TRUSTED)
    assert lenient.unusable(soon + 1) is None  # fail-open: served, and flagged
