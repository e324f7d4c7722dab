"""Which pack a replica enforces, and why it refuses one."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.activation import PackState as _PackState
from gateway.packs import Pack, publish_form
from gateway.routing import Breakers, Router

DOC = {"pack": {"name": "default"}, "policies": []}


def PackState(name: str, state_dir: Path) -> _PackState:
    def route(pack: Pack) -> Router:
        return Router((), Breakers())

    return _PackState(name, state_dir, route)


def published(revision: int, document: dict[str, object] = DOC) -> bytes:
    return json.dumps(publish_form(document, revision, 0.0)).encode()


def test_newer_revision_activates_and_survives_a_restart(tmp_path: Path) -> None:
    state = PackState("default", tmp_path)
    assert state.offer(published(2)) == "activated"
    assert state.active.revision == 2 and state.last_rejection is None

    restarted = PackState("default", tmp_path)
    assert restarted.active.revision == 0  # nothing loaded yet
    restarted.load_last_good()
    assert restarted.active.revision == 2


def test_rollback_is_refused_and_the_reason_is_kept(tmp_path: Path) -> None:
    state = PackState("default", tmp_path)
    state.offer(published(5))
    assert state.offer(published(4)) == "rejected"
    assert state.active.revision == 5
    assert state.status()["last_rejection"] == "revision 4 is not newer than active 5"


def test_a_broken_pack_leaves_the_last_good_one_enforced(tmp_path: Path) -> None:
    state = PackState("default", tmp_path)
    state.offer(published(1))
    assert state.offer(b"{broken") == "rejected"
    assert state.active.revision == 1
    assert "not JSON" in str(state.last_rejection)


def test_another_packs_name_is_not_taken(tmp_path: Path) -> None:
    state = PackState("default", tmp_path)
    assert state.offer(published(9, {"pack": {"name": "other"}})) == "rejected"
    assert state.active.revision == 0


def test_the_active_pack_offered_again_is_not_a_rejection(tmp_path: Path) -> None:
    state = PackState("default", tmp_path)
    state.offer(published(3))
    assert state.offer(published(3)) == "unchanged"
    assert state.last_rejection is None
